"""`base` (Embedding&MLP with sum/mean pooling, the LastN baseline) and `din` (DIN, KDD'18).

Both are `SequenceRanker`s and differ only in the history pooling unit: `base` uses a
non-attentive pooling (config.model.pooling: sum | mean | max), `din` the attention unit of
config.model.attention (default: MLP over [q, k, q-k, q*k] with Dice, no softmax).
"""
from __future__ import annotations

import flax.linen as nn
import ml_collections

from seqrec_jax.data.features import DataSpec
from seqrec_jax.layers.attention import attention_from_model_config, build_attention
from seqrec_jax.models import register_model
from seqrec_jax.models.blocks import Head, SequenceInput
from seqrec_jax.models.towers import build_tower


class SequenceRanker(nn.Module):
  """SequenceInput -> MLP -> logit(s). batch -> [B] or [B, T]."""
  spec: DataSpec
  pooling: nn.Module | None
  embed_dim: int = 16
  use_user: bool = False
  hidden: tuple = (200, 80)
  activation: str = 'prelu'
  dice_eps: float = 1e-8
  dropout: float = 0.0
  tower: nn.Module | None = None    # None: Head's MLP; else e.g. DCN-V2 (config.model.tower)
  mba_lambda: float = 0.0           # mini-batch aware regularisation (blocks.SequenceInput)
  embed_dropout: float = 0.0        # dropout of looked-up id vectors (layers/embedding.py)

  @nn.compact
  def __call__(self, batch, train: bool = False):
    x = SequenceInput(self.spec, self.pooling, self.embed_dim, self.use_user, self.mba_lambda,
                      self.embed_dropout, name='input')(batch, train)
    return Head(len(self.spec.tasks), self.hidden, self.activation, self.dice_eps,
                self.dropout, self.tower, name='head')(x, train)


def _ranker(cfg, spec, pooling, tower: str | None = None):
  return SequenceRanker(spec, pooling, cfg.embed_dim, cfg.use_user_embedding,
                        tuple(cfg.hidden), cfg.activation, cfg.dice_eps, cfg.dropout,
                        build_tower(cfg, tower), float(cfg.get('mba_lambda', 0.0)),
                        float(cfg.get('embed_dropout', 0.0)))


@register_model('base')
def base(cfg, spec: DataSpec):
  return _ranker(cfg, spec, build_attention(ml_collections.ConfigDict({'name': cfg.pooling})))


@register_model('din')
def din(cfg, spec: DataSpec):
  # attention.activation 'same' (default) follows model.activation; Dice eps = model.dice_eps.
  return _ranker(cfg, spec, attention_from_model_config(cfg))
