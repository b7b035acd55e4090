"""`dnn` (Embedding & MLP), `dcn` (DCN, ADKDD'17) and `dcnv2` (DCN-V2, WWW'21).

All three are `SequenceRanker`s over the shared embedding layer (models/blocks.SequenceInput:
sparse + dense fields on tabular data; target + pooled history on sequence data) and differ
only in the tower under the logit layer (models/towers.build_tower):
  dnn    deep network only (config.model.hidden);
  dcn    DCN cross network (config.model.cross_layers) + deep network;
  dcnv2  DCN-V2 cross network (cross_type full | lowrank | mix, cross_rank, cross_experts)
         + deep network,
combined per config.model.structure (stacked | parallel). The history is pooled with
config.model.pooling (sum | mean | max), or with the config.model.attention unit (DIN's local
activation unit by default) when pooling == 'attention'.
"""
from __future__ import annotations

import ml_collections

from seqrec_jax.data.features import DataSpec
from seqrec_jax.layers.attention import build_attention
from seqrec_jax.models import register_model
from seqrec_jax.models.din import _ranker


def history_unit(cfg):
  """The history pooling unit of config.model.pooling ('attention' = config.model.attention)."""
  if cfg.pooling != 'attention':
    return build_attention(ml_collections.ConfigDict({'name': cfg.pooling}))
  att = ml_collections.ConfigDict(cfg.attention.to_dict())
  if att.get('activation', 'same') == 'same':
    att.activation = cfg.activation
  att.dice_eps = cfg.dice_eps
  return build_attention(att)


@register_model('dnn')
def dnn(cfg, spec: DataSpec):
  return _ranker(cfg, spec, history_unit(cfg), tower='mlp')


@register_model('dcn')
def dcn(cfg, spec: DataSpec):
  return _ranker(cfg, spec, history_unit(cfg), tower='dcn')


@register_model('dcnv2')
def dcnv2(cfg, spec: DataSpec):
  return _ranker(cfg, spec, history_unit(cfg), tower='dcnv2')
