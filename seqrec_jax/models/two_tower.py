"""`two_tower`: a two-tower (dual-encoder) retrieval model (Yi et al., RecSys 2019; Covington et
al., RecSys 2016).

  user tower  [user id (use_user), history pooled ('sum' | 'mean' | 'max') or attended
              ('attention': multi-head attention with a learned query, no candidate in it),
              user-side sparse fields (these embedded fields optionally SENet-gated,
              field_gate) and user-side dense columns] -> MLP -> Dense -> u [B, D]
  item tower  [item, cate embeddings, item-side sparse fields and dense columns] -> MLP ->
              Dense -> v [N, D]; depends on the item only, so serving precomputes every item's
              vector (retrieval/two_tower.py)
  similarity  'cosine': <u, v> / (|u| |v|) / temperature; 'dot': <u, v> / temperature

Sides are the DataSpec's (FeatureSpec.side, DataSpec.dense_sides). Context-side fields (the
default of an undeclared field: they may depend on the pair) enter neither tower, so a
two-tower model does not read them at all: u must not depend on the candidate, nor v on the
user.

The towers end in a linear layer (no activation): a ReLU output would confine every vector to
the positive orthant, where no two cosines are negative. The history never sees the candidate
(that is what lets the item side be precomputed), so the attention unit's query is a learned
vector. `__call__(batch)` returns the logit of (row's user, row's target item) [B], plus a
learned per-task bias for T > 1 tasks ([B, T]: the tasks share the similarity); retrieval
training (tasks/two_tower.py) uses `user_vectors` / `item_vectors` and its own losses.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from seqrec_jax.data.features import DataSpec
from seqrec_jax.layers.attention import MultiHeadTargetAttention, Pooling
from seqrec_jax.layers.embedding import Embedder
from seqrec_jax.layers.mlp import MLP
from seqrec_jax.models import register_model
from seqrec_jax.models.builders import build_field_gate

HISTORIES = ('sum', 'mean', 'max', 'attention')
SIMILARITIES = ('cosine', 'dot')


def side_features(embed: Embedder, spec: DataSpec, feats, side: str) -> list:
  """One side's fields, ready to concatenate: [embedded sparse [..., F_side * d]] and
  [dense [..., D_side]] (each only when the side has such columns).

  feats: {'sparse': [..., F_side], 'dense': [..., D_side]}, e.g. spec.side_inputs(batch, side).
  """
  parts = []
  cols = spec.sparse_columns(side)
  if cols:
    x = feats['sparse']
    parts.append(jnp.concatenate([embed.sparse[j](x[..., k]) for k, j in enumerate(cols)], -1))
  if spec.dense_columns(side):
    parts.append(feats['dense'].astype(jnp.float32))
  return parts


def need_item_feats(spec: DataSpec, item_feats, model: str):
  """Refuses item_vectors without the item-side features the spec declares."""
  if item_feats is None and (spec.sparse_columns('item') or spec.dense_columns('item')):
    names = [spec.sparse[j].name for j in spec.sparse_columns('item')]
    raise ValueError(
        f'{model}.item_vectors: the DataSpec has item-side sparse fields {names} and dense '
        f'columns {list(spec.dense_columns("item"))}; pass item_feats = '
        "spec.side_inputs(item_rows, 'item')")


def l2_normalize(x, eps: float = 1e-6):
  """x [..., D] -> x / max(|x|, eps) (an all-zero vector stays zero, never NaN)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class EncoderTower(nn.Module):
  """MLP(hidden[:-1]) -> linear Dense(hidden[-1]): [..., in] -> [..., hidden[-1]]."""
  hidden: Sequence[int]
  activation: str = 'relu'

  @nn.compact
  def __call__(self, x):
    if len(self.hidden) > 1:
      x = MLP(tuple(self.hidden[:-1]), self.activation, name='mlp')(x, False)
    return nn.Dense(self.hidden[-1], name='out')(x)


