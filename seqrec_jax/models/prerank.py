"""`prerank`: a three-tower pre-ranking model (the cheap stage between retrieval and the ranker).

  user tower   [user id (model.use_user_embedding), mean-pooled history, sparse fields]
               -> MLP model.prerank_tower -> u [B, U]; the same for every candidate of a
               request, so serving computes it once per request
  item tower   [item, cate] embeddings -> MLP model.prerank_tower -> v [B, U]; depends on the
               item only, so serving reads it from a cache built offline (item_vectors)
  cross tower  [u * v (user x item cross), dense features (per-candidate statistics)]
               -> MLP model.prerank_cross -> c [B, C]; per candidate
  heads        one small MLP (model.prerank_head) + logit per task on concat(u, v, c)

No target attention over the history: the cost per candidate is the cross tower and the heads
only (benchmarks/prerank_latency.py times it against DIN on the same request). Serving:
`serve_user` (batch rows of one request -> u [1, U]), `item_vectors` (item, cate ids -> v), and
`score(u, v, batch)` (candidates -> logits); test_prerank.py checks it equals the batch forward.
Sparse fields are treated as user / context fields (DataSpec does not say which side they are).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from seqrec_jax.data.features import DataSpec
from seqrec_jax.layers.attention import Pooling
from seqrec_jax.layers.embedding import Embedder
from seqrec_jax.layers.mlp import MLP
from seqrec_jax.models import register_model


class PreRanker(nn.Module):
  """batch -> logits [B] (one task) or [B, T]; see the module docstring."""
  spec: DataSpec
  embed_dim: int = 16
  use_user: bool = False
  tower: tuple = (64, 32)
  cross: tuple = (16,)
  head: tuple = (16,)
  activation: str = 'relu'

  def setup(self):
    self.embed = Embedder(self.spec, self.embed_dim, self.use_user)
    self.user_tower = MLP(tuple(self.tower), self.activation)
    self.item_tower = MLP(tuple(self.tower), self.activation)
    self.cross_tower = MLP(tuple(self.cross), self.activation)
    self.heads = [MLP(tuple(self.head), self.activation) for _ in self.spec.tasks]
    self.logits = [nn.Dense(1) for _ in self.spec.tasks]
    self.pool = Pooling('mean')

  def user_vectors(self, batch):
    """[B, U] from the user / context fields of each row."""
    s, b = self.spec, batch['user_id'].shape[0]
    parts = []
    if self.use_user:
      parts.append(self.embed.users(batch['user_id']))
    if s.num_items and s.max_len:
      hist = self.embed.items(batch['hist_items'], batch['hist_cates'])
      parts.append(self.pool(None, hist, batch['hist_mask'], False))
    if s.sparse:
      parts.append(self.embed.sparse_fields(batch['sparse']).reshape(b, -1))
    x = jnp.concatenate(parts, -1) if parts else jnp.zeros((b, 1), jnp.float32)
    return self.user_tower(x, False)

  def item_vectors(self, item_ids, cate_ids):
    """ids [N] -> [N, U] (cacheable: depends on the item only); zeros without items."""
    if not self.spec.num_items:
      return jnp.zeros((item_ids.shape[0], self.tower[-1]), jnp.float32)
    return self.item_tower(self.embed.items(item_ids, cate_ids), False)

  def score(self, u, v, batch):
    """u [B, U] or [1, U] (one request), v [B, U], batch: the candidates' rows (dense) ->
    logits [B] or [B, T]."""
    u = jnp.broadcast_to(u, v.shape)
    parts = [u * v]
    if self.spec.dense_dim:
      parts.append(batch['dense'].astype(jnp.float32))
    c = self.cross_tower(jnp.concatenate(parts, -1), False)
    x = jnp.concatenate([u, v, c], -1)
    out = jnp.concatenate([lg(h(x, False)) for h, lg in zip(self.heads, self.logits)], -1)
    return out[:, 0] if out.shape[1] == 1 else out

  def serve_user(self, batch):
    """The user vector of a request, from its first row: [1, U]."""
    return self.user_vectors({k: v[:1] for k, v in batch.items()})

  def __call__(self, batch, train: bool = False):
    del train   # no dropout / batch statistics
    ids = batch.get('target_item', batch['user_id'])
    v = self.item_vectors(ids, batch.get('target_cate', ids))
    return self.score(self.user_vectors(batch), v, batch)


@register_model('prerank')
def prerank(cfg, spec: DataSpec):
  for key, off in (('field_gate', 'none'), ('lhuc', 'none')):
    if cfg.get(key, off) != off:
      raise ValueError(f'config.model.{key}={cfg[key]!r} is not implemented for prerank')
  # Dice keeps batch statistics; the towers run without them (relu instead, a deliberate choice).
  return PreRanker(spec, cfg.embed_dim, cfg.use_user_embedding, tuple(cfg.prerank_tower),
                   tuple(cfg.prerank_cross), tuple(cfg.prerank_head),
                   'relu' if cfg.activation == 'dice' else cfg.activation)
