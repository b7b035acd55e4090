"""The non-attentive baselines of the DIN paper's Table 3: `lr`, `wide_deep`, `pnn`, `deepfm`.

All of them read the batch contract of docs/design.md through the same embedding layer as `base`
and `din` (`layers.embedding.Embedder`, items as [e_item, e_cate]) and return logits [B]
(one task) or [B, T]. `base` (= Embedding&MLP with sum pooling) and `din` live in din.py.

Fields. FM and PNN need a list of *fields*, each one embedding vector [d]. A batch becomes
  target item, target cate, pooled history items, pooled history cates, user (only with
  model.use_user_embedding), one field per sparse feature        -> fields [B, F, d]
(the DIN-paper setups of DeepCTR make the same split). The history is a multi-valued field:
it is pooled with model.pooling (default `sum`, as the BaseModel) before it enters the FM /
product layer, so with sum pooling the FM / inner-product term between the candidate and
the history is sum_j <e_target, e_hist_j>. Dense features are not fields: they enter the
linear part and the deep part only. Specs without categories have no cate fields; specs
without a sequence have only user / sparse fields.

Choices the papers leave open (or that differ from them), all deliberate:
  * `lr` (DIN paper: "the weak baseline"): one scalar weight per id of every one-hot /
    multi-hot feature. History items/cates have their own tables (a multi-hot "visited
    goods" feature is a different column from the candidate's one-hot id) and are summed
    over real positions only; dense features enter through a linear layer; plus a bias.
    No crosses, so it cannot see whether the candidate matches the history.
  * `wide_deep` (Cheng et al. 2016; DIN paper Sec. 6.3: "cross-product of user behaviours
    and candidates as wide inputs"): wide = the `lr` features + the cross-product of each
    real behaviour with the candidate (item x item and cate x cate), one scalar weight per
    pair; pairs go into an exact table when vocab^2 <= model.wide_cross_buckets, otherwise
    they are hashed into that many buckets. deep = the BaseModel tower on the same embeddings.
    Both parts are trained jointly by the one optimiser of config.optim (the W&D paper used
    FTRL + L1 for wide and AdaGrad for deep).
  * `pnn` (Qu et al. 2016, IPNN): product layer = [linear signal z = all field embeddings
    concatenated, inner products p_ij = <f_i, f_j> for i < j]; its first hidden layer
    (l1 = act(W_z z + W_p p + b)) is the first Dense of the MLP tower over concat(z, p, dense),
    so model.hidden[0] is the product layer's D1. The full (not the factorised, rank-1)
    inner-product weights are used.
  * `deepfm` (Guo et al. 2017): logit = first order (the `lr` features) + FM second order
    0.5 * sum_k[(sum_f v_fk)^2 - sum_f v_fk^2] over the fields + deep tower; the FM shares the
    deep part's embeddings. With several tasks each task gets its own first-order weights and
    deep logit; the FM term is shared (added to every task's logit).
  * Every model uses model.hidden / activation / dropout for its deep tower (the DIN paper
    uses the same MLP for all deep models) and model.embed_dim per table.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from seqrec_jax.data.features import DataSpec
from seqrec_jax.layers.attention import Pooling
from seqrec_jax.layers.embedding import Embedder
from seqrec_jax.models import register_model
from seqrec_jax.models.blocks import Head, personal_features, row_mask
from seqrec_jax.models.builders import build_field_gate, build_lhuc


def _squeeze_task(logits, num_tasks: int):
  """[B, T] -> [B] for one task (the model contract), else unchanged."""
  return logits[:, 0] if num_tasks == 1 else logits


class FieldEmbedding(nn.Module):
  """batch -> (fields [B, F, d], dense [B, D] or None); see the module docstring."""
  spec: DataSpec
  embed_dim: int = 16
  use_user: bool = False
  pooling: str = 'sum'
  field_gate: nn.Module | None = None   # model.field_gate, on fields [B, F, d]
  personal: tuple = ()                  # LHUC inputs: then also returns personal [B, P]

  @nn.compact
  def __call__(self, batch, train: bool):
    s, d = self.spec, self.embed_dim
    emb = Embedder(s, d, self.use_user, name='embed')
    fields = []
    if s.num_items:
      target = emb.items(batch['target_item'], batch['target_cate'])       # [B, k*d]
      b = target.shape[0]
      fields.append(target.reshape(b, -1, d))                              # [B, k, d]
      if s.max_len:
        hist = emb.items(batch['hist_items'], batch['hist_cates'])        # [B, L, k*d]
        pooled = Pooling(self.pooling)(target, hist, batch['hist_mask'], train)
        fields.append(pooled.reshape(b, -1, d))                            # [B, k, d]
    if self.use_user:
      fields.append(emb.users(batch['user_id'])[:, None, :])
    if s.sparse:
      fields.append(emb.sparse_fields(batch['sparse']))                    # [B, F_s, d]
    b = batch['user_id'].shape[0]
    fields = (jnp.concatenate(fields, axis=1) if fields
              else jnp.zeros((b, 0, d), jnp.float32))
    if self.field_gate is not None and fields.shape[1]:
      fields, _ = self.field_gate(fields)
    dense = batch['dense'].astype(jnp.float32) if s.dense_dim else None
    if self.personal:
      return fields, dense, personal_features(emb, batch, self.personal)
    return fields, dense


def deep_input(fields, dense):
  """fields [B, F, d], dense [B, D] | None -> [B, F*d (+D)] (= the BaseModel's input)."""
  x = fields.reshape(fields.shape[0], -1)
  return x if dense is None else jnp.concatenate([x, dense], axis=-1)


def _scalar_table(vocab: int, num_outputs: int, name: str) -> nn.Embed:
  return nn.Embed(vocab, num_outputs, embedding_init=nn.initializers.zeros, name=name)


class LinearFeatures(nn.Module):
  """Logistic regression on the ids: a scalar weight per id of each field -> [B, T].

  target item/cate (one-hot), history items/cates (multi-hot: masked sum), user (optional),
  each sparse field, a linear layer on dense features, and a bias.
  """
  spec: DataSpec
  num_outputs: int = 1
  use_user: bool = False

  @nn.compact
  def __call__(self, batch):
    s, t = self.spec, self.num_outputs
    b = batch['user_id'].shape[0]
    out = jnp.broadcast_to(self.param('bias', nn.initializers.zeros, (t,)), (b, t))
    if s.num_items:
      out = out + _scalar_table(s.num_items, t, 'target_item')(batch['target_item'])
      if s.num_cates:
        out = out + _scalar_table(s.num_cates, t, 'target_cate')(batch['target_cate'])
      if s.max_len:
        m = batch['hist_mask'][..., None].astype(jnp.float32)             # [B, L, 1]
        out = out + (_scalar_table(s.num_items, t, 'hist_item')(batch['hist_items']) * m).sum(1)
        if s.num_cates:
          out = out + (_scalar_table(s.num_cates, t, 'hist_cate')(batch['hist_cates'])
                       * m).sum(1)
    if self.use_user:
      out = out + _scalar_table(s.num_users, t, 'user')(batch['user_id'])
    for j, f in enumerate(s.sparse):
      out = out + _scalar_table(f.vocab_size, t, f'sparse_{f.name}')(batch['sparse'][:, j])
    if s.dense_dim:
      out = out + nn.Dense(t, use_bias=False, name='dense')(batch['dense'].astype(jnp.float32))
    return out                                                             # [B, T]


def cross_index(a, b, vocab_b: int, buckets: int):
  """Index of the pair (a, b) in a table of min(vocab_a * vocab_b, buckets) rows.

  Exact (a * vocab_b + b) when the caller's table holds every pair, else a multiplicative
  hash in uint32 (wrap-around arithmetic is intended) modulo `buckets`.
  """
  a = a.astype(jnp.uint32)
  b = jnp.broadcast_to(b, a.shape).astype(jnp.uint32)
  x = a * jnp.uint32(0x9E3779B1) + b * jnp.uint32(0x85EBCA77)
  x = (x ^ (x >> 15)) * jnp.uint32(0x2C1B3C6D)
  x = x ^ (x >> 12)
  return (x % jnp.uint32(buckets)).astype(jnp.int32)


class CrossProduct(nn.Module):
  """Wide cross-product of behaviours with the candidate: sum_j w[(hist_j, target)] -> [B, T].

  hist [B, L], target [B], mask [B, L]; padding positions contribute nothing.
  """
  vocab_hist: int
  vocab_target: int
  buckets: int
  num_outputs: int = 1

  @nn.compact
  def __call__(self, hist, target, mask):
    exact = self.vocab_hist * self.vocab_target <= self.buckets
    if exact:
      size = self.vocab_hist * self.vocab_target
      idx = hist * self.vocab_target + target[:, None]                     # [B, L]
    else:
      size = self.buckets
      idx = cross_index(hist, target[:, None], self.vocab_target, self.buckets)
    w = _scalar_table(size, self.num_outputs, 'weights')(idx)              # [B, L, T]
    return (w * mask[..., None].astype(jnp.float32)).sum(1)


class LR(nn.Module):
  spec: DataSpec
  use_user: bool = False

  @nn.compact
  def __call__(self, batch, train: bool = False):
    del train
    t = len(self.spec.tasks)
    return _squeeze_task(LinearFeatures(self.spec, t, self.use_user, name='linear')(batch), t)


class _Deep(nn.Module):
  """Shared attributes of the embedding + MLP models below."""
  spec: DataSpec
  embed_dim: int = 16
  use_user: bool = False
  hidden: tuple = (200, 80)
  activation: str = 'prelu'
  dice_eps: float = 1e-8
  dropout: float = 0.0
  pooling: str = 'sum'
  field_gate: nn.Module | None = None
  lhuc: nn.Module | None = None         # model.lhuc on the deep tower's MLP
  personal: tuple = ()
  input_bn: bool = False                # model.input_bn: BatchNorm before the deep tower

  def fields(self, batch, train):
    """(fields [B, F, d], dense [B, D] | None, LHUC input [B, P] | None)."""
    out = FieldEmbedding(self.spec, self.embed_dim, self.use_user, self.pooling,
                         self.field_gate, self.personal, name='input')(batch, train)
    return out if self.personal else (*out, None)

  def head(self, x, train, personal=None, mask=None):
    """[B, F] -> [B, T] (always 2-D here; squeezed by the caller); mask: [B] rows that feed
    input_bn's batch statistics (blocks.row_mask)."""
    out = Head(len(self.spec.tasks), self.hidden, self.activation, self.dice_eps,
               self.dropout, lhuc=self.lhuc, input_bn=self.input_bn, name='deep')(
                   x, train, personal, mask)
    return out.reshape(out.shape[0], -1)


class WideDeep(_Deep):
  cross_buckets: int = 1 << 20

  @nn.compact
  def __call__(self, batch, train: bool = False):
    s, t = self.spec, len(self.spec.tasks)
    fields, dense, personal = self.fields(batch, train)
    deep = self.head(deep_input(fields, dense), train, personal, row_mask(batch))
    wide = LinearFeatures(s, t, self.use_user, name='wide')(batch)        # [B, T]
    if s.num_items and s.max_len:
      mask = batch['hist_mask']
      wide = wide + CrossProduct(s.num_items, s.num_items, self.cross_buckets, t,
                                 name='cross_item')(batch['hist_items'], batch['target_item'],
                                                    mask)
      if s.num_cates:
        wide = wide + CrossProduct(s.num_cates, s.num_cates, self.cross_buckets, t,
                                   name='cross_cate')(batch['hist_cates'],
                                                      batch['target_cate'], mask)
    return _squeeze_task(wide + deep, t)


def inner_products(fields):
  """fields [B, F, d] -> <f_i, f_j> for i < j, [B, F(F-1)/2]."""
  i, j = np.triu_indices(fields.shape[1], k=1)
  return jnp.einsum('bpd,bpd->bp', fields[:, i], fields[:, j])


def fm_second_order(fields):
  """FM pairwise term sum_{i<j} <v_i, v_j> = 0.5 * sum_k[(sum_f v)^2 - sum_f v^2]: [B]."""
  sum_sq = jnp.square(fields.sum(1))
  sq_sum = jnp.square(fields).sum(1)
  return 0.5 * (sum_sq - sq_sum).sum(-1)


class PNN(_Deep):

  @nn.compact
  def __call__(self, batch, train: bool = False):
    fields, dense, personal = self.fields(batch, train)
    x = jnp.concatenate([deep_input(fields, dense), inner_products(fields)], axis=-1)
    return _squeeze_task(self.head(x, train, personal, row_mask(batch)),
                         len(self.spec.tasks))


class DeepFM(_Deep):

  @nn.compact
  def __call__(self, batch, train: bool = False):
    t = len(self.spec.tasks)
    fields, dense, personal = self.fields(batch, train)
    first = LinearFeatures(self.spec, t, self.use_user, name='linear')(batch)  # [B, T]
    second = fm_second_order(fields)[:, None]                                  # [B, 1]
    deep = self.head(deep_input(fields, dense), train, personal, row_mask(batch))
    return _squeeze_task(first + second + deep, t)


def _deep_kwargs(cfg, spec):
  lhuc, personal = build_lhuc(cfg, spec, tuple(cfg.hidden))
  return dict(embed_dim=cfg.embed_dim, use_user=cfg.use_user_embedding,
              hidden=tuple(cfg.hidden), activation=cfg.activation, dice_eps=cfg.dice_eps,
              dropout=cfg.dropout, pooling=cfg.pooling, field_gate=build_field_gate(cfg),
              lhuc=lhuc, personal=personal, input_bn=bool(cfg.input_bn))


@register_model('lr')
def lr(cfg, spec: DataSpec):
  if build_field_gate(cfg) is not None:
    raise ValueError(f'config.model.field_gate={cfg.field_gate!r}: model lr has no field '
                     "embeddings to gate; use 'none'")
  if build_lhuc(cfg, spec, tuple(cfg.hidden))[0] is not None:
    raise ValueError(f"config.model.lhuc={cfg.lhuc!r}: model lr has no MLP; use 'none'")
  return LR(spec, cfg.use_user_embedding)


@register_model('wide_deep')
def wide_deep(cfg, spec: DataSpec):
  return WideDeep(spec, cross_buckets=int(cfg.wide_cross_buckets), **_deep_kwargs(cfg, spec))


@register_model('pnn')
def pnn(cfg, spec: DataSpec):
  return PNN(spec, **_deep_kwargs(cfg, spec))


@register_model('deepfm')
def deepfm(cfg, spec: DataSpec):
  return DeepFM(spec, **_deep_kwargs(cfg, spec))
