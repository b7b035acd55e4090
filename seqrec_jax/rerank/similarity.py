"""Item-item similarity for re-ranking, batched over requests.

  cosine(emb [R, N, D])    -> S = (1 - g) (1 + cos) / 2 + g I         [R, N, N]
  category(cates [R, N])   -> S = (1 - g) [c_i == c_j] + g I          [R, N, N]
Both are PSD with unit diagonal, as the DPP kernel L = diag(r) S diag(r) needs:
  * (1 + cos) / 2 = F F^T / 2 with F = [1, f / |f|] -- the shift of Chen et al. (2018), which
    keeps S in [0, 1]. Clipping cos at 0 instead would not keep S PSD, so it is not offered.
  * [c_i == c_j] = sum_c 1_c 1_c^T (one all-ones block per category).
  * g I (g = `identity` in [0, 1]) lifts the rank: (1 + cos) / 2 has rank <= D + 1 and the
    category matrix has rank = #categories, so without it the greedy DPP stops after that many
    picks (the next item's conditional variance is 0). g > 0 keeps S positive definite.
MMR can use either, or the raw cosine (`cosine(emb, shift=False)`, in [-1, 1]).
"""
from __future__ import annotations

import jax.numpy as jnp


def _check_identity(fn, identity):
  if not 0.0 <= identity <= 1.0:
    raise ValueError(f'{fn}: identity={identity} must be in [0, 1]')


def cosine(emb, *, identity: float = 0.0, shift: bool = True):
  """emb [..., N, D] -> S [..., N, N]; zero rows (padding) get cos 0 with everything."""
  _check_identity('similarity.cosine', identity)
  emb = jnp.asarray(emb, jnp.float32)
  f = emb / jnp.maximum(jnp.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
  cos = jnp.einsum('...id,...jd->...ij', f, f)
  if not shift:
    return cos
  eye = jnp.eye(emb.shape[-2], dtype=jnp.float32)
  s = 0.5 * (1.0 + cos)
  s = jnp.where(eye > 0, 1.0, s)                 # unit diagonal also for zero rows
  return (1.0 - identity) * s + identity * eye


def category(cates, *, identity: float = 0.0):
  """cates [..., N] int -> S [..., N, N]: 1 for the same category, else 0, plus identity."""
  _check_identity('similarity.category', identity)
  cates = jnp.asarray(cates)
  same = (cates[..., :, None] == cates[..., None, :]).astype(jnp.float32)
  eye = jnp.eye(cates.shape[-1], dtype=jnp.float32)
  return (1.0 - identity) * same + identity * eye
