"""Data parallel, sharded-embedding and pmap training equal 1-device training; config checks.

The multi-device run is a subprocess (tests/parallel_numerics.py) with 8 forced host devices:
XLA_FLAGS must be set before jax is imported, and this process has one device.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import ml_collections
import pytest

from seqrec_jax import distributed, parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-5   # float32 reduction-order noise is ~1e-7; dropping the Dice sync gives ~2e-3


def _fake_mesh(data, model=1):
  return types.SimpleNamespace(shape={'data': data, 'model': model})


def test_global_batch_not_divisible_is_error_with_numbers():
  with pytest.raises(ValueError, match=r'batch_size=30 .*not divisible by the 8 devices'):
    parallel.check_batch_size(30, _fake_mesh(8))
  with pytest.raises(ValueError, match=r'eval_batch_size=10 .*4 devices.*multiple of 4'):
    parallel.check_batch_size(10, _fake_mesh(4, 2), 'config.data.eval_batch_size')
  parallel.check_batch_size(32, _fake_mesh(8))


def test_mesh_and_strategy_config_errors():
  with pytest.raises(ValueError, match=r'data=2 x model=1 needs 2 devices, have 1'):
    parallel.make_mesh(2, 1)
  with pytest.raises(ValueError, match=r'cannot be split into model=2'):
    parallel.make_mesh(-1, 2)
  with pytest.raises(ValueError, match=r"strategy='shard_map'"):
    parallel.Partitioner(ml_collections.ConfigDict({'strategy': 'shard_map', 'data': -1,
                                                    'model': 1}))


def test_distributed_resolve_from_flags_env_and_clusters():
  r = distributed.resolve
  assert r('auto', env={}) is None                          # plain single process
  assert r('off', '1.2.3.4:1', 2, 0, env={}) is None
  assert r('auto', '127.0.0.1:9', 2, 1, env={}) == {
      'coordinator_address': '127.0.0.1:9', 'num_processes': 2, 'process_id': 1}
  env = {'JAX_COORDINATOR_ADDRESS': 'h:1', 'JAX_NUM_PROCESSES': '4', 'JAX_PROCESS_ID': '3'}
  assert r('auto', env=env) == {'coordinator_address': 'h:1', 'num_processes': 4,
                                'process_id': 3}
  slurm = {'SLURM_JOB_ID': '7', 'SLURM_NODELIST': 'n[1-2]', 'SLURM_NTASKS': '16',
           'SLURM_PROCID': '5', 'SLURM_LOCALID': '1'}
  assert distributed.cluster_detected(slurm) == 'slurm'
  assert r('auto', env=slurm) == {}                          # JAX auto-detects the values
  assert r('auto', env=dict(slurm, SLURM_NTASKS='1')) is None  # one task: no distributed
  assert distributed.cluster_detected({'TPU_WORKER_HOSTNAMES': 'w0,w1,w2,w3'}) == 'tpu'
  assert r('on', env={}) == {}
  with pytest.raises(ValueError, match=r'--process_id=2 must be in \[0, 2\)'):
    r('auto', 'h:1', 2, 2, env={})
  with pytest.raises(ValueError, match=r"JAX_NUM_PROCESSES='two'"):
    r('auto', env={'JAX_NUM_PROCESSES': 'two'})


@pytest.fixture(scope='module')
def numerics():
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT, XLA_FLAGS=(  # + conftest's
      os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip())
  out = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'parallel_numerics.py'),
                        '--steps=20'], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('layout', ['jit8', 'jit4x2', 'pmap8'])
def test_multi_device_training_equals_one_device(numerics, layout):
  """DIN with Dice, 1 and 20 steps: params, Dice batch stats, loss and grad norm."""
  r = numerics[layout]
  assert numerics['devices'] == 8 and numerics['reference'] == 'jit1'
  for key in ('params@1', 'params@20', 'batch_stats@1', 'batch_stats@20', 'loss',
              'grad_norm'):
    assert r[key] < TOL, (layout, key, r)
  assert numerics['param_scale'] > 0.1   # the comparison is on trained, non-trivial weights


def test_model_axis_really_shards_embedding_tables(numerics):
  # item table (120 rows) by rows over model=2; cate table (9 rows, width 4) by columns.
  assert numerics['jit4x2']['specs'] == ["P('model', None)", 'P()', "P(None, 'model')"]
  assert numerics['jit8']['specs'] == ['P()'] and numerics['pmap8']['specs'] == ['P()']


def test_scaling_benchmark_smoke(tmp_path):
  from benchmarks import scaling  # pylint: disable=g-import-not-at-top
  scaling.main(['--config=seqrec_jax/configs/test.py', '--device_counts=1',
                '--per_device_batch=8', '--steps=2', '--warmup=0', f'--out={tmp_path}',
                '--set=model.hidden=[8]', '--set=model.attention.hidden=[4]'])  # compiles faster
  rec = json.loads((tmp_path / 'scaling.json').read_text())
  (row,) = rec['rows']
  assert row['global_batch'] == 8 and row['examples_per_sec'] > 0 and row['efficiency'] == 1.0
  assert 'examples_per_sec' in (tmp_path / 'scaling.md').read_text()
