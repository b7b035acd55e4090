"""dnn / dcn / dcnv2 models and config.model.backbone (models/dcn.py, models/builders.py).

Generic contracts (shapes, padding, gradients, learning on synthetic data) come from
tests/test_models_registry.py; here: the wiring of cross + deep, the default-off backbone switch,
an end-to-end run, and (slow) a field-interaction task that needs the cross network.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seqrec_jax import metrics, models, steps
from seqrec_jax.configs import load_config
from seqrec_jax.data import load_dataset
from seqrec_jax.data.features import DataSpec, FeatureSpec, Task
from seqrec_jax.state import TrainState


def _cfg(name, **overrides):
  return load_config('seqrec_jax/configs/test.py:' + name,
                     {f'model.{k}': v for k, v in overrides.items()})


def _seq_batch(cfg, n=8):
  ds = load_dataset(cfg.data)
  b = ds.splits['train'].__getitems__(np.arange(n))
  return ds.spec, {k: jnp.asarray(v) for k, v in b.items()}


def _init(cfg, spec, batch, seed=0):
  model = models.build_model(cfg.model, spec)
  return model, model.init(jax.random.key(seed), batch, train=False)


def _shapes(tree):
  return jax.tree.map(jnp.shape, tree)


def test_registered():
  assert {'dnn', 'dcn', 'dcnv2'} <= set(models.MODELS)


def test_backbone_default_keeps_din_and_base_unchanged():
  """backbone='mlp' (default) builds exactly the Head MLP: no 'backbone' params, and dnn with
  sum pooling is `base` (same parameters -> same outputs)."""
  cfg = _cfg('din')
  spec, batch = _seq_batch(cfg)
  _, v = _init(cfg, spec, batch)
  assert 'backbone' not in v['params'] and 'mlp' in v['params']['head']
  mb, vb = _init(_cfg('base'), spec, batch)
  md, vd = _init(_cfg('dnn'), spec, batch)
  assert _shapes(vb) == _shapes(vd)
  np.testing.assert_array_equal(mb.apply(vb, batch, train=False), md.apply(vd, batch, train=False))


def test_din_with_dcnv2_backbone():
  cfg = _cfg('din', backbone='dcnv2', cross_type='lowrank', cross_layers=2, cross_rank=0.25)
  spec, batch = _seq_batch(cfg)
  m, v = _init(cfg, spec, batch)
  p = v['params']
  assert 'mlp' not in p['head'] and 'dense_0' in p['pooling']        # DIN attention kept
  d = 4 * cfg.model.embed_dim                                          # target + pooled history
  assert _shapes(p['backbone']['cross']['layer_1']['v']) == {'kernel': (d, d // 4)}
  out, _ = m.apply(v, batch, train=True, mutable=['batch_stats'])
  assert out.shape == (8,) and np.isfinite(out).all()


@pytest.mark.parametrize('name,extra,logit_in', [
    ('dcn', {'structure': 'parallel'}, 16 + 8),                        # d + hidden[-1]
    ('dcnv2', {'structure': 'parallel', 'hidden': ()}, 16),            # cross only
    ('dcnv2', {'structure': 'stacked'}, 8),
    ('dcnv2', {'cross_type': 'mix', 'cross_experts': 3}, 8)])
def test_structure_sets_logit_width(name, extra, logit_in):
  cfg = _cfg(name, **extra)
  spec, batch = _seq_batch(cfg)
  _, v = _init(cfg, spec, batch)
  assert v['params']['head']['logit']['kernel'].shape == (logit_in, 1)


def test_tabular_input_width_and_attention_pooling_option():
  spec = DataSpec(num_users=10, num_items=0, num_cates=0, max_len=0,
                  sparse=(FeatureSpec('a', 5), FeatureSpec('b', 7)), dense_dim=3,
                  tasks=(Task('income'), Task('never_married')))
  batch = {'user_id': jnp.zeros(4, jnp.int32), 'sparse': jnp.ones((4, 2), jnp.int32),
           'dense': jnp.ones((4, 3))}
  cfg = _cfg('dcnv2', cross_type='full', cross_layers=1)
  m, v = _init(cfg, spec, batch)
  d = 2 * cfg.model.embed_dim + 3
  assert v['params']['backbone']['cross']['layer_0']['w']['kernel'].shape == (d, d)
  assert m.apply(v, batch, train=False).shape == (4, 2)                # one logit per task
  cfg = _cfg('dcn', pooling='attention')
  spec, batch = _seq_batch(cfg)
  _, v = _init(cfg, spec, batch)
  assert 'dense_0' in v['params']['pooling']


def test_bad_backbone_and_cross_type_name_the_key():
  spec, batch = _seq_batch(_cfg('din'))
  with pytest.raises(ValueError, match='config.model.backbone'):
    _init(_cfg('din', backbone='xdeep'), spec, batch)
  with pytest.raises(ValueError, match='config.model.cross_type'):
    _init(_cfg('dcnv2', cross_type='diag'), spec, batch)


def test_train_and_evaluate_end_to_end(tmp_path):
  from seqrec_jax.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  cfg = _cfg('dcnv2', cross_type='mix', cross_layers=2)
  cfg.data.pack_buckets = 2   # 2 packed shapes, not ~1 compiled step per batch (conftest)
  s = train_and_evaluate(cfg, str(tmp_path))
  assert s['steps'] == cfg.train.num_steps and s['params'] > 0
  assert 0.0 <= s['eval/test/auc'] <= 1.0 and np.isfinite(s['eval/test/logloss'])


def _xor_fields(n, seed):
  """Label = XOR of balanced binary properties of sparse fields a and b (+ 10% noise):
  each field alone carries no signal, the pair all of it."""
  rng = np.random.default_rng(seed)
  va, vb = 21, 21                                   # ids 1..20; half of them have bit 1
  bit_a = np.concatenate([[0], np.random.default_rng(99).permutation(np.arange(20) % 2)])
  bit_b = np.concatenate([[0], np.random.default_rng(98).permutation(np.arange(20) % 2)])
  a, b = rng.integers(1, va, n), rng.integers(1, vb, n)
  y = bit_a[a] ^ bit_b[b]
  y = np.where(rng.random(n) < 0.1, 1 - y, y).astype(np.float32)
  spec = DataSpec(num_users=2, num_items=0, num_cates=0, max_len=0,
                  sparse=(FeatureSpec('a', va), FeatureSpec('b', vb)))
  batch = {'user_id': np.zeros(n, np.int32), 'sparse': np.stack([a, b], 1).astype(np.int32),
           'label': y}
  return spec, batch


def _fit_auc(name, steps_=300, **overrides):
  spec, data = _xor_fields(4096, 0)
  _, test = _xor_fields(2048, 1)
  cfg = _cfg(name, hidden=(), activation='relu', **overrides)
  model = models.build_model(cfg.model, spec)
  v = model.init(jax.random.key(0), {k: x[:2] for k, x in data.items()}, train=False)
  state = TrainState.create(model.apply, v, optax.adam(0.02))
  step = jax.jit(functools.partial(steps.train_step, tasks=spec.tasks))
  rng = np.random.default_rng(0)
  for _ in range(steps_):
    idx = rng.integers(0, 4096, 256)
    state, _ = step(state, {k: x[idx] for k, x in data.items()}, jax.random.key(1))
  p = model.apply(state.variables, test, train=False)
  return metrics.auc(test['label'], np.asarray(p))


@pytest.mark.slow
def test_cross_network_learns_a_field_interaction():
  """Without a deep network, dnn is logistic regression on embeddings (AUC ~0.5 on XOR);
  one DCN-V2 cross layer multiplies the two fields' embeddings and solves it (oracle 0.9)."""
  lin = _fit_auc('dnn')
  v2 = _fit_auc('dcnv2', cross_type='full', cross_layers=1)
  assert lin < 0.6, lin
  assert v2 > 0.85, v2


