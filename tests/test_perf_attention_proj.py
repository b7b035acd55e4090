"""Optimised first attention layer (ConcatDense) vs the plain concatenation, and no
recompilation of the DIN train step. See seqrec_jax/layers/attention_proj.py."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax import models, steps
from seqrec_jax.configs import default
from seqrec_jax.data.features import DataSpec
from seqrec_jax.layers import attention as att
from seqrec_jax.layers.attention_proj import METHODS, PARTS, ConcatDense
from seqrec_jax.state import TrainState, make_optimizer

B, L, D, H = 3, 5, 4, 6
ORDERS = [('q', 'k', 'q-k', 'q*k'), ('q*k', 'k'), ('k', 'q', 'outer'), ('q-k',), ('q',),
          PARTS, ('outer', 'q*k', 'q-k', 'k', 'q')]


def _qk(seed=0, kb=B):
  r = np.random.default_rng(seed)
  return (r.normal(size=(B, D)).astype(np.float32),
          r.normal(size=(kb, L, D)).astype(np.float32))


def _params(order, seed=1):
  q, k = _qk()
  v = jax.eval_shape(lambda: ConcatDense(H, order).init(jax.random.key(0), q, k))
  r = np.random.default_rng(seed)
  return jax.tree.map(lambda x: r.normal(size=x.shape).astype(np.float32), v)


@pytest.mark.parametrize('order', ORDERS, ids=lambda o: '+'.join(o))
def test_every_method_matches_the_concatenation(order):
  q, k = _qk()
  v = _params(order)
  ref = ConcatDense(H, order, reference=True).apply(v, q, k)
  for method in METHODS:
    out = ConcatDense(H, order, method=method).apply(v, q, k)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4, err_msg=method)


@pytest.mark.parametrize('order', ORDERS[:3], ids=lambda o: '+'.join(o))
def test_gradients_match_the_concatenation(order):
  q, k = _qk(seed=2)
  v = _params(order)
  w = np.random.default_rng(3).normal(size=(B, L, H)).astype(np.float32)

  def loss(v, q, k, method):
    return (ConcatDense(H, order, method=method).apply(v, q, k) * w).sum()

  ref = jax.grad(loss, argnums=(0, 1, 2))(v, q, k, 'reference')
  for method in METHODS[1:-1]:
    got = jax.grad(loss, argnums=(0, 1, 2))(v, q, k, method)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3, err_msg=method)


@pytest.mark.parametrize('order', ORDERS, ids=lambda o: '+'.join(o))
def test_shared_history_path_matches_tiling(order):
  """Keys with batch 1 (one user) and N queries (candidates) == the tiled concatenation."""
  q, k = _qk(seed=4, kb=1)
  v = _params(order)
  ref = ConcatDense(H, order, reference=True).apply(v, q, np.repeat(k, B, 0))
  out = ConcatDense(H, order).apply(v, q, k)
  assert out.shape == (B, L, H)
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_parameters_do_not_depend_on_the_method():
  q, k = _qk()
  shapes = {m: jax.tree.map(jnp.shape, jax.eval_shape(
      lambda m=m: ConcatDense(H, PARTS, method=m).init(jax.random.key(0), q, k)))
            for m in METHODS}
  assert all(s == shapes['reference'] for s in shapes.values())
  with pytest.raises(ValueError, match='unknown ConcatDense method'):
    ConcatDense(H, method='fast').init(jax.random.key(0), q, k)


def _din_setup(activation, length=7, rows=16, embed=4):
  spec = DataSpec(num_users=50, num_items=40, num_cates=6, max_len=length)
  c = default.get_config()
  c.model.embed_dim, c.model.hidden, c.model.attention.hidden = embed, (8, 4), (6, 3)
  c.model.activation = activation
  model = models.build_model(c.model, spec)
  r = np.random.default_rng(0)

  def batch(seed):
    r = np.random.default_rng(seed)
    lens = r.integers(0, length + 1, rows)
    mask = np.arange(length)[None] >= (length - lens)[:, None]
    return dict(user_id=r.integers(1, 50, rows).astype(np.int32),
                target_item=r.integers(1, 40, rows).astype(np.int32),
                target_cate=r.integers(1, 6, rows).astype(np.int32),
                hist_items=(r.integers(1, 40, (rows, length)) * mask).astype(np.int32),
                hist_cates=(r.integers(1, 6, (rows, length)) * mask).astype(np.int32),
                hist_mask=mask, label=r.integers(0, 2, rows).astype(np.float32))
  v = model.init(jax.random.key(0), batch(0), train=False)
  v = {**v, 'params': jax.tree.map(lambda x: x + 0.3 * r.normal(size=x.shape).astype(x.dtype),
                                   v['params'])}
  return c, spec, model, v, batch


def test_din_train_step_same_as_reference_path(monkeypatch):
  """The whole DIN train step (loss, gradients, Dice statistics) with the optimised first
  layer equals the one with the materialised concatenation."""
  c, spec, model, v, batch = _din_setup('dice')
  b = batch(1)
  tx = make_optimizer(c.optim, 10)
  step = functools.partial(steps.train_step, tasks=spec.tasks)
  fast = jax.jit(step)(TrainState.create(model.apply, v, tx), b, jax.random.key(0))
  monkeypatch.setattr(att, 'ConcatDense', functools.partial(ConcatDense, method='reference'))
  ref_model = models.build_model(c.model, spec)
  ref = jax.jit(step)(TrainState.create(ref_model.apply, v, tx), b, jax.random.key(0))
  np.testing.assert_allclose(fast[1]['loss'], ref[1]['loss'], rtol=1e-5)
  np.testing.assert_allclose(fast[1]['grad_norm'], ref[1]['grad_norm'], rtol=1e-4)
  for a, r in zip(jax.tree.leaves((fast[0].params, fast[0].batch_stats)),
                  jax.tree.leaves((ref[0].params, ref[0].batch_stats))):
    np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5)


def test_din_train_step_compiles_once():
  """Donated state + fixed shapes: one compilation for many steps and different batches."""
  c, spec, model, v, batch = _din_setup('dice')
  state = TrainState.create(model.apply, v, make_optimizer(c.optim, 10))
  f = jax.jit(functools.partial(steps.train_step, tasks=spec.tasks), donate_argnums=(0,))
  for i in range(4):
    state, m = f(state, batch(i), jax.random.key(0))
  assert np.isfinite(float(m['loss']))
  assert f._cache_size() == 1  # pylint: disable=protected-access
