"""Dice / PReLU against NumPy references (DIN paper eq. 8-9), and activation selection in models."""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax import models
from seqrec_jax.configs import load_config
from seqrec_jax.data.features import DataSpec, Task
from seqrec_jax.layers.activations import ACTIVATIONS, Dice, PReLU, make_activation

EPS, MOM = 1e-3, 0.9


def _np_dice(x, alpha, mean, var, eps=EPS):
  p = 1.0 / (1.0 + np.exp(-(x - mean) / np.sqrt(var + eps)))
  return p * x + (1 - p) * alpha * x


def _np_stats(x, mask):
  xr = x[mask]                                            # real positions only: [N, F]
  return xr.mean(0), xr.var(0)                            # biased variance, per feature


def _batch(seed=0):
  r = np.random.default_rng(seed)
  x = (r.normal(size=(4, 5, 3)) * [1.0, 3.0, 0.2] + [0.0, 2.0, -1.0]).astype(np.float32)
  mask = np.arange(5)[None, :] >= np.array([[0], [2], [4], [5]])    # lengths 5, 3, 1, 0
  return x, mask


def _dice_vars(seed=1):
  dice = Dice(eps=EPS, momentum=MOM)
  x, mask = _batch()
  v = dice.init(jax.random.key(0), x, train=False)
  alpha = np.random.default_rng(seed).normal(size=3).astype(np.float32)
  return dice, {'params': {'alpha': alpha}, 'batch_stats': v['batch_stats']}, alpha


def test_dice_train_mode_uses_masked_batch_stats_and_updates_moving_averages():
  dice, v, alpha = _dice_vars()
  x, mask = _batch()
  out, new = dice.apply(v, x, train=True, mask=mask, mutable=['batch_stats'])
  mean, var = _np_stats(x, mask)
  np.testing.assert_allclose(out, _np_dice(x, alpha, mean, var), rtol=1e-5, atol=1e-5)
  bs = new['batch_stats']
  np.testing.assert_allclose(bs['mean'], (1 - MOM) * mean, rtol=1e-5)      # zero-initialised
  np.testing.assert_allclose(bs['var'], (1 - MOM) * var, rtol=1e-5)
  assert float(bs['count']) == 1.0
  # Padded values do not enter the statistics.
  x_junk = np.where(mask[..., None], x, 1e4).astype(np.float32)
  out2, new2 = dice.apply(v, x_junk, train=True, mask=mask, mutable=['batch_stats'])
  np.testing.assert_allclose(np.asarray(out2)[mask], np.asarray(out)[mask], rtol=1e-6)
  np.testing.assert_allclose(new2['batch_stats']['mean'], bs['mean'], rtol=1e-6)
  # Without a mask (main MLP): statistics over every row.
  out3, _ = dice.apply(v, x[0], train=True, mutable=['batch_stats'])
  np.testing.assert_allclose(out3, _np_dice(x[0], alpha, x[0].mean(0), x[0].var(0)), rtol=1e-5,
                             atol=1e-5)


def test_dice_eval_mode_uses_bias_corrected_moving_averages():
  dice, v, alpha = _dice_vars()
  x, mask = _batch()
  # Before any update: mean 0, variance 1.
  out0 = dice.apply(v, x, train=False)
  np.testing.assert_allclose(out0, _np_dice(x, alpha, 0.0, 1.0), rtol=1e-5, atol=1e-6)
  # Two updates with different batches; reference EMA with Adam-style bias correction.
  ema_m, ema_v, stats = np.zeros(3), np.zeros(3), []
  for seed in (0, 1):
    xs, ms = _batch(seed)
    _, new = dice.apply(v, xs, train=True, mask=ms, mutable=['batch_stats'])
    v = dict(v, **new)
    m, s = _np_stats(xs, ms)
    ema_m, ema_v = MOM * ema_m + (1 - MOM) * m, MOM * ema_v + (1 - MOM) * s
    stats.append((m, s))
  corr = 1 - MOM ** 2
  out = dice.apply(v, x, train=False)
  np.testing.assert_allclose(out, _np_dice(x, alpha, ema_m / corr, ema_v / corr), rtol=1e-5,
                             atol=1e-5)
  # After exactly one update the corrected averages are that batch's stats:
  # eval output == train output on the same batch.
  _, one = dice.apply(_dice_vars()[1], x, train=True, mask=mask, mutable=['batch_stats'])
  v1 = dict(v, **one)
  np.testing.assert_allclose(dice.apply(v1, x, train=False),
                             dice.apply(v1, x, train=True, mask=mask, mutable=['batch_stats'])[0],
                             rtol=1e-5, atol=1e-5)
  # Eval: an example's output does not depend on the rest of the batch.
  np.testing.assert_allclose(dice.apply(v, x[:1], train=False), np.asarray(out)[:1], rtol=1e-6)


def test_dice_all_padding_batch_keeps_moving_averages_and_is_finite():
  dice, v, _ = _dice_vars()
  x, mask = _batch()
  _, new = dice.apply(v, x, train=True, mask=mask, mutable=['batch_stats'])
  v = dict(v, **new)
  out, new2 = dice.apply(v, x, train=True, mask=np.zeros_like(mask), mutable=['batch_stats'])
  assert np.isfinite(out).all()
  for k in ('mean', 'var', 'count'):
    np.testing.assert_array_equal(new2['batch_stats'][k], v['batch_stats'][k])


