"""model.input_bn: BatchNorm of the MLP input (the released DIN code), models/blocks.Head."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax import losses, models
from seqrec_jax.models.blocks import SequenceInput


def _setup(cfg, ds, name='base'):
  cfg.model.name, cfg.model.activation = name, 'prelu'
  with cfg.unlocked():
    cfg.model.input_bn = True
  model = models.build_model(cfg.model, ds.spec)
  batch = {k: jnp.asarray(v) for k, v in ds.splits['train'].__getitems__(np.arange(16)).items()}
  v = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), batch)
  apply = jax.jit(model.apply, static_argnames=('train', 'mutable', 'capture_intermediates'))
  return model, batch, v, apply


def _is_input(mdl, method):
  return method == '__call__' and isinstance(mdl, SequenceInput)


def test_input_bn_train_and_eval_semantics(tiny_config, tiny_dataset):
  _, batch, v, apply = _setup(tiny_config, tiny_dataset)
  stats = v['batch_stats']['head']['input_bn']
  np.testing.assert_array_equal(stats['mean'], 0.0)
  np.testing.assert_array_equal(stats['var'], 1.0)
  out, new = apply(v, batch, train=True, mutable=('batch_stats', 'intermediates'),
                   capture_intermediates=_is_input)
  x = np.asarray(new['intermediates']['input']['__call__'][0], np.float64)    # [B, F]
  upd = new['batch_stats']['head']['input_bn']
  # Training: the batch's statistics, moving averages updated with momentum 0.99.
  np.testing.assert_allclose(upd['mean'], 0.01 * x.mean(0), rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(upd['var'], 0.99 + 0.01 * x.var(0), rtol=1e-5)
  # Evaluation with moving averages equal to that batch's statistics gives the training
  # output; with the initial (0, 1) it does not.
  same = {'params': v['params'], 'batch_stats': {'head': {'input_bn': {
      'mean': jnp.asarray(x.mean(0), jnp.float32), 'var': jnp.asarray(x.var(0), jnp.float32)}}}}
  np.testing.assert_allclose(apply(same, batch, train=False), out, rtol=1e-4, atol=1e-5)
  assert not np.allclose(apply(v, batch, train=False), out, atol=1e-4)
  # A row's training output depends on the other rows (batch statistics), its eval output not.
  other = dict(batch, target_item=batch['target_item'].at[1:].set(batch['target_item'][0]))
  train2 = apply(v, other, train=True, mutable=('batch_stats',))[0]
  assert abs(float(train2[0] - out[0])) > 1e-6
  np.testing.assert_allclose(apply(v, other, train=False)[0], apply(v, batch, train=False)[0],
                             rtol=1e-6)

  # Rows with weight 0 (padding; rows 12-15 here, with other ids) do not feed the statistics:
  # the real rows' outputs and the update equal those of the 12 real rows alone.
  real = {k: a[:12] for k, a in batch.items()}
  padded = dict(batch, weight=(jnp.arange(16) < 12).astype(jnp.float32),
                target_item=batch['target_item'].at[12:].set(1))
  out_r, st_r = apply(v, real, train=True, mutable=('batch_stats',))
  out_p, st_p = apply(v, padded, train=True, mutable=('batch_stats',))
  np.testing.assert_allclose(out_p[:12], out_r, rtol=1e-5, atol=1e-6)
  for k in ('mean', 'var'):
    np.testing.assert_allclose(st_p['batch_stats']['head']['input_bn'][k],
                               st_r['batch_stats']['head']['input_bn'][k], rtol=1e-5, atol=1e-7)
  unmasked = apply(v, dict(padded, weight=jnp.ones(16)), train=True, mutable=('batch_stats',))
  assert not np.allclose(unmasked[0][:12], out_r, atol=1e-5)     # the test can fail

  def loss(p):
    z = apply({'params': p, 'batch_stats': v['batch_stats']}, batch, train=True,
              mutable=('batch_stats',))[0]
    return losses.task_losses(z[:, None], losses.labels_of(batch), tiny_dataset.spec.tasks)[0]
  g = jax.grad(loss)(v['params'])
  bn = g['head']['input_bn']
  assert np.abs(bn['scale']).sum() > 0 and np.abs(bn['bias']).sum() > 0
  assert np.abs(g['input']['embed']['item']['embedding']).sum() > 0


def test_input_bn_only_where_a_head_exists(tiny_config, tiny_dataset):
  tiny_config.model.name = 'lr'
  with tiny_config.unlocked():
    tiny_config.model.input_bn = True
  with pytest.raises(ValueError, match='input_bn'):
    models.build_model(tiny_config.model, tiny_dataset.spec)
  tiny_config.model.name = 'deepfm'
  model = models.build_model(tiny_config.model, tiny_dataset.spec)
  batch = {k: jnp.asarray(v) for k, v in tiny_dataset.splits['train'].__getitems__(
      np.arange(4)).items()}
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), batch)
  assert 'input_bn' in shapes['batch_stats']['deep']
