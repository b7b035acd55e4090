"""`prerank`: a three-tower pre-ranking model (the cheap stage between retrieval and the ranker).

  user tower   [user id (model.use_user_embedding), mean-pooled history, user-side sparse
               fields and dense columns] -> MLP model.prerank_tower -> u [B, U]; the same for
               every candidate of a request, so serving computes it once per request
  item tower   [item, cate embeddings, item-side sparse fields and dense columns]
               -> MLP model.prerank_tower -> v [B, U]; depends on the item only, so serving
               reads it from a cache built offline (item_vectors)
  cross tower  [u * v (user x item cross), context-side sparse fields and dense columns
               (per-candidate statistics)] -> MLP model.prerank_cross -> c [B, C]; per candidate
  heads        one small MLP (model.prerank_head) + logit per task on concat(u, v, c)

No target attention over the history: the cost per candidate is the cross tower and the heads
only (benchmarks/prerank_latency.py times it against DIN on the same request). Serving:
`serve_user` (batch rows of one request -> u [1, U]), `item_vectors` (item, cate ids and the
item-side features -> v), and `score(u, v, batch)` (candidates -> logits); test_prerank.py
checks it equals the batch forward whichever candidate is row 0. Each field's side is the
DataSpec's (FeatureSpec.side, DataSpec.dense_sides; undeclared = 'context').
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from seqrec_jax.data.features import DataSpec
from seqrec_jax.layers.attention import Pooling
from seqrec_jax.layers.embedding import Embedder
from seqrec_jax.layers.mlp import MLP
from seqrec_jax.models import register_model
from seqrec_jax.models.two_tower import need_item_feats, side_features


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
    """[B, U] from the user-side fields of each row (never an item's or the context's)."""
    s, b = self.spec, batch['user_id'].shape[0]
    parts = []
    if self.use_user:
      parts.append(self.embed.users(batch['user_id']))
    if s.num_items and s.max_len:
      hist = self.embed.items(batch['hist_items'], batch['hist_cates'])
      parts.append(self.pool(None, hist, batch['hist_mask'], False))
    parts += side_features(self.embed, s, s.side_inputs(batch, 'user'), 'user')
    x = jnp.concatenate(parts, -1) if parts else jnp.zeros((b, 1), jnp.float32)
    return self.user_tower(x, False)

  def item_vectors(self, item_ids, cate_ids, item_feats=None):
    """ids [N], item_feats {'sparse': [N, F_item], 'dense': [N, D_item]} (the item-side
    columns, spec.side_inputs(rows, 'item'); needed when the spec has any) -> [N, U]
    (cacheable: depends on the item only); zeros without items or item-side fields."""
    s = self.spec
    need_item_feats(s, item_feats, 'prerank')
    parts = [self.embed.items(item_ids, cate_ids)] if s.num_items else []
    parts += side_features(self.embed, s, item_feats, 'item')
    if not parts:
      return jnp.zeros((item_ids.shape[0], self.tower[-1]), jnp.float32)
    return self.item_tower(jnp.concatenate(parts, -1), False)

  def score(self, u, v, batch):
    """u [B, U] or [1, U] (one request), v [B, U], batch: the candidates' rows (their
    context-side sparse / dense columns) -> logits [B] or [B, T]."""
    s = self.spec
    u = jnp.broadcast_to(u, v.shape)
    parts = [u * v] + side_features(self.embed, s, s.side_inputs(batch, 'context'), 'context')
    c = self.cross_tower(jnp.concatenate(parts, -1), False)
    x = jnp.concatenate([u, v, c], -1)
    out = jnp.concatenate([lg(h(x, False)) for h, lg in zip(self.heads, self.logits)], -1)
    return out[:, 0] if out.shape[1] == 1 else out

  def serve_user(self, batch):
    """The user vector of a request, from its first row (user-side fields only, the same on
    every row of a request): [1, U]."""
    return self.user_vectors({k: v[:1] for k, v in batch.items()})

  def __call__(self, batch, train: bool = False):
    del train   # no dropout / batch statistics
    ids = batch.get('target_item', batch['user_id'])
    v = self.item_vectors(ids, batch.get('target_cate', ids),
                          self.spec.side_inputs(batch, 'item'))
    return self.score(self.user_vectors(batch), v, batch)


@register_model('prerank')
def prerank(cfg, spec: DataSpec):
  for key in ('field_gate', 'lhuc'):
    if cfg[key] != 'none':
      raise ValueError(f'config.model.{key}={cfg[key]!r} is not implemented for prerank')
  # Dice keeps batch statistics; the towers run without them (relu instead, a deliberate choice).
  return PreRanker(spec, cfg.embed_dim, cfg.use_user_embedding, tuple(cfg.prerank_tower),
                   tuple(cfg.prerank_cross), tuple(cfg.prerank_head),
                   'relu' if cfg.activation == 'dice' else cfg.activation)