def test_dice_gradient_flows_through_batch_statistics():
  """Matches autodiff of the plain formula with the batch stats inside the graph."""
  dice, v, alpha = _dice_vars()
  x, mask = _batch()
  w = mask[..., None].astype(np.float32)

  def ref(x, alpha):
    n = w.sum()
    mean = (w * x).sum((0, 1)) / n
    var = (w * (x - mean) ** 2).sum((0, 1)) / n
    p = jax.nn.sigmoid((x - mean) / jnp.sqrt(var + EPS))
    return jnp.sum(w * (p * x + (1 - p) * alpha * x) * x)

  def got(x, alpha):
    out, _ = dice.apply(dict(v, params={'alpha': alpha}), x, train=True, mask=mask,
                        mutable=['batch_stats'])
    return jnp.sum(w * out * x)

  for g1, g2 in zip(jax.grad(got, (0, 1))(x, alpha), jax.grad(ref, (0, 1))(x, alpha)):
    np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-5)


def test_prelu_and_elementwise_match_numpy():
  x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
  v = PReLU().init(jax.random.key(0), x)
  assert np.allclose(v['params']['alpha'], 0.25)
  np.testing.assert_allclose(PReLU().apply(v, x), np.where(x >= 0, x, 0.25 * x))
  for name, fn in [('relu', lambda z: np.maximum(z, 0)),
                   ('sigmoid', lambda z: 1 / (1 + np.exp(-z))), ('linear', lambda z: z)]:
    act = make_activation(name)
    np.testing.assert_allclose(act.apply({}, x), fn(x), rtol=1e-6)
  assert set(ACTIVATIONS) >= {'dice', 'prelu', 'relu', 'sigmoid'}
  with pytest.raises(ValueError, match=r"'swish' \(config.model.activation\)"):
    make_activation('swish', source='config.model.activation')


SPEC = DataSpec(num_users=5, num_items=7, num_cates=3, max_len=4, tasks=(Task('click'),))


def _modules(main, attn, eps=1e-8):
  cfg = load_config('test.py', {'model.activation': main, 'model.attention.activation': attn,
                                'model.dice_eps': eps})
  model = models.build_model(cfg.model, SPEC)
  b = {'user_id': np.ones(2, np.int32), 'target_item': np.ones(2, np.int32),
       'target_cate': np.ones(2, np.int32), 'hist_items': np.ones((2, 4), np.int32),
       'hist_cates': np.ones((2, 4), np.int32), 'hist_mask': np.ones((2, 4), bool),
       'label': np.zeros(2, np.float32)}
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), b, train=False))
  names = lambda tree: {k.split('_')[0] for k in tree}
  return model, names(v['params']['head']['mlp']), names(v['params']['pooling'])


@pytest.mark.parametrize('main,attn,want_main,want_attn', [
    ('prelu', 'dice', 'PReLU', 'Dice'), ('dice', 'prelu', 'Dice', 'PReLU'),
    ('dice', 'same', 'Dice', 'Dice'), ('prelu', 'same', 'PReLU', 'PReLU')])
def test_attention_and_main_mlp_activations_are_separately_selectable(main, attn, want_main,
                                                                      want_attn):
  _, head, pool = _modules(main, attn)
  other = {'PReLU': 'Dice', 'Dice': 'PReLU'}
  assert want_main in head and other[want_main] not in head
  assert want_attn in pool and other[want_attn] not in pool


def test_dice_eps_comes_from_config():
  model, _, _ = _modules('dice', 'same', eps=1e-3)
  assert model.dice_eps == 1e-3 and model.pooling.dice_eps == 1e-3


def test_vmapped_dice_equals_per_run_dice_and_has_no_transpose():
  """A multi-run group vmaps Dice over runs: forward, batch stats and gradients equal each run's
  own Dice, and the compiled gradient moves no [S, N, F] activation (ops.colsum's vmap rule)."""
  dice, v, _ = _dice_vars()
  xs = np.stack([_batch(s)[0] for s in range(3)])                        # [S=3, 4, 5, 3]
  mask = _batch()[1]
  alphas = np.random.default_rng(2).normal(size=(3, 3)).astype(np.float32)

  def run(x, alpha):
    out, new = dice.apply(dict(v, params={'alpha': alpha}), x, train=True, mask=mask,
                          mutable=['batch_stats'])
    return jnp.sum(out * x), (out, new['batch_stats'])

  grad = jax.jit(jax.grad(run, (0, 1), has_aux=True))
  vmapped = jax.jit(jax.vmap(grad)).lower(xs, alphas).compile()
  got = vmapped(xs, alphas)
  for s in range(3):
    want = grad(xs[s], alphas[s])
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(np.asarray(a)[s], b, rtol=1e-5, atol=1e-6)
  hlo = vmapped.as_text()
  # A transpose or copy of a rank >= 3 array ([S, N, F] or [N, S, F]) is the vmapped dot's.
  moves = [l for l in hlo.splitlines()
           if re.search(r'= f32\[\d+,\d+,[\d,]+\]\S* (transpose|copy)\(', l)]
  assert not moves, moves[:3]