class TwoTower(nn.Module):
  """See the module docstring. Attributes:
    tower: hidden sizes of each tower; the last is the vector width D.
    history: 'sum' | 'mean' | 'max' (Pooling) | 'attention' (learned-query multi-head attention).
    similarity: 'cosine' | 'dot'; temperature: logits = similarity / temperature.
  """
  spec: DataSpec
  embed_dim: int = 16
  use_user: bool = False
  tower: Sequence[int] = (64, 32)
  history: str = 'mean'
  num_heads: int = 2
  similarity: str = 'cosine'
  temperature: float = 0.05
  activation: str = 'relu'
  field_gate: nn.Module | None = None  # e.g. layers.gating.SENet over the user tower's fields

  def setup(self):
    if self.history not in HISTORIES:
      raise ValueError(f'two_tower history={self.history!r}; choose from {HISTORIES}')
    if self.similarity not in SIMILARITIES:
      raise ValueError(f'two_tower similarity={self.similarity!r}; choose from {SIMILARITIES}')
    if not self.temperature > 0:
      raise ValueError(f'two_tower temperature={self.temperature} must be > 0')
    self.embed = Embedder(self.spec, self.embed_dim, self.use_user)
    self.user_tower = EncoderTower(tuple(self.tower), self.activation)
    self.item_tower = EncoderTower(tuple(self.tower), self.activation)
    s = self.spec
    if s.num_items and s.max_len:
      width = self.embed_dim * (2 if s.num_cates else 1)
      if self.history == 'attention':
        self.pool = MultiHeadTargetAttention(self.num_heads, 'softmax')
        self.query = self.param('history_query', nn.initializers.normal(0.05), (width,))
      else:
        self.pool = Pooling(self.history)
    if len(s.tasks) > 1:
      self.task_bias = self.param('task_bias', nn.initializers.zeros, (len(s.tasks),))

  def _finish(self, x):
    return l2_normalize(x) if self.similarity == 'cosine' else x

  def user_vectors(self, batch):
    """Rows of a batch (user_id [B], hist_items/hist_cates/hist_mask [B, L], sparse [B, F] and
    dense [B, Dd] when the spec has user-side columns) -> u [B, D] (unit length for cosine)."""
    s, b = self.spec, batch['user_id'].shape[0]
    parts = []
    if self.use_user:
      parts.append(self.embed.users(batch['user_id']))
    if s.num_items and s.max_len:
      hist = self.embed.items(batch['hist_items'], batch['hist_cates'])       # [B, L, 2d]
      query = (jnp.broadcast_to(self.query, (b, self.query.shape[0]))
               if self.history == 'attention' else None)
      parts.append(self.pool(query, hist, batch['hist_mask'], False))
    user = s.side_inputs(batch, 'user')
    if 'sparse' in user:
      parts += side_features(self.embed, s, {'sparse': user['sparse']}, 'user')
    if self.field_gate is not None and parts:
      fields = jnp.concatenate([x.reshape(b, -1, self.embed_dim) for x in parts], 1)  # [B, F, d]
      parts = [self.field_gate(fields)[0].reshape(b, -1)]
    if 'dense' in user:
      parts.append(user['dense'].astype(jnp.float32))
    x = jnp.concatenate(parts, -1) if parts else jnp.zeros((b, 1), jnp.float32)
    return self._finish(self.user_tower(x))

  def item_vectors(self, item_ids, cate_ids, item_feats=None):
    """ids [...], item_feats {'sparse': [..., F_item], 'dense': [..., D_item]} (the item-side
    columns, spec.side_inputs(rows, 'item'); needed when the spec has any) -> v [..., D] (unit
    length for cosine); zeros when the spec has neither items nor item-side fields."""
    s = self.spec
    need_item_feats(s, item_feats, 'two_tower')
    parts = [self.embed.items(item_ids, cate_ids)] if s.num_items else []
    parts += side_features(self.embed, s, item_feats, 'item')
    if not parts:
      return jnp.zeros(item_ids.shape + (self.tower[-1],), jnp.float32)
    return self._finish(self.item_tower(jnp.concatenate(parts, -1)))

  def logits(self, u, v):
    """u [B, D], v [N, D] -> similarity / temperature [B, N]."""
    return (u @ v.T) / self.temperature

  def __call__(self, batch, train: bool = False):
    del train   # no dropout / batch statistics
    ids = batch.get('target_item', batch['user_id'])
    u = self.user_vectors(batch)
    v = self.item_vectors(ids, batch.get('target_cate', ids), self.spec.side_inputs(batch, 'item'))
    out = jnp.sum(u * v, -1) / self.temperature                                 # [B]
    if len(self.spec.tasks) > 1:
      return out[:, None] + self.task_bias
    return out


@register_model('two_tower')
def two_tower(cfg, spec: DataSpec):
  """config.model: embed_dim, use_user_embedding, activation ('dice' -> relu: the towers keep
  no batch statistics), field_gate (SENet over the user tower's embedded fields),
  two_tower.{tower, history, similarity, temperature} (configs/two_tower.py's KEYS) and
  attention.num_heads for history='attention'."""
  if cfg.lhuc != 'none':
    raise ValueError(f"config.model.lhuc={cfg.lhuc!r} is not implemented for two_tower")
  t = cfg.two_tower
  return TwoTower(spec, cfg.embed_dim, cfg.use_user_embedding, tuple(t.tower), t.history,
                  cfg.attention.num_heads, t.similarity, float(t.temperature),
                  'relu' if cfg.activation == 'dice' else cfg.activation, build_field_gate(cfg))
