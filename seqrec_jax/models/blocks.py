"""Shared input block and output head used by every model family."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqrec_jax.data.features import DataSpec
from seqrec_jax.data.packing import INDEX_KEY
from seqrec_jax.layers import activations
from seqrec_jax.layers.attention import Packed
from seqrec_jax.layers.embedding import Embedder
from seqrec_jax.layers.mlp import MLP


class SequenceInput(nn.Module):
  """Embeds a batch and pools its history with `pooling` (an ATTENTIONS unit).

  Returns [B, F]: concat(target [2d], pooled history [2d], user [d]?, sparse fields [F_s*d],
  dense [D]). In training, `mba_lambda` > 0 sows the frequency-aware L2 of the embedding
  tables (Embedder.mba_penalty: `frequency_reg` 'mba', DIN's mini-batch aware regulariser, or
  'difacto', DiFacto's frequency-adaptive one) into the 'losses' collection (steps.train_step
  adds it to the loss) and `id_dropout` drops looked-up id vectors (Embedder).
  """
  spec: DataSpec
  pooling: nn.Module | None
  embed_dim: int = 16
  use_user: bool = False
  mba_lambda: float = 0.0
  id_dropout: float = 0.0
  field_gate: nn.Module | None = None  # e.g. layers.gating.SENet: [B, F, d] -> ([B, F, d], _)
  personal: tuple = ()               # LHUC inputs: then returns (x, personal_features(...))
  frequency_reg: str = 'mba'         # mba | difacto (Embedder.mba_penalty)

  @nn.compact
  def __call__(self, batch, train: bool):
    emb = Embedder(self.spec, self.embed_dim, self.use_user, id_dropout=self.id_dropout,
                   frequency_reg=self.frequency_reg, name='embed')
    if train and self.mba_lambda > 0:
      self.sow('losses', self.frequency_reg, emb.mba_penalty(batch, self.mba_lambda))
    feats = self._fields(emb, batch, train)
    if self.spec.dense_dim:
      feats.append(batch['dense'].astype(jnp.float32))
    x = jnp.concatenate(feats, axis=-1)
    return (x, personal_features(emb, batch, self.personal)) if self.personal else x

  def _fields(self, emb, batch, train):
    """The embedded fields as a list of [B, k*d] (gated by field_gate when set)."""
    feats = []
    if self.spec.num_items:
      target = emb.items(batch['target_item'], batch['target_cate'], train)   # [B, 2d]
      feats.append(target)
      if self.pooling is not None and self.spec.max_len:
        feats.append(self._history(emb, target, batch, train))               # [B, 2d]
    if self.use_user:
      feats.append(emb.users(batch['user_id'], train))
    if self.spec.sparse:
      s = emb.sparse_fields(batch['sparse'], train)
      feats.append(s.reshape(s.shape[0], -1))
    if self.field_gate is None or not feats:
      return feats
    b, d = feats[0].shape[0], self.embed_dim
    fields = jnp.concatenate([f.reshape(b, -1, d) for f in feats], axis=1)   # [B, F, d]
    fields, _ = self.field_gate(fields)
    return [fields.reshape(b, -1)]

  def _history(self, emb, target, batch, train):
    """Pooled history [B, 2d]; on packed rows when the batch has hist_index (data/packing.py)
    and the unit supports it, else on the dense [B, L, 2d] keys."""
    items, cates, mask = batch['hist_items'], batch['hist_cates'], batch['hist_mask']
    if INDEX_KEY in batch and getattr(self.pooling, 'packable', False):
      packed = Packed.from_index(batch[INDEX_KEY], items.shape[1], items.shape[0])
      ids = (items.reshape(-1)[packed.flat], cates.reshape(-1)[packed.flat])
      # Materialise the [C] index arrays once: fused into the [C, D] gathers below, XLA
      # would recompute them per element (3x slower lookups at L=50).
      ids, arrays = jax.lax.optimization_barrier((ids, tuple(packed[:3])))
      packed = Packed(*arrays, packed.num)
      keys = emb.items(*ids, train=train)
      return self.pooling(target, keys, mask, train, packed=packed)       # keys [C, 2d]
    return self.pooling(target, emb.items(items, cates, train), mask, train)


def personal_features(emb: Embedder, batch, names) -> jax.Array:
  """LHUC / PPNet gate input [B, P]: the shared embeddings of `names` ('user' = the user id,
  else a sparse field's name), concatenated, with stop-gradient (PPNet: the gate network does
  not train the shared embeddings)."""
  parts = []
  sparse = [f.name for f in emb.spec.sparse]
  for name in names:
    if name == 'user':
      parts.append(emb.users(batch['user_id']))
    else:
      parts.append(emb.sparse_fields(batch['sparse'])[:, sparse.index(name)])
  return jax.lax.stop_gradient(jnp.concatenate(parts, axis=-1))


def row_mask(batch):
  """[B] bool, the rows that count (batch['weight'] > 0), or None when the batch has no
  weights (every row counts)."""
  w = batch.get('weight')
  return None if w is None else w > 0


class Head(nn.Module):
  """(BatchNorm ->) MLP (or `backbone`) then one logit per task: [B, F] -> [B] or [B, T].

  `backbone` (models/builders.build_backbone: DCN/DCN-V2 cross + deep) replaces the MLP when set.
  `lhuc` (layers.gating.LHUCGate) scales the MLP's hidden layers by gates of `personal` [B, P].
  `input_bn` (config.model.input_bn): batch normalisation of the input [B, F] before the MLP,
  as the released DIN code does (tf.layers.batch_normalization on the concatenated embeddings;
  momentum 0.99, epsilon 1e-3, learned scale and shift). Training normalises with the batch's
  statistics over the rows of `mask` [B] (all rows when None) and updates moving averages in
  'batch_stats'; evaluation uses the moving averages (Flax BatchNorm: they start at mean 0,
  variance 1 and are not bias-corrected, unlike Dice's). Under pmap the statistics are the
  global batch's, as Dice's (layers.activations.batch_stats_axis).
  """
  num_tasks: int
  hidden: Sequence[int] = (200, 80)
  activation: str = 'prelu'
  dice_eps: float = 1e-8
  dropout: float = 0.0
  backbone: nn.Module | None = None
  lhuc: nn.Module | None = None
  input_bn: bool = False

  @nn.compact
  def __call__(self, x, train: bool, personal=None, mask=None):
    if self.input_bn:
      axis = activations._BATCH_AXIS.get()  # pmap's batch axis, as Dice  # pylint: disable=protected-access
      x = nn.BatchNorm(momentum=0.99, epsilon=1e-3, axis_name=axis, name='input_bn')(
          x, use_running_average=not train, mask=None if mask is None else mask[:, None])
    if self.backbone is not None:
      x = self.backbone(x, train)
    else:
      gates = self.lhuc(personal) if self.lhuc is not None else None
      x = MLP(tuple(self.hidden), self.activation, self.dice_eps, self.dropout,
              name='mlp')(x, train, gates=gates)
    out = nn.Dense(self.num_tasks, name='logit')(x)
    return out[:, 0] if self.num_tasks == 1 else out


class SequenceRanker(nn.Module):
  """SequenceInput -> MLP (or backbone) -> logit(s). batch -> [B] or [B, T].

  The models base, din (models/din.py), dnn, dcn, dcnv2 (models/dcn.py).
  """
  spec: DataSpec
  pooling: nn.Module | None
  embed_dim: int = 16
  use_user: bool = False
  hidden: tuple = (200, 80)
  activation: str = 'prelu'
  dice_eps: float = 1e-8
  dropout: float = 0.0
  backbone: nn.Module | None = None  # None: Head's MLP; else e.g. DCN-V2 (model.backbone)
  mba_lambda: float = 0.0            # mini-batch aware regularisation (SequenceInput)
  embed_dropout: float = 0.0         # dropout of looked-up id vectors (layers/embedding.py)
  field_gate: nn.Module | None = None  # model.field_gate (SequenceInput)
  lhuc: nn.Module | None = None        # model.lhuc (Head), gated by SequenceInput's `personal`
  personal: tuple = ()
  input_bn: bool = False             # model.input_bn (Head)
  frequency_reg: str = 'mba'         # model.frequency_reg (SequenceInput)

  @nn.compact
  def __call__(self, batch, train: bool = False):
    x = SequenceInput(self.spec, self.pooling, self.embed_dim, self.use_user, self.mba_lambda,
                      self.embed_dropout, self.field_gate, self.personal, self.frequency_reg,
                      name='input')(batch, train)
    x, p = x if self.personal else (x, None)
    return Head(len(self.spec.tasks), self.hidden, self.activation, self.dice_eps,
                self.dropout, self.backbone, self.lhuc, self.input_bn,
                name='head')(x, train, p, row_mask(batch))
