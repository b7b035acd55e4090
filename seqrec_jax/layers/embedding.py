"""Embedding tables built from a DataSpec; items and categories are concatenated.

An item is represented as [e_item(i), e_cate(c)] ([..., 2 * embed_dim]) for targets and
behaviours alike (DIN paper, Sec. 4).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from seqrec_jax.data.features import DataSpec


class Embed(nn.Embed):
  """nn.Embed (same parameter 'embedding' [vocab, d]) with a clamped, unchecked gather.

  nn.Embed gathers with jnp.take's default mode 'fill' (NaN rows for out-of-range ids), which
  XLA CPU emits as a per-element select inside the gather. Ids are checked on the host by
  `data.features.validate_arrays`; here they are clamped once on the small int array and the
  rows gathered with mode 'promise_in_bounds' (1.4x faster lookup of 25600 rows from a
  1e5 x 64 table than 'clip', 2 cores). For in-range ids values and gradients are identical;
  an out-of-range id reads the nearest valid row, as a plain XLA gather would.
  """

  def __call__(self, inputs):
    if not jnp.issubdtype(inputs.dtype, jnp.integer):
      raise ValueError(f'embedding {self.name!r}: ids must be integers, got {inputs.dtype}')
    (embedding,) = nn.dtypes.promote_dtype(self.embedding, dtype=self.dtype, inexact=False)
    ids = jnp.clip(inputs, 0, self.num_embeddings - 1)
    return embedding.at[ids].get(mode='promise_in_bounds')


def _embed(vocab: int, dim: int, name: str, init_std: float) -> nn.Embed:
  return Embed(vocab, dim, embedding_init=nn.initializers.normal(init_std), name=name)


class Embedder(nn.Module):
  """Tables: item [num_items, d], cate [num_cates, d], user [num_users, d] (optional),
  one per sparse field [vocab_f, d]."""
  spec: DataSpec
  embed_dim: int = 16
  use_user: bool = False
  init_std: float = 0.05

  def setup(self):
    s = self.spec
    if s.num_items:
      self.item = _embed(s.num_items, self.embed_dim, 'item', self.init_std)
    if s.num_cates:
      self.cate = _embed(s.num_cates, self.embed_dim, 'cate', self.init_std)
    if self.use_user:
      self.user = _embed(s.num_users, self.embed_dim, 'user', self.init_std)
    self.sparse = [_embed(f.vocab_size, self.embed_dim, f'sparse_{f.name}', self.init_std)
                   for f in s.sparse]

  def items(self, item_ids, cate_ids):
    """ids [...] -> [..., 2 * embed_dim] (or [..., embed_dim] without categories)."""
    parts = [self.item(item_ids)]
    if self.spec.num_cates:
      parts.append(self.cate(cate_ids))
    return jnp.concatenate(parts, axis=-1)

  def users(self, user_ids):
    return self.user(user_ids)

  def sparse_fields(self, sparse):
    """sparse [B, F] -> [B, F, embed_dim]."""
    return jnp.stack([t(sparse[:, j]) for j, t in enumerate(self.sparse)], axis=1)
