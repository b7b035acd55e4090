"""Model registry. A model is a flax module called as `model(batch, train) -> logits`
([B] for one task, [B, T] for T tasks); models never read flags.

Register a builder `(model_config, DataSpec) -> nn.Module` with `@register_model('name')`.
"""
from __future__ import annotations

from typing import Callable

MODELS: dict[str, Callable] = {}


def register_model(name: str):
  def deco(fn):
    if name in MODELS:
      raise ValueError(f'model {name!r} is already registered')
    MODELS[name] = fn
    return fn
  return deco


def build_model(cfg, spec):
  """cfg: the `config.model` block; cfg.name selects the registry entry."""
  if cfg.name not in MODELS:
    raise ValueError(f'unknown model {cfg.name!r} (config.model.name); '
                     f'registered: {sorted(MODELS)}')
  for key in ('mba_lambda', 'embed_dropout'):   # read by SequenceRanker models only
    if cfg[key] and cfg.name not in EMBED_REGULARISED:
      raise ValueError(f'config.model.{key}={cfg[key]} is implemented for models '
                       f'{sorted(EMBED_REGULARISED)}, not {cfg.name!r}')
  if cfg.input_bn and cfg.name not in INPUT_BN:
    raise ValueError(f'config.model.input_bn=True is implemented for models {sorted(INPUT_BN)} '
                     f'(a BatchNorm before their MLP head), not {cfg.name!r}')
  if cfg.frequency_reg != 'mba' and cfg.name not in EMBED_REGULARISED:
    raise ValueError(f'config.model.frequency_reg={cfg.frequency_reg!r} is implemented for '
                     f'models {sorted(EMBED_REGULARISED)}, not {cfg.name!r}')
  return MODELS[cfg.name](cfg, spec)


# Models whose embedding tables take model.mba_lambda / model.embed_dropout (SequenceRanker).
EMBED_REGULARISED = frozenset({'base', 'din', 'dnn', 'dcn', 'dcnv2'})
# Models with models/blocks.Head (config.model.input_bn).
INPUT_BN = EMBED_REGULARISED | {'wide_deep', 'pnn', 'deepfm'}


# Importing the model modules registers them.
from seqrec_jax.models import din  # noqa: E402,F401  pylint: disable=g-import-not-at-top
from seqrec_jax.models import ctr  # noqa: E402,F401  pylint: disable=g-import-not-at-top
from seqrec_jax.models import dcn  # noqa: E402,F401  pylint: disable=g-import-not-at-top
from seqrec_jax.models import multitask  # noqa: E402,F401  pylint: disable=g-import-not-at-top
from seqrec_jax.models import prerank  # noqa: E402,F401  pylint: disable=g-import-not-at-top
from seqrec_jax.models import two_tower  # noqa: E402,F401  pylint: disable=g-import-not-at-top
