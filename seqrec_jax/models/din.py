"""`base` (Embedding&MLP with sum/mean pooling, the LastN baseline) and `din` (DIN, KDD'18).

Both are `SequenceRanker`s (models/blocks.py) and differ only in the history pooling unit: `base`
uses a non-attentive pooling (config.model.pooling: sum | mean | max), `din` the attention unit of
config.model.attention (default: MLP over [q, k, q-k, q*k] with Dice, no softmax).
"""
from __future__ import annotations

from seqrec_jax.data.features import DataSpec
from seqrec_jax.models import register_model
from seqrec_jax.models.builders import attention_unit, pooling_unit, sequence_ranker


@register_model('base')
def base(cfg, spec: DataSpec):
  return sequence_ranker(cfg, spec, pooling_unit(cfg.pooling))


@register_model('din')
def din(cfg, spec: DataSpec):
  # attention.activation 'same' (default) follows model.activation; Dice eps = model.dice_eps.
  return sequence_ranker(cfg, spec, attention_unit(cfg))
