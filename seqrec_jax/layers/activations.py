"""Activations for ranking MLPs: Dice (DIN eq. 8-9), PReLU, ReLU, sigmoid.

Every activation is a module called as `act(x, train=..., mask=...)` so MLPs can swap them
from config. `mask` (shape x.shape[:-1], True = real) only matters for Dice: inside attention
its batch statistics are taken over non-padding positions only.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqrec_jax.layers import ops

# Set by parallel.pmap_step while it traces a per-device train step: Dice then sums its batch
# statistics over this mapped axis, so they are the global batch's (as under jit).
_BATCH_AXIS = contextvars.ContextVar('dice_batch_axis', default=None)


@contextlib.contextmanager
def batch_stats_axis(axis_name: str | None):
  """Within this context (at trace time) Dice reduces batch statistics over `axis_name`."""
  token = _BATCH_AXIS.set(axis_name)
  try:
    yield
  finally:
    _BATCH_AXIS.reset(token)


def _batch_sum(x):
  axis = _BATCH_AXIS.get()
  return x if axis is None else jax.lax.psum(x, axis)


def _no_sum(x):
  return x


def _batch_sum_fn():
  """_batch_sum as a hashable function of the current context (for ops.dice_train)."""
  axis = _BATCH_AXIS.get()
  return _no_sum if axis is None else functools.partial(jax.lax.psum, axis_name=axis)


class Dice(nn.Module):
  """Dice (DIN eq. 8-9): f(s) = p(s) * s + (1 - p(s)) * alpha * s,
  p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps)), with per-feature alpha (init 0).

  Training: E and Var are per-feature statistics of the current batch (over real positions
  when `mask` is given; gradients flow through them as in batch norm) and update moving
  averages in the `batch_stats` collection. Inference (`train=False`): the moving averages
  are used, so an example's output does not depend on the rest of the batch.

  The moving averages are zero-initialised and bias-corrected (as Adam's moments): after t
  updates the estimate is ema / (1 - momentum^t). Without the correction a run of a few
  hundred steps would evaluate with stats still pulled towards the initial (0, 1). Before
  any update, inference uses mean 0 and variance 1. A batch without real positions (all
  padding) leaves the moving averages untouched.

  `fused` (default) computes training mode with `ops.dice_train`: the same values and
  gradients with batch sums as dots and a hand-written backward (DIN train step on CPU:
  see ops.py); `fused=False` is the textbook autodiff form, kept as the reference. Vmapped over
  a multi-run group's runs, the fused sums are reduces over each run's rows (`ops.wsum`'s vmap
  rule), so no activation is transposed; each run's values are its own Dice's.
  """
  eps: float = 1e-8
  momentum: float = 0.99
  alpha_init: float = 0.0
  fused: bool = True

  @nn.compact
  def __call__(self, x, train: bool, mask=None):
    """x: [..., features]; mask: x.shape[:-1] bool or None. Returns x's shape."""
    feat = x.shape[-1]
    alpha = self.param('alpha', nn.initializers.constant(self.alpha_init), (feat,))
    zeros = lambda: jnp.zeros((feat,), jnp.float32)
    ema_mean = self.variable('batch_stats', 'mean', zeros)
    ema_var = self.variable('batch_stats', 'var', zeros)
    count = self.variable('batch_stats', 'count', lambda: jnp.zeros((), jnp.float32))
    if train:
      xf = x.reshape(-1, feat).astype(jnp.float32)
      if mask is None:
        w = jnp.ones((xf.shape[0], 1), jnp.float32)
      else:
        w = mask.reshape(-1, 1).astype(jnp.float32)
      total = _batch_sum(w.sum())
      if self.fused:
        y, mean, var = ops.dice_train(xf, w[:, 0], alpha, self.eps, _batch_sum_fn())
      else:
        cnt = jnp.maximum(total, 1.0)
        mean = _batch_sum((w * xf).sum(0)) / cnt
        var = _batch_sum((w * jnp.square(xf - mean)).sum(0)) / cnt   # biased (paper's Var)
      # No update during init: the first real batch would otherwise be counted twice.
      if not self.is_initializing():
        m, has = self.momentum, total > 0
        upd = lambda ema, s: jnp.where(has, m * ema + (1 - m) * jax.lax.stop_gradient(s), ema)
        ema_mean.value = upd(ema_mean.value, mean)
        ema_var.value = upd(ema_var.value, var)
        count.value = count.value + has.astype(jnp.float32)
      if self.fused:
        return y.reshape(x.shape).astype(x.dtype)
    else:
      mean, var = dice_moving_stats(ema_mean.value, ema_var.value, count.value, self.momentum)
    p = jax.nn.sigmoid((x - mean) * jax.lax.rsqrt(var + self.eps))
    return p * x + (1 - p) * alpha * x


def dice_moving_stats(ema_mean, ema_var, count, momentum):
  """Bias-corrected moving (mean, var); (0, 1) before the first update."""
  corr = 1.0 - jnp.power(momentum, count)
  seen = count > 0
  mean = jnp.where(seen, ema_mean / jnp.where(seen, corr, 1.0), 0.0)
  var = jnp.where(seen, ema_var / jnp.where(seen, corr, 1.0), 1.0)
  return mean, var


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


def make_activation(name: str, dice_eps: float = 1e-8, dice_momentum: float = 0.99,
                    source: str = '') -> nn.Module:
  """Returns a fresh activation module by name (config.model.activation and friends).

  source: the config key the name came from, quoted in the error for an unknown name.
  """
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
  where = f' ({source})' if source else ''
  raise ValueError(f'unknown activation {name!r}{where}; choose one of {ACTIVATIONS}')
