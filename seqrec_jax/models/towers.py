"""Towers: what maps the embedding layer's output [B, F] to the features under the logit layer.

`build_tower(cfg)` reads config.model.tower: 'mlp' (None: models/blocks.Head's own MLP, the
default, parameters unchanged), 'dcn' (DCN cross network + deep network) or 'dcnv2' (DCN-V2
cross network of config.model.cross_type + deep network). The deep network is
config.model.hidden with config.model.activation; structure (stacked | parallel), number of
cross layers, rank and experts come from config.model.structure / cross_layers / cross_rank /
cross_experts / cross_nonlinearity.
"""
from __future__ import annotations

import flax.linen as nn

from seqrec_jax.layers.cross import CROSS_TYPES, CrossDeep, CrossNet, CrossNetV2

TOWERS = ('mlp', 'dcn', 'dcnv2')


def build_tower(cfg, kind: str | None = None) -> nn.Module | None:
  """cfg: the config.model block; kind overrides cfg.tower. Returns None for 'mlp'."""
  kind = kind or cfg.get('tower', 'mlp')
  if kind == 'mlp':
    return None
  if kind == 'dcn':
    cross = CrossNet(cfg.cross_layers)
  elif kind == 'dcnv2':
    if cfg.cross_type not in CROSS_TYPES:
      raise ValueError(f'unknown config.model.cross_type {cfg.cross_type!r}; '
                       f'choose from {CROSS_TYPES}')
    cross = CrossNetV2(cfg.cross_layers, cfg.cross_type, cfg.cross_rank, cfg.cross_experts,
                       cfg.cross_nonlinearity)
  else:
    raise ValueError(f'unknown config.model.tower {kind!r}; choose from {TOWERS}')
  return CrossDeep(cross, tuple(cfg.hidden), cfg.structure, cfg.activation, cfg.dice_eps,
                   cfg.dropout)
