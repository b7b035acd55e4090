"""Activations for ranking MLPs: Dice (DIN eq. 8-9), PReLU, ReLU, sigmoid.

Every activation is a module called as `act(x, train=..., mask=...)` so MLPs can swap them
from config. `mask` (shape x.shape[:-1], True = real) only matters for Dice: inside attention
its batch statistics are taken over non-padding positions only.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


class Dice(nn.Module):
  """Dice: p(s) * s + (1 - p(s)) * alpha * s, p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps)).

  Training: E and Var are per-feature statistics of the current batch (over real positions
  when `mask` is given) and update moving averages in the `batch_stats` collection.
  Inference (`train=False`): the moving averages are used, so an example's output does not
  depend on the rest of the batch.
  """
  eps: float = 1e-8
  momentum: float = 0.99
  alpha_init: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool, mask=None):
    """x: [..., features]; mask: x.shape[:-1] bool or None. Returns x's shape."""
    feat = x.shape[-1]
    alpha = self.param('alpha', nn.initializers.constant(self.alpha_init), (feat,))
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((feat,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((feat,), jnp.float32))
    if train:
      xf = x.reshape(-1, feat).astype(jnp.float32)
      if mask is None:
        w = jnp.ones((xf.shape[0], 1), jnp.float32)
      else:
        w = mask.reshape(-1, 1).astype(jnp.float32)
      cnt = jnp.maximum(w.sum(), 1.0)
      mean = (w * xf).sum(0) / cnt
      var = (w * jnp.square(xf - mean)).sum(0) / cnt
      # No update during init: the first real batch would otherwise be counted twice.
      if not self.is_initializing():
        m = self.momentum
        ra_mean.value = m * ra_mean.value + (1 - m) * jax.lax.stop_gradient(mean)
        ra_var.value = m * ra_var.value + (1 - m) * jax.lax.stop_gradient(var)
    else:
      mean, var = ra_mean.value, ra_var.value
    p = jax.nn.sigmoid((x - mean) * jax.lax.rsqrt(var + self.eps))
    return p * x + (1 - p) * alpha * x


class PReLU(nn.Module):
  """Parametric ReLU with one learnable slope per feature (He et al., 2015)."""
  alpha_init: float = 0.25

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    del train, mask
    alpha = self.param('alpha', nn.initializers.constant(self.alpha_init), (x.shape[-1],))
    return jnp.where(x >= 0, x, alpha * x)


class Elementwise(nn.Module):
  """A parameter-free activation (relu, sigmoid, ...)."""
  fn: Callable = nn.relu

  def __call__(self, x, train: bool = False, mask=None):
    del train, mask
    return self.fn(x)


ACTIVATIONS = ('dice', 'prelu', 'relu', 'sigmoid', 'linear')


def make_activation(name: str, dice_eps: float = 1e-8, dice_momentum: float = 0.99) -> nn.Module:
  """Returns a fresh activation module by name (config.model.activation and friends)."""
  if name == 'dice':
    return Dice(eps=dice_eps, momentum=dice_momentum)
  if name == 'prelu':
    return PReLU()
  if name == 'relu':
    return Elementwise(nn.relu)
  if name == 'sigmoid':
    return Elementwise(nn.sigmoid)
  if name == 'linear':
    return Elementwise(lambda x: x)
  raise ValueError(f'unknown activation {name!r}; choose one of {ACTIVATIONS}')
