"""First layer of an attention MLP over [q, k, q-k, q*k, outer], without the concatenation.

The layer is linear in its concatenated input, so with the kernel split into blocks
W = [W_q; W_k; W_d; W_p; W_o]:
    W^T [q, k, q-k, q*k, vec(q k^T)] = (W_q + W_d)^T q + (W_k - W_d)^T k + W_p^T (q*k)
                                       + k^T (sum_i q_i W_o[i])
The q part is computed once per example ([B, H]) instead of once per position, and
[B, L, 4d] is never materialised. Parameters ('kernel' [sum of part dims, H], 'bias' [H])
are exactly those of `nn.Dense` on the concatenation, so checkpoints do not depend on which
path computed them (`ConcatDense.reference` is that plain path, used by tests).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

PARTS = ('q', 'k', 'q-k', 'q*k', 'outer')


def part_dim(part: str, d: int) -> int:
  if part not in PARTS:
    raise ValueError(f'unknown attention input {part!r}; choose from {PARTS}')
  return d * d if part == 'outer' else d


def concat_features(q, k, parts: Sequence[str]):
  """The plain concatenation [B, L, sum dims] (reference path)."""
  qb = jnp.broadcast_to(q[:, None, :], k.shape)
  feats = {'q': lambda: qb, 'k': lambda: k, 'q-k': lambda: qb - k, 'q*k': lambda: qb * k,
           'outer': lambda: (qb[..., :, None] * k[..., None, :]).reshape(*k.shape[:2], -1)}
  return jnp.concatenate([feats[p]() for p in parts], axis=-1)


class ConcatDense(nn.Module):
  """Dense(features) applied to concat_features(q, k, parts), computed factorised.

  Attributes:
    features: output width H.
    parts: ordered subset of PARTS.
    reference: if True, materialise the concatenation (slow; for tests).
  """
  features: int
  parts: Sequence[str] = ('q', 'k', 'q-k', 'q*k')
  reference: bool = False

  @nn.compact
  def __call__(self, q, k):
    """q: [B, D], k: [B, L, D] -> [B, L, H]."""
    d = q.shape[-1]
    dims = [part_dim(p, d) for p in self.parts]
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (sum(dims), self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    if self.reference:
      return concat_features(q, k, self.parts) @ kernel + bias
    blocks, off = {}, 0
    for p, n in zip(self.parts, dims):
      blocks[p] = kernel[off:off + n]
      off += n
    zero = jnp.zeros((d, self.features), kernel.dtype)
    w_q = blocks.get('q', zero) + blocks.get('q-k', zero)
    w_k = blocks.get('k', zero) - blocks.get('q-k', zero)
    q_term = bias
    if 'q' in blocks or 'q-k' in blocks:
      q_term = q @ w_q + bias                                     # [B, H], once per example
    k_term = 0.0
    if 'k' in blocks or 'q-k' in blocks:
      k_term = k @ w_k                                            # [B, L, H]
    if 'q*k' in blocks:
      k_term = k_term + (k * q[:, None, :]) @ blocks['q*k']
    if 'outer' in blocks:
      m = jnp.einsum('bi,ijh->bjh', q, blocks['outer'].reshape(d, d, self.features))
      k_term = k_term + jnp.einsum('blj,bjh->blh', k, m)
    out = k_term + (q_term[:, None, :] if jnp.ndim(q_term) == 2 else q_term)
    return jnp.broadcast_to(out, (*k.shape[:2], self.features))
