"""Multi-task models: shapes, gates, expert gradients, PLE(1 level) == CGC, expert dropout,
gate diagnostics through train_step and train_and_evaluate, and (slow) learning per model."""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax import losses, models, steps
from seqrec_jax.configs import load_config
from seqrec_jax.data import load_dataset, mmoe_synthetic
from seqrec_jax.data.features import Task
from seqrec_jax.layers import experts as E
from seqrec_jax.models import multitask
from seqrec_jax.state import TrainState, make_optimizer

ARCHS = multitask.ARCHS
MOE_ARCHS = ('omoe', 'mmoe', 'ple')
SMALL = {'model.experts': 3, 'model.expert_hidden': (8,), 'model.bottom_hidden': (12,),
         'model.tower_hidden': (4,), 'model.shared_experts': 2, 'model.specific_experts': 1,
         'model.ple_levels': 2, 'model.activation': 'relu'}
SYN = {'data.mmoe_synthetic.dim': 10, 'data.mmoe_synthetic.num_train': 2048,
       'data.mmoe_synthetic.num_valid': 256, 'data.mmoe_synthetic.num_test': 512,
       'data.mmoe_synthetic.num_sin': 3, 'data.mmoe_synthetic.correlation': 0.5}


def _cfg(name, **extra):
  return load_config('seqrec_jax/configs/multitask.py:mmoe_synthetic',
                     {**SMALL, **SYN, 'model.name': name, **extra})


@functools.lru_cache(maxsize=None)
def _syn():
  ds = load_dataset(_cfg('mmoe').data)
  return ds


def _batch(n=16):
  return {k: jnp.asarray(v) for k, v in _syn().splits['train'].__getitems__(np.arange(n)).items()}


def _init(model, batch):
  return model.init({'params': jax.random.key(0), 'dropout': jax.random.key(1)}, batch,
                    train=False)


@pytest.mark.parametrize('arch', ARCHS)
def test_shapes_two_tasks_and_one_task(arch):
  ds, batch = _syn(), _batch()
  model = models.build_model(_cfg(arch).model, ds.spec)
  v = _init(model, batch)
  out = model.apply(v, batch, train=False)
  assert out.shape == (16, 2) and np.isfinite(out).all()
  one = dataclasses.replace(ds.spec, tasks=(Task('y1', 'regression'),))
  m1 = models.build_model(_cfg(arch).model, one)
  b1 = {k: v for k, v in batch.items() if k != 'labels'}
  assert m1.apply(_init(m1, b1), b1, train=False).shape == (16,)


@pytest.mark.parametrize('arch', ('mmoe', 'ple'))
def test_din_input_block_on_sequence_data(arch):
  """DIN attention input block + multi-task model on a 2-task sequence batch."""
  cfg = load_config('seqrec_jax/configs/test.py', {**SMALL, 'model.name': arch,
                                                    'model.input': 'din'})
  ds = load_dataset(cfg.data)
  spec = dataclasses.replace(ds.spec, tasks=(Task('click'), Task('like')))
  b = ds.splits['train'].__getitems__(np.arange(8))
  b['labels'] = np.stack([b.pop('label'), np.zeros(8, np.float32)], 1)
  model = models.build_model(cfg.model, spec)
  v = _init(model, b)
  paths = ['/'.join(str(getattr(k, 'key', k)) for k in p)
           for p, _ in jax.tree_util.tree_flatten_with_path(v['params'])[0]]
  assert any('pooling' in p for p in paths), paths      # the attention unit has parameters
  out, _ = model.apply(v, b, train=True, mutable=['batch_stats'],
                       rngs={'dropout': jax.random.key(0)})
  assert out.shape == (8, 2) and np.isfinite(out).all()
  # The history matters: changing a real behaviour changes the prediction.
  b2 = dict(b, hist_items=np.where(b['hist_mask'], 1, 0).astype(np.int32))
  assert not np.allclose(model.apply(v, b, train=False), model.apply(v, b2, train=False))


