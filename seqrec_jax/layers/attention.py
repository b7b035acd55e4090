"""Target attention and pooling units, registered by name in ATTENTIONS.

Every unit is a flax module called as `unit(query, keys, mask, train) -> [B, D]` with
query [B, D] (the candidate), keys [B, L, D] (behaviours, newest last) and mask [B, L]
(True = real behaviour). Contract (tested over the whole registry):
  * padding never gets weight: masked positions are excluded before softmax and zeroed for
    'none'/'sigmoid'; changing values at padded positions changes nothing;
  * an all-padding history yields a zero vector, never NaN.
A unit is built from its config block by `build_attention(cfg)`; register a new one with
`@register_attention('name')` on a function `(cfg) -> nn.Module`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqrec_jax.layers.activations import make_activation
from seqrec_jax.layers.attention_proj import ConcatDense

ATTENTIONS: dict[str, Callable[..., nn.Module]] = {}
NORMALIZERS = ('none', 'softmax', 'sigmoid')


def register_attention(name: str):
  def deco(fn):
    if name in ATTENTIONS:
      raise ValueError(f'attention {name!r} is already registered')
    ATTENTIONS[name] = fn
    return fn
  return deco


def build_attention(cfg) -> nn.Module:
  """cfg: the `model.attention` config block; cfg.name selects the registry entry."""
  if cfg.name not in ATTENTIONS:
    raise ValueError(f'unknown attention {cfg.name!r} (config.model.attention.name); '
                     f'registered: {sorted(ATTENTIONS)}')
  return ATTENTIONS[cfg.name](cfg)


def normalize(scores, mask, normalizer: str):
  """scores [B, L] -> weights [B, L]; padding gets exactly 0; all-padding rows give zeros."""
  if normalizer == 'none':       # DIN paper: keep the intensity of interest
    return jnp.where(mask, scores, 0.0)
  if normalizer == 'sigmoid':
    return jnp.where(mask, jax.nn.sigmoid(scores), 0.0)
  if normalizer == 'softmax':
    # Exclude padding before the softmax; `where=` keeps all-padding rows finite (then zeroed).
    w = jax.nn.softmax(jnp.where(mask, scores, -1e30), axis=-1, where=mask)
    return jnp.where(mask, w, 0.0)
  raise ValueError(f'unknown normalizer {normalizer!r}; choose from {NORMALIZERS}')


def weighted_sum(weights, keys):
  """weights [B, L], keys [B, L, D] -> [B, D]."""
  return jnp.einsum('bl,bld->bd', weights, keys)


class DinAttention(nn.Module):
  """DIN local activation unit: MLP over [q, k, q-k, q*k] (configurable) -> score per behaviour.

  Attributes:
    inputs: ordered subset of ('q', 'k', 'q-k', 'q*k', 'outer').
    hidden: MLP hidden sizes (paper/official code: 80-40).
    activation: 'dice' | 'prelu' | 'relu' | 'sigmoid' (official DIN code uses sigmoid).
    normalizer: 'none' (paper) | 'softmax' | 'sigmoid'.
    dice_eps: Dice epsilon.
  """
  inputs: Sequence[str] = ('q', 'k', 'q-k', 'q*k')
  hidden: Sequence[int] = (80, 40)
  activation: str = 'dice'
  normalizer: str = 'none'
  dice_eps: float = 1e-8

  @nn.compact
  def __call__(self, query, keys, mask, train: bool):
    """query [B, D], keys [B, L, D], mask [B, L] -> [B, D]."""
    if not self.hidden:
      raise ValueError('DinAttention needs at least one hidden layer (model.attention.hidden)')
    h = ConcatDense(self.hidden[0], tuple(self.inputs), name='dense_0')(query, keys)
    # Dice statistics over real (non-padding) positions only.
    h = make_activation(self.activation, self.dice_eps)(h, train=train, mask=mask)
    for i, n in enumerate(self.hidden[1:], start=1):
      h = nn.Dense(n, name=f'dense_{i}')(h)
      h = make_activation(self.activation, self.dice_eps)(h, train=train, mask=mask)
    scores = nn.Dense(1, name='score')(h)[..., 0]                 # [B, L]
    return weighted_sum(normalize(scores, mask, self.normalizer), keys)


class Pooling(nn.Module):
  """Non-attentive pooling of the history: 'sum' | 'mean' | 'max' (masked)."""
  mode: str = 'sum'

  def __call__(self, query, keys, mask, train: bool):
    del query, train
    m = mask[..., None].astype(keys.dtype)
    if self.mode == 'sum':
      return (keys * m).sum(1)
    if self.mode == 'mean':
      return (keys * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
    if self.mode == 'max':
      out = jnp.where(mask[..., None], keys, -jnp.inf).max(1)
      return jnp.where(mask.any(1, keepdims=True), out, 0.0)
    raise ValueError(f'unknown pooling {self.mode!r}; choose sum, mean or max')


@register_attention('din')
def _din(cfg):
  return DinAttention(inputs=tuple(cfg.inputs), hidden=tuple(cfg.hidden),
                      activation=cfg.activation, normalizer=cfg.normalizer,
                      dice_eps=cfg.get('dice_eps', 1e-8))


for _mode in ('sum', 'mean', 'max'):
  register_attention(_mode)(lambda cfg, _m=_mode: Pooling(_m))
