"""Device-resident train splits (data/device_split.py): the same batches as the host pipeline,
for single runs and [S, B] groups, and the same training result."""
import os

import jax
import numpy as np
import pytest

from seqrec_jax import parallel, train
from seqrec_jax.data import device_split, store
from seqrec_jax.data.pipeline import ArraySplit, train_batches
from test_data_store import random_sequence_rows  # tests/ is on sys.path (rootdir-less test files)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sequence_split(n=300):
  rows, beh, spec = random_sequence_rows(n, users=25, L=6)
  return store.ColumnSplit(rows, beh, spec.max_len)


def _assert_same(host, dev):
  assert set(host) == set(dev)
  for k, v in host.items():
    d = np.asarray(dev[k])
    assert d.dtype == v.dtype, k
    np.testing.assert_array_equal(d, v, err_msg=k)


@pytest.mark.parametrize('make', [_sequence_split, lambda: ArraySplit({
    'user_id': np.zeros(130, np.int32), 'sparse': np.arange(390, dtype=np.int32).reshape(130, 3),
    'dense': np.linspace(0, 1, 260, dtype=np.float32).reshape(130, 2),
    'label': (np.arange(130) % 2).astype(np.float32)})])
def test_device_batches_equal_host_batches_across_epochs_and_from_any_start(make):
  split = make()
  mesh = parallel.Partitioner(_parallel_cfg()).mesh
  dev = device_split.DeviceSplit(split, parallel.replicated(mesh))
  host = list(train_batches(split, 32, 7, 0, 25, prefetch=0))   # several epochs
  got = list(dev.batches(32, 7, 0, 25, parallel.data_sharding(mesh)))
  for h, d in zip(host, got):
    _assert_same(h, d)
  for h, d in zip(host[11:], dev.batches(32, 7, 11, 25)):   # a resume mid-epoch
    _assert_same(h, d)


def test_group_batches_equal_the_host_group_pipeline():
  split = _sequence_split()
  dev = device_split.DeviceSplit(split, None)
  seeds = [0, 3, 5]
  host = list(train_batches(split, 32, seeds, 0, 20, prefetch=0))
  for h, d in zip(host, dev.batches(32, seeds, 0, 20)):
    _assert_same(h, d)
    assert np.asarray(d['hist_items']).shape == (3, 32, 6)


def _parallel_cfg():
  from seqrec_jax.configs import load_config
  return load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py')).parallel


def test_modes_and_thresholds():
  from seqrec_jax.configs import load_config
  c = load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py')).data
  split = _sequence_split()
  c.device_resident = 'auto'
  assert not device_split.wanted(c, split, 1)          # CPU: the host pipeline
  c.device_resident = 'always'
  assert device_split.wanted(c, split, 1)
  with pytest.raises(ValueError, match='one process'):
    device_split.wanted(c, split, 2)
  c.device_resident = 'never'
  assert not device_split.wanted(c, split, 1)
  assert device_split.stored_bytes(split) == sum(
      v.nbytes for v in list(split.columns.values()) + list(split.behaviours.values()))


@pytest.mark.parametrize('group', [False, True])
def test_training_from_a_device_resident_split_equals_host_batches(tiny_config, tmp_path, group):
  tiny_config.train.num_steps = 6
  # One eval and one checkpoint per run; `base` (its history pooling reads the same device
  # columns) compiles in half DIN's time: the batches, not the model, are under test.
  tiny_config.train.eval_every = tiny_config.train.checkpoint_every = 6
  tiny_config.model.name = 'base'
  tiny_config.data.pack_history = False
  if group:
    tiny_config.train.run_seeds = (0, 1)
  out = {}
  for mode in ('never', 'always'):
    tiny_config.data.device_resident = mode
    out[mode] = train.train_and_evaluate(tiny_config, str(tmp_path / mode))
  runs = out['never'].get('runs', [out['never']])
  runs_dev = out['always'].get('runs', [out['always']])
  for a, b in zip(runs, runs_dev):
    for k in ('eval/valid/auc', 'eval/test/auc', 'eval/test/logloss'):
      assert a[k] == b[k], k
  assert jax.devices()[0].platform == 'cpu'
