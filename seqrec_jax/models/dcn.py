"""`dnn` (Embedding & MLP), `dcn` (DCN, ADKDD'17) and `dcnv2` (DCN-V2, WWW'21).

All three are `SequenceRanker`s (models/blocks.py) over the shared embedding layer
(models/blocks.SequenceInput: sparse + dense fields on tabular data; target + pooled history on
sequence data) and differ only in the backbone under the logit layer
(models/builders.build_backbone):
  dnn    deep network only (config.model.hidden);
  dcn    DCN cross network (config.model.cross_layers) + deep network;
  dcnv2  DCN-V2 cross network (cross_type full | lowrank | mix, cross_rank, cross_experts)
         + deep network,
combined per config.model.structure (stacked | parallel). The history is pooled with
config.model.pooling (sum | mean | max), or with the config.model.attention unit (DIN's local
activation unit by default) when pooling == 'attention'.
"""
from __future__ import annotations

from seqrec_jax.data.features import DataSpec
from seqrec_jax.models import register_model
from seqrec_jax.models.builders import history_unit, sequence_ranker


@register_model('dnn')
def dnn(cfg, spec: DataSpec):
  return sequence_ranker(cfg, spec, history_unit(cfg), backbone='mlp')


@register_model('dcn')
def dcn(cfg, spec: DataSpec):
  return sequence_ranker(cfg, spec, history_unit(cfg), backbone='dcn')


@register_model('dcnv2')
def dcnv2(cfg, spec: DataSpec):
  return sequence_ranker(cfg, spec, history_unit(cfg), backbone='dcnv2')
