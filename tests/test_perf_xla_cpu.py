"""CPU runtime defaults (seqrec_jax/xla_cpu.py): applied by the entry points, never by
`import seqrec_jax`, and only when JAX runs on CPU. Each case runs in a fresh interpreter: XLA
reads XLA_FLAGS once, when its backend starts."""
from __future__ import annotations

import glob
import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = '--xla_cpu_experimental_ynn_fusion_type'
HLO_PROBE = """
import os, jax, jax.numpy as jnp
{setup}
f = jax.jit(lambda a, b: jnp.tanh(a @ b).sum(0))
hlo = f.lower(jnp.ones((64, 32)), jnp.ones((32, 16))).compile().as_text()
print(os.environ.get('XLA_FLAGS', ''), '|', 'ynn_fusion' in hlo)
"""
tested = importlib.metadata.version('jaxlib').startswith(('0.10.',))


def _run(code, **env):
  e = {k: v for k, v in os.environ.items()
       if k not in ('XLA_FLAGS', 'SEQREC_JAX_XLA_DEFAULTS', 'JAX_PLATFORMS')}
  e.update(env, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, '-c', code], env=e, capture_output=True, text=True,
                        timeout=180, check=True).stdout.strip().splitlines()[-1]


def _probe(setup, **env):
  flags, ynn = _run(HLO_PROBE.format(setup=setup), **env).split('|')
  return flags.strip(), ynn.strip() == 'True'


def test_importing_the_package_changes_no_environment_variable_and_calls_no_mallopt():
  code = """
import ctypes, json, os, sys
calls = []
real_cdll = ctypes.CDLL
ctypes.CDLL = lambda name, *a, **k: calls.append(name) or real_cdll(name, *a, **k)
# Third-party imports first: jax sets TF_CPP_MIN_LOG_LEVEL, TPU_SKIP_MDS_QUERY itself.
import jax, flax, optax, orbax.checkpoint, tensorflow_datasets
before = dict(os.environ)
import seqrec_jax, seqrec_jax.xla_cpu, seqrec_jax.main, seqrec_jax.train, seqrec_jax.serving
import seqrec_jax.models, seqrec_jax.data, experiments.demo
after = dict(os.environ)
changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
print(json.dumps({'changed': changed, 'libc': [c for c in calls if 'libc' in str(c)]}))
"""
  out = json.loads(_run(code, XLA_FLAGS='--xla_force_host_platform_device_count=1'))
  assert out == {'changed': [], 'libc': []}


@pytest.mark.skipif(not tested, reason='flag only set for tested jaxlib versions')
def test_import_alone_keeps_xla_defaults_and_apply_defaults_sets_the_flag():
  flags, ynn = _probe('import seqrec_jax', XLA_FLAGS='--xla_force_host_platform_device_count=1')
  assert flags == '--xla_force_host_platform_device_count=1' and ynn   # XLA's own default
  flags, ynn = _probe('from seqrec_jax import xla_cpu; xla_cpu.apply_defaults()',
                      XLA_FLAGS='--xla_force_host_platform_device_count=1')
  assert f'{FLAG}=' in flags and '--xla_force_host_platform_device_count=1' in flags
  assert not ynn                                                       # the flag took effect


@pytest.mark.skipif(not tested, reason='flag only set for tested jaxlib versions')
def test_user_value_wins_and_defaults_can_be_turned_off():
  apply = 'from seqrec_jax import xla_cpu; xla_cpu.apply_defaults()'
  flags, _ = _probe(apply, XLA_FLAGS=f'{FLAG}=dot')
  assert flags == f'{FLAG}=dot'
  flags, _ = _probe(apply, SEQREC_JAX_XLA_DEFAULTS='0')
  assert FLAG not in flags


def test_not_applied_when_jax_runs_on_an_accelerator():
  code = """
import json, os
from seqrec_jax import xla_cpu
before = dict(os.environ)
done = xla_cpu.apply_defaults()
print(json.dumps({'cpu': xla_cpu.cpu_platform(), 'done': done,
                  'same_env': before == dict(os.environ)}))
"""
  for platforms in ('cuda', 'tpu', 'cuda,cpu'):
    out = json.loads(_run(code, JAX_PLATFORMS=platforms))
    assert out == {'cpu': False, 'done': {'flags': [], 'malloc': False}, 'same_env': True}
  out = json.loads(_run(code, JAX_PLATFORMS='cpu'))
  assert out['cpu'] and out['done']['flags'] == ([f'{FLAG}='] if tested else [])


@pytest.mark.skipif(not tested, reason='flag only set for tested jaxlib versions')
def test_train_entry_point_applies_defaults_before_training():
  # seqrec_jax.main with train_and_evaluate replaced: the flags it sees before any JAX work.
  code = """
import os, sys
from seqrec_jax import train
train.train_and_evaluate = lambda config, workdir: print('XLA_FLAGS=' + os.environ['XLA_FLAGS'])
from seqrec_jax import main
sys.argv = ['main', '--config=seqrec_jax/configs/test.py', '--workdir=/nonexistent']
main.run()
"""
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       timeout=180, env={**{k: v for k, v in os.environ.items()
                                            if k != 'XLA_FLAGS'}, 'PYTHONPATH': ROOT})
  assert f'XLA_FLAGS={FLAG}=' in out.stdout, out.stderr[-2000:]


# Mains that run no JAX themselves: din_throughput launches benchmarks/worker.py processes;
# census_kdd_shape only writes raw files.
NO_JAX_MAINS = {'benchmarks/din_throughput.py', 'benchmarks/census_kdd_shape.py'}
MAINS = sorted(
    os.path.relpath(p, ROOT) for d in ('experiments', 'benchmarks')
    for p in glob.glob(os.path.join(ROOT, d, '*.py'))
    if 'def main(' in open(p).read() and os.path.relpath(p, ROOT) not in NO_JAX_MAINS)


def test_other_entry_points_apply_defaults():
  assert len(MAINS) >= 9
  missing = [m for m in MAINS
             if 'xla_cpu.apply_defaults()' not in open(os.path.join(ROOT, m)).read()]
  assert not missing, f'entry points that run JAX without the CPU defaults: {missing}'


def test_tune_malloc_on_glibc(monkeypatch):
  from seqrec_jax import xla_cpu
  monkeypatch.delenv('SEQREC_JAX_XLA_DEFAULTS', raising=False)
  if not sys.platform.startswith('linux'):
    pytest.skip('glibc only')
  assert xla_cpu.tune_malloc() in (True, False)       # never raises
  monkeypatch.setenv('SEQREC_JAX_XLA_DEFAULTS', '0')
  assert xla_cpu.tune_malloc() is False
