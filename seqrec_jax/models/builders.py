"""Config -> module: the one place that turns config.model blocks into layers.

Layers (seqrec_jax/layers/) take plain arguments and never read a config; model builders
(`@register_model` functions) call these:

  * `build_attention(cfg)`: a history unit from an attention config block (config.model.attention
    or {'name': 'sum' | 'mean' | 'max'}), by name from the ATTENTIONS registry; register a new
    one with `@register_attention('name')` on a function `(cfg) -> nn.Module` (worked example:
    models/attention_cosine.py, docs/attention.md "Add an attention variant");
  * `attention_unit(model_cfg)`: config.model.attention with activation 'same' resolved to
    config.model.activation and Dice's eps from config.model.dice_eps;
  * `pooling_unit(name)`, `history_unit(model_cfg)`: a non-attentive pooling by name; the
    history pooling of config.model.pooling ('attention' = the attention unit);
  * `build_backbone(model_cfg, kind)`: the network between the input block and the logit layer
    (config.model.backbone: 'mlp' = the Head's MLP, 'dcn' / 'dcnv2' = cross network + deep
    network). "TaskTower" is kept for the per-task networks of the multi-task models;
  * `sequence_ranker(model_cfg, spec, pooling, backbone)`: the SequenceRanker of base, din,
    dnn, dcn and dcnv2;
  * `build_field_gate(model_cfg)`: config.model.field_gate ('senet': FiBiNET's SENET layer on
    the shared field embeddings of every field-based model, layers/gating.py);
  * `build_lhuc(model_cfg, spec, sizes)`: config.model.lhuc (LHUC / PPNet gates on the hidden
    layers of the main MLP or of each task tower, from stop-gradient personalisation features).
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import ml_collections

from seqrec_jax.configs import default
from seqrec_jax.layers.activations import ACTIVATIONS
from seqrec_jax.layers.attention import (NORMALIZERS, BilinearAttention, DinAttention,
                                         DotAttention, MultiHeadTargetAttention, Pooling)
from seqrec_jax.layers.attention_proj import PARTS
from seqrec_jax.layers.cross import CROSS_TYPES, CrossDeep, CrossNet, CrossNetV2
from seqrec_jax.layers.gating import EXCITATIONS, LHUCGate, SENet
from seqrec_jax.models.blocks import SequenceRanker

ATTENTIONS: dict[str, Callable[..., nn.Module]] = {}
POOLINGS = ('sum', 'mean', 'max')
BACKBONES = ('mlp', 'dcn', 'dcnv2')
_SRC = 'config.model.attention'


def register_attention(name: str):
  def deco(fn):
    if name in ATTENTIONS:
      raise ValueError(f'attention {name!r} is already registered')
    ATTENTIONS[name] = fn
    return fn
  return deco


def _complete(cfg) -> ml_collections.ConfigDict:
  """An attention block with every key: cfg's over the table's defaults (configs/default.py:
  model.attention.*, with activation and dice_eps those of model.*)."""
  model = default.get_config().model
  out = ml_collections.ConfigDict(model.attention.to_dict())
  out.activation, out.dice_eps = model.activation, model.dice_eps
  out.update(dict(cfg))
  return out


def build_attention(cfg) -> nn.Module:
  """cfg: an attention block (`model.attention` with activation resolved, or any subset of
  its keys: the rest take their defaults); cfg.name selects the registry entry."""
  cfg = _complete(cfg)
  if cfg.name not in ATTENTIONS:
    raise ValueError(f'unknown attention {cfg.name!r} ({_SRC}.name); '
                     f'registered: {sorted(ATTENTIONS)}')
  if cfg.normalizer not in NORMALIZERS:
    raise ValueError(f'unknown normalizer {cfg.normalizer!r} ({_SRC}.normalizer); choose from '
                     f'{NORMALIZERS}')
  if cfg.activation not in ACTIVATIONS:
    raise ValueError(f'unknown activation {cfg.activation!r} ({_SRC}.activation; models resolve '
                     f"'same' to config.model.activation); choose from {ACTIVATIONS}")
  bad = [p for p in cfg.inputs if p not in PARTS]
  if bad:
    raise ValueError(f'unknown attention input(s) {bad} ({_SRC}.inputs={tuple(cfg.inputs)}); '
                     f'choose an ordered subset of {PARTS}')
  unit = ATTENTIONS[cfg.name](cfg)
  if not isinstance(getattr(unit, 'order_free', None), bool):
    raise TypeError(f'attention {cfg.name!r} must declare a bool `order_free` attribute')
  return unit


def attention_unit(model_cfg) -> nn.Module:
  """The unit of config.model.attention, with activation 'same' -> config.model.activation
  (so the attention MLP and the main MLP are selectable separately or together) and Dice's
  eps from config.model.dice_eps."""
  att = ml_collections.ConfigDict(model_cfg.attention.to_dict())
  if att.activation == 'same':
    att.activation = model_cfg.activation
  att.dice_eps = model_cfg.dice_eps
  return build_attention(att)


def pooling_unit(name: str) -> nn.Module:
  """A unit by name alone (config.model.pooling: sum | mean | max, or any registered unit
  that needs no other keys)."""
  return build_attention(ml_collections.ConfigDict({'name': name}))


def history_unit(model_cfg) -> nn.Module:
  """The history pooling of config.model.pooling: 'attention' = the attention unit
  (`attention_unit`), else `pooling_unit(config.model.pooling)`."""
  if model_cfg.pooling == 'attention':
    return attention_unit(model_cfg)
  return pooling_unit(model_cfg.pooling)


def build_backbone(model_cfg, kind: str | None = None) -> nn.Module | None:
  """The network under the logit layer; kind overrides config.model.backbone. None for 'mlp'
  (models/blocks.Head's own MLP, parameters unchanged). The deep network is config.model.hidden
  with config.model.activation; structure (stacked | parallel), number of cross layers, rank and
  experts come from config.model.structure / cross_layers / cross_rank / cross_experts /
  cross_nonlinearity."""
  kind = kind or model_cfg.backbone
  if kind == 'mlp':
    return None
  if kind == 'dcn':
    cross = CrossNet(model_cfg.cross_layers)
  elif kind == 'dcnv2':
    if model_cfg.cross_type not in CROSS_TYPES:
      raise ValueError(f'unknown config.model.cross_type {model_cfg.cross_type!r}; '
                       f'choose from {CROSS_TYPES}')
    cross = CrossNetV2(model_cfg.cross_layers, model_cfg.cross_type, model_cfg.cross_rank,
                       model_cfg.cross_experts, model_cfg.cross_nonlinearity)
  else:
    raise ValueError(f'unknown config.model.backbone {kind!r}; choose from {BACKBONES}')
  return CrossDeep(cross, tuple(model_cfg.hidden), model_cfg.structure, model_cfg.activation,
                   model_cfg.dice_eps, model_cfg.dropout)


def sequence_ranker(model_cfg, spec, pooling: nn.Module | None,
                    backbone: str | None = None) -> SequenceRanker:
  """The SequenceRanker (models/blocks.py) of config.model with the given history unit;
  backbone overrides config.model.backbone."""
  c = model_cfg
  lhuc, personal = build_lhuc(c, spec, tuple(c.hidden))
  kind = backbone or c.backbone
  if lhuc is not None and kind != 'mlp':
    raise ValueError(f'config.model.lhuc={c.lhuc!r} scales the MLP head; backbone {kind!r} '
                     "(config.model.backbone or the model) has none: set model.lhuc='none'")
  return SequenceRanker(spec, pooling, c.embed_dim, c.use_user_embedding, tuple(c.hidden),
                        c.activation, c.dice_eps, c.dropout, build_backbone(c, backbone),
                        float(c.mba_lambda), float(c.embed_dropout),
                        build_field_gate(c), lhuc, personal, bool(c.input_bn), c.frequency_reg)


FIELD_GATES = ('none', 'senet')


def build_field_gate(model_cfg) -> nn.Module | None:
  """config.model.field_gate: 'none' -> None; 'senet' -> layers.gating.SENet with
  config.model.senet_reduction and config.model.senet_excitation (relu | sigmoid)."""
  kind = model_cfg.field_gate
  if kind == 'none':
    return None
  if kind != 'senet':
    raise ValueError(f'unknown config.model.field_gate {kind!r}; choose from {FIELD_GATES}')
  exc = model_cfg.senet_excitation
  if exc not in EXCITATIONS:
    raise ValueError(f'unknown config.model.senet_excitation {exc!r}; choose from {EXCITATIONS}')
  r = float(model_cfg.senet_reduction)
  if not r >= 1:
    raise ValueError(f'config.model.senet_reduction must be >= 1, got {r}')
  return SENet(r, exc)


def lhuc_layers(value: str, num_layers: int) -> tuple[int, ...]:
  """config.model.lhuc -> the hidden-layer indices to scale: 'none' -> (), 'all', 'last', or
  comma-separated indices ('0,1'; negative counts from the end)."""
  value = str(value).strip()
  if value == 'none':
    return ()
  if value == 'all':
    return tuple(range(num_layers))
  if value == 'last':
    return (num_layers - 1,) if num_layers else ()
  try:
    raw = [int(v) for v in value.split(',')]
  except ValueError:
    raw = None
  if raw is None or any(not -num_layers <= i < num_layers for i in raw):
    raise ValueError(f"config.model.lhuc={value!r}: choose 'none', 'all', 'last' or hidden-layer "
                     f'indices in [0, {num_layers}) separated by commas')
  return tuple(sorted({i % num_layers for i in raw}))


def build_lhuc(model_cfg, spec, sizes: tuple) -> tuple[nn.Module | None, tuple]:
  """(layers.gating.LHUCGate | None, personalisation field names) of config.model.lhuc for an
  MLP with hidden `sizes`. The gate reads config.model.lhuc_inputs: 'user' (the user id; needs
  config.model.use_user_embedding) and/or sparse field names of the dataset."""
  layers = lhuc_layers(model_cfg.lhuc, len(sizes))
  if not layers:
    return None, ()
  names = tuple(model_cfg.lhuc_inputs)
  sparse = [f.name for f in spec.sparse]
  bad = [n for n in names if n != 'user' and n not in sparse]
  if bad or not names:
    raise ValueError(f'config.model.lhuc_inputs={names}: unknown {bad or "(empty)"}; choose '
                     f"'user' and/or sparse fields of the dataset {sparse}")
  if 'user' in names and not model_cfg.use_user_embedding:
    raise ValueError("config.model.lhuc_inputs has 'user' but config.model.use_user_embedding "
                     'is False (no user table to read); enable it or list user fields only')
  return LHUCGate(tuple(sizes), layers, int(model_cfg.lhuc_hidden)), names


# The built-in units: a complete attention block (build_attention) -> layer with plain arguments.

def _position(cfg) -> dict:
  return dict(use_position=bool(cfg.use_position), max_position=int(cfg.max_position))


@register_attention('din')
def _din(cfg):
  return DinAttention(inputs=tuple(cfg.inputs), hidden=tuple(cfg.hidden),
                      activation=cfg.activation, normalizer=cfg.normalizer,
                      dice_eps=cfg.dice_eps, **_position(cfg))


@register_attention('dot')
def _dot(cfg):
  return DotAttention(False, cfg.normalizer, **_position(cfg))


@register_attention('scaled_dot')
def _scaled_dot(cfg):
  return DotAttention(True, cfg.normalizer, **_position(cfg))


@register_attention('bilinear')
def _bilinear(cfg):
  return BilinearAttention(cfg.normalizer, **_position(cfg))


@register_attention('multihead')
def _multihead(cfg):
  return MultiHeadTargetAttention(int(cfg.num_heads), cfg.normalizer, **_position(cfg))


for _mode in POOLINGS:
  register_attention(_mode)(lambda cfg, _m=_mode: Pooling(_m))

# The docs/attention.md "Add an attention variant" example lives in its own module; importing
# it registers 'cosine' (and the registry tests then cover it).
from seqrec_jax.models import attention_cosine  # noqa: E402,F401  pylint: disable=g-import-not-at-top