def test_gates_sum_to_one_with_and_without_expert_dropout():
  x = jax.random.normal(jax.random.key(0), (64, 5))
  gate = E.Gate(6, expert_dropout=0.5)
  v = gate.init({'params': jax.random.key(1)}, x, train=False)
  used, learned = gate.apply(v, x, train=False)
  np.testing.assert_allclose(used.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(used, learned)
  used, learned = gate.apply(v, x, train=True, rngs={'dropout': jax.random.key(2)})
  used, learned = np.asarray(used), np.asarray(learned)
  np.testing.assert_allclose(used.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(learned.sum(-1), 1.0, rtol=1e-5)
  dropped = used == 0
  assert 0.3 < dropped.mean() < 0.7          # about half the experts dropped per example
  assert (~dropped).any(-1).all()            # never every expert
  # Kept experts keep their relative weights (renormalised learned gate).
  row = np.flatnonzero((~dropped).sum(-1) >= 2)[0]
  keep = ~dropped[row]
  np.testing.assert_allclose(used[row, keep], learned[row, keep] / learned[row, keep].sum(),
                             rtol=1e-5)


def test_gate_without_bias_is_softmax_of_wx():
  """model.gate_bias=False is the paper's eq. 8: softmax(W x), no bias, uniform at x = 0."""
  x = jax.random.normal(jax.random.key(0), (8, 5))
  gate = E.Gate(4, use_bias=False)
  v = gate.init({'params': jax.random.key(1)}, x, train=False)
  assert set(v['params']['dense']) == {'kernel'}
  used, _ = gate.apply(v, x, train=False)
  np.testing.assert_allclose(used, jax.nn.softmax(x @ v['params']['dense']['kernel']), rtol=1e-6)
  zero, _ = gate.apply(v, jnp.zeros((2, 5)), train=False)
  np.testing.assert_allclose(zero, 0.25, rtol=1e-6)
  # With a bias (the default), a non-zero bias moves the gate at x = 0.
  biased = E.Gate(4)
  vb = biased.init({'params': jax.random.key(1)}, x, train=False)
  vb = jax.tree.map(lambda a: a, vb)
  vb['params']['dense']['bias'] = jnp.array([1.0, 0.0, 0.0, 0.0])
  assert not np.allclose(biased.apply(vb, jnp.zeros((2, 5)), train=False)[0], 0.25)


@pytest.mark.parametrize('arch', MOE_ARCHS)
def test_gate_bias_config_drops_every_gate_bias(arch):
  ds, batch = _syn(), _batch()

  def gate_params(flag):
    model = models.build_model(_cfg(arch, **{'model.gate_bias': flag}).model, ds.spec)
    flat = jax.tree_util.tree_flatten_with_path(_init(model, batch)['params'])[0]
    names = ['/'.join(str(getattr(k, 'key', k)) for k in path) for path, _ in flat]
    return [n for n in names if '/gate_' in n], model.apply(_init(model, batch), batch)

  with_bias, out_b = gate_params(True)
  without, out = gate_params(False)
  assert any(n.endswith('bias') for n in with_bias)
  assert without and not any(n.endswith('bias') for n in without)
  assert sorted(without) == sorted(n for n in with_bias if not n.endswith('bias'))
  assert out.shape == out_b.shape == (16, 2) and np.isfinite(out).all()


@pytest.mark.parametrize('arch', MOE_ARCHS)
def test_gradients_reach_every_expert(arch):
  ds, batch = _syn(), _batch(32)
  model = models.build_model(_cfg(arch).model, ds.spec)
  v = _init(model, batch)

  def loss(params):
    out = model.apply({'params': params}, batch, train=False)
    return losses.task_losses(out, batch['labels'], ds.spec.tasks).sum()

  grads = jax.grad(loss)(v['params'])
  banks = 0
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    keys = [getattr(p, 'key', '') for p in path]
    if 'mlp' in keys and keys[-1] == 'kernel' and any('experts' in k for k in keys):
      banks += 1
      per_expert = np.abs(np.asarray(g)).reshape(g.shape[0], -1).sum(-1)
      assert (per_expert > 0).all(), f'{"/".join(keys)}: expert gradients {per_expert}'
  # omoe/mmoe: one bank; ple: 2 levels x (shared + 2 task banks).
  assert banks == {'omoe': 1, 'mmoe': 1, 'ple': 6}[arch]
  gate_grads = [g for p, g in jax.tree_util.tree_flatten_with_path(grads)[0]
                if any('gate' in getattr(k, 'key', '') for k in p)]
  assert gate_grads and all(np.abs(np.asarray(g)).sum() > 0 for g in gate_grads)


def test_ple_with_one_level_equals_cgc():
  x = jax.random.normal(jax.random.key(0), (16, 7))
  kw = dict(num_tasks=2, shared=2, specific=1, expert=E.ExpertMLP((5,), 'relu'))
  ple = E.PLE(levels=1, **kw)
  v = ple.init({'params': jax.random.key(1)}, x, train=False)
  assert set(v['params']) == {'level_0'} and 'gate_shared' not in v['params']['level_0']
  outs, gates = ple.apply(v, x, train=False)
  c_outs, c_shared, c_gates = E.CGC(**kw).apply({'params': v['params']['level_0']}, [x, x], x,
                                                train=False)
  assert c_shared is None and len(c_gates) == 2
  for a, b in zip(outs, c_outs):
    np.testing.assert_array_equal(a, b)
  # Hand-computed CGC: task k mixes its own expert then the shared ones with its gate.
  p = v['params']['level_0']
  expert = lambda bank, i: jax.nn.relu(x @ p[bank]['mlp']['dense_0']['kernel'][i]
                                        + p[bank]['mlp']['dense_0']['bias'][i])
  for k in range(2):
    g = jax.nn.softmax(x @ p[f'gate_{k}']['dense']['kernel'] + p[f'gate_{k}']['dense']['bias'])
    e = [expert(f'task_{k}_experts', 0), expert('shared_experts', 0), expert('shared_experts', 1)]
    want = sum(g[:, i:i + 1] * e[i] for i in range(3))
    np.testing.assert_allclose(outs[k], want, rtol=1e-5, atol=1e-6)
  # Two levels: the second level reads the first level's per-task outputs.
  v2 = jax.eval_shape(lambda x: E.PLE(levels=2, **kw).init({'params': jax.random.key(1)}, x,
                                                             train=False), x)
  assert set(v2['params']) == {'level_0', 'level_1'}
  assert 'gate_shared' in v2['params']['level_0'] and 'gate_shared' not in v2['params']['level_1']


def test_expert_dropout_only_changes_training():
  ds, batch = _syn(), _batch()
  m0 = models.build_model(_cfg('mmoe').model, ds.spec)
  m1 = models.build_model(_cfg('mmoe', **{'model.expert_dropout': 0.5}).model, ds.spec)
  v = _init(m0, batch)
  np.testing.assert_array_equal(m0.apply(v, batch, train=False), m1.apply(v, batch, train=False))
  r = {'dropout': jax.random.key(3)}
  t0 = m0.apply(v, batch, train=True, rngs=r)
  t1 = m1.apply(v, batch, train=True, rngs=r)
  assert not np.allclose(t0, t1)
  with pytest.raises(ValueError, match='expert_dropout'):
    models.build_model(_cfg('mmoe', **{'model.expert_dropout': 1.0}).model, ds.spec)


@pytest.mark.parametrize('arch', MOE_ARCHS)
def test_train_step_reports_gate_diagnostics(arch):
  ds, batch = _syn(), _batch(32)
  cfg = _cfg(arch)
  model = models.build_model(cfg.model, ds.spec)
  state = TrainState.create(model.apply, _init(model, batch), make_optimizer(cfg.optim, 10))
  _, m = jax.jit(functools.partial(steps.train_step, tasks=ds.spec.tasks))(
      state, batch, jax.random.key(0))
  names = {'omoe': ['all'], 'mmoe': ['y1', 'y2'], 'ple': ['y1', 'y2', 'l0/y1', 'l0/shared']}
  for name in names[arch]:
    n = cfg.model.experts if arch != 'ple' else (
        3 if name in ('y1', 'y2', 'l0/y1') else 4)   # specific 1 + shared 2; shared gate: all
    util = np.array([float(m[f'gates/{name}/util/{i}']) for i in range(n)])
    assert f'gates/{name}/util/{n}' not in m
    np.testing.assert_allclose(util.sum(), 1.0, rtol=1e-5)
    assert float(m[f'gates/{name}/max_util']) == pytest.approx(util.max(), rel=1e-6)
    assert 0.0 < float(m[f'gates/{name}/entropy']) <= math.log(n) + 1e-6
  assert all(np.ndim(v) == 0 for v in m.values())


def test_diagnostics_metrics_averages_and_expands():
  out = steps.diagnostics_metrics({'gates/a/util': (jnp.array([0.2, 0.8]), jnp.array([0.4, 0.6])),
                                   'sub': {'x': (jnp.array(2.0),)}})
  assert set(out) == {'gates/a/util/0', 'gates/a/util/1', 'sub/x'}
  assert float(out['gates/a/util/0']) == pytest.approx(0.3)
  assert float(out['sub/x']) == 2.0
  assert steps.diagnostics_metrics({}) == {}


def test_train_and_evaluate_logs_gates_and_multitask_summary(tmp_path):
  from seqrec_jax.train import train_and_evaluate
  cfg = _cfg('mmoe', **{'train.num_steps': 6, 'train.eval_every': 3, 'train.log_every': 3})
  summary = train_and_evaluate(cfg, str(tmp_path))
  for k in ('eval/test/y1/mse', 'eval/test/y2/mse', 'eval/test/mean/mse', 'eval/valid/mean/mse'):
    assert np.isfinite(summary[k]), k
  lines = [json.loads(l) for l in open(os.path.join(tmp_path, 'metrics.jsonl'))]
  train = [l for l in lines if 'train/loss' in l]
  assert train and 'train/gates/y1/entropy' in train[-1] and 'train/gates/y2/util/2' in train[-1]
  assert 'summary' in lines[-1] and lines[-1]['summary']['eval/test/mean/mse'] == pytest.approx(
      summary['eval/test/mean/mse'])


def test_mmoe_synthetic_data_contract():
  info = _syn().info
  assert info['cosine(w1,w2)'] == pytest.approx(0.5, abs=1e-9)
  w = mmoe_synthetic.task_weights(50, 0.3, 2.0, np.random.default_rng(0))
  np.testing.assert_allclose(np.linalg.norm(w, axis=1), 2.0, rtol=1e-9)
  assert w[0] @ w[1] / 4.0 == pytest.approx(0.3)
  same = mmoe_synthetic.generate(**dict(mmoe_synthetic.DEFAULTS, correlation=1.0, num_train=500,
                                        num_valid=10, num_test=10))
  y = same.splits['train'].arrays['labels']
  noise = mmoe_synthetic.DEFAULTS['noise_std']         # identical tasks up to the noise
  assert np.abs(y[:, 0] - y[:, 1]).max() < 6 * np.sqrt(2) * noise
  with pytest.raises(ValueError, match='correlation'):
    mmoe_synthetic.task_weights(5, 1.5, 1.0, np.random.default_rng(0))


def _fit(arch, num_steps=250, **extra):
  """Trains on the small mmoe_synthetic set with a jitted loop; returns (test MSE, label var)."""
  ds = _syn()
  cfg = _cfg(arch, **{'model.expert_hidden': (16,), 'model.bottom_hidden': (32,),
                      'model.tower_hidden': (8,), **extra})
  model = models.build_model(cfg.model, ds.spec)
  state = TrainState.create(model.apply, _init(model, _batch()),
                            make_optimizer(cfg.optim, num_steps))
  step = jax.jit(functools.partial(steps.train_step, tasks=ds.spec.tasks), donate_argnums=0)
  tr = ds.splits['train'].arrays
  rng = np.random.default_rng(0)
  for _ in range(num_steps):
    idx = rng.integers(0, len(tr['labels']), 128)
    state, _ = step(state, {k: jnp.asarray(v[idx]) for k, v in tr.items()}, jax.random.key(0))
  te = ds.splits['test'].arrays
  pred = np.asarray(model.apply(state.variables, {k: jnp.asarray(v) for k, v in te.items()},
                                train=False))
  return float(((pred - te['labels']) ** 2).mean()), float(te['labels'].var(0).mean())


@pytest.mark.slow
@pytest.mark.parametrize('arch', ARCHS)
def test_learns_synthetic_regression(arch):
  mse, var = _fit(arch)
  assert mse < 0.15 * var, f'{arch}: test MSE {mse:.3f} vs label variance {var:.3f}'


@pytest.mark.slow
def test_expert_dropout_model_still_learns():
  mse, var = _fit('mmoe', **{'model.expert_dropout': 0.25})
  assert mse < 0.15 * var, f'test MSE {mse:.3f} vs label variance {var:.3f}'
