"""layers/ops.py: hand-written gradients equal autodiff of the textbook forms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax.layers import ops
from seqrec_jax.layers.activations import Dice


def _rand(*shape, seed=0, scale=1.0, shift=0.0):
  return jnp.asarray(np.random.default_rng(seed).normal(shift, scale, shape), jnp.float32)


def test_colsum():
  x = _rand(3, 5, 4)
  np.testing.assert_allclose(ops.colsum(x), x.sum((0, 1)), rtol=1e-5, atol=1e-6)


def _dice_reference(x, w, alpha, eps):
  cnt = jnp.maximum(w.sum(), 1.0)
  mean = (w[:, None] * x).sum(0) / cnt
  var = (w[:, None] * jnp.square(x - mean)).sum(0) / cnt
  p = jax.nn.sigmoid((x - mean) / jnp.sqrt(var + eps))
  return p * x + (1 - p) * alpha * x, mean, var


@pytest.mark.parametrize('mask', ['all', 'some', 'none'])
def test_dice_train_values_and_gradients_match_autodiff(mask):
  n, f = 40, 6
  x, alpha = _rand(n, f, scale=2.0, shift=0.5), _rand(f, seed=1, scale=0.3)
  w = {'all': np.ones(n), 'some': np.random.default_rng(3).random(n) > 0.4,
       'none': np.zeros(n)}[mask].astype(np.float32)
  w = jnp.asarray(w)
  g, gm, gv = _rand(n, f, seed=4), _rand(f, seed=5), _rand(f, seed=6)

  def loss(fn):
    def l(x, alpha):
      y, m, v = fn(x, w, alpha, 1e-3)
      return (y * g).sum() + (m * gm).sum() + (v * gv).sum()
    return l

  for a, r in zip(ops.dice_train(x, w, alpha, 1e-3), _dice_reference(x, w, alpha, 1e-3)):
    np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6)
  got = jax.grad(loss(ops.dice_train), argnums=(0, 1))(x, alpha)
  want = jax.grad(loss(_dice_reference), argnums=(0, 1))(x, alpha)
  for a, r in zip(got, want):
    np.testing.assert_allclose(a, r, rtol=2e-4, atol=2e-5)


def test_fused_dice_module_equals_reference_module_in_train_and_eval():
  x = _rand(5, 8, 3, scale=1.5, shift=-0.2)
  mask = jnp.asarray(np.random.default_rng(0).random((5, 8)) > 0.3)
  g = _rand(5, 8, 3, seed=9)
  out = {}
  for fused in (True, False):
    d = Dice(fused=fused)
    v = d.init(jax.random.key(0), x, train=True, mask=mask)
    p = {'alpha': jnp.full((3,), 0.2)}

    def loss(p, x, d=d, v=v):
      y, nv = d.apply({'params': p, 'batch_stats': v['batch_stats']}, x, train=True,
                      mask=mask, mutable=['batch_stats'])
      return (y * g).sum(), nv
    (l, nv), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(p, x)
    ev = d.apply({'params': p, **nv}, x, train=False)
    out[fused] = (l, nv, grads, ev)
  jax.tree.map(lambda a, r: np.testing.assert_allclose(a, r, rtol=2e-4, atol=2e-5),
               out[True], out[False])
