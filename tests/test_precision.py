"""config.model.compute_dtype (seqrec_jax/precision.py): bfloat16 compute stays close to
float32, parameters and optimiser state stay float32, float32 is the unchanged program."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax import models, precision, steps
from seqrec_jax.configs import default
from seqrec_jax.data.features import DataSpec
from seqrec_jax.state import TrainState, make_optimizer

B, L = 64, 12


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  lens = rng.integers(1, L + 1, B)
  mask = np.arange(L)[None, :] >= L - lens[:, None]
  return dict(
      user_id=rng.integers(1, 50, B).astype(np.int32),
      target_item=rng.integers(1, 40, B).astype(np.int32),
      target_cate=rng.integers(1, 7, B).astype(np.int32),
      hist_items=(rng.integers(1, 40, (B, L)) * mask).astype(np.int32),
      hist_cates=(rng.integers(1, 7, (B, L)) * mask).astype(np.int32),
      hist_mask=mask, label=rng.integers(0, 2, B).astype(np.float32))


def _model(activation='dice'):
  c = default.get_config()
  c.model.embed_dim = 8
  c.model.hidden = (16, 8)
  c.model.attention.hidden = (12, 6)
  c.model.activation = activation
  spec = DataSpec(num_users=50, num_items=40, num_cates=7, max_len=L)
  return models.build_model(c.model, spec), spec


def test_default_is_float32_and_returns_the_apply_itself():
  assert default.get_config().model.compute_dtype == 'float32'
  apply = _model()[0].apply
  assert precision.cast_apply(apply, 'float32') is apply


def test_unknown_dtype_names_the_key_and_choices():
  with pytest.raises(ValueError, match=r"compute_dtype='float16'.*bfloat16.*float32"):
    precision.cast_apply(lambda v: v, 'float16')


@pytest.mark.parametrize('activation', ['dice', 'prelu'])
def test_bfloat16_outputs_close_to_float32_and_float32_typed(activation):
  model, _ = _model(activation)
  batch = _batch()
  v = model.init(jax.random.key(0), batch, train=False)
  ref = model.apply(v, batch, train=False)
  out = precision.cast_apply(model.apply, 'bfloat16')(v, batch, train=False)
  assert out.dtype == jnp.float32
  # bfloat16 has 8 significand bits: relative error ~4e-3 per rounding.
  np.testing.assert_allclose(out, ref, rtol=0.05, atol=0.02 * float(jnp.abs(ref).max()))
  assert not np.array_equal(np.asarray(out), np.asarray(ref))   # it did compute in bfloat16


def test_train_steps_keep_float32_state_and_follow_the_float32_loss():
  model, spec = _model('dice')
  batches = [_batch(s) for s in range(3)]
  v = model.init(jax.random.key(0), batches[0], train=False)
  tx = make_optimizer(default.get_config().optim, 10)
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    st = TrainState.create(precision.cast_apply(model.apply, dtype), v, tx)
    step = jax.jit(functools.partial(steps.train_step, tasks=spec.tasks))
    ls = []
    for b in batches:
      st, m = step(st, b, jax.random.key(1))
      ls.append(float(m['loss']))
    leaves = jax.tree.leaves((st.params, st.opt_state, st.batch_stats))
    assert all(x.dtype in (jnp.float32, jnp.int32) for x in leaves), dtype
    assert np.isfinite(ls).all() and np.isfinite(float(m['grad_norm']))
    losses[dtype] = ls
  np.testing.assert_allclose(losses['bfloat16'], losses['float32'], rtol=0.02)