def test_data_tasks_selects_a_task_subset():
  """config.data.tasks (data/tasks.py): a single selected task is served as `label` [B]."""
  from seqrec_jax.data import ArraySplit, Dataset  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data.tasks import select_tasks  # pylint: disable=g-import-not-at-top
  spec = DataSpec(1, 0, 0, 0, dense_dim=1, tasks=(Task('income'), Task('never_married')))
  arrays = {'user_id': np.zeros(3, np.int32), 'dense': np.ones((3, 1), np.float32),
            'labels': np.array([[1, 0], [0, 1], [1, 1]], np.float32)}
  ds = Dataset('t', spec, {'train': ArraySplit(arrays)})
  one = select_tasks(ds, ('never_married',))
  assert [t.name for t in one.spec.tasks] == ['never_married']
  b = one.splits['train'].__getitems__([0, 2])
  assert 'labels' not in b and b['label'].tolist() == [0, 1]
  assert one.splits['train'].all()['label'].tolist() == [0, 1, 1]
  two = select_tasks(ds, ('never_married', 'income'))
  assert two.splits['train'].__getitems__([0])['labels'].tolist() == [[0, 1]]
  assert select_tasks(ds, ()) is ds
  with pytest.raises(ValueError, match="unknown: \\['incme'\\]"):
    select_tasks(ds, ('incme',))
