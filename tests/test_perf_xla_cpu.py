"""CPU runtime defaults applied on `import seqrec_jax` (seqrec_jax/xla_cpu.py). Each case runs
in a fresh interpreter: XLA reads XLA_FLAGS once, when its backend starts."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = '--xla_cpu_experimental_ynn_fusion_type'
PROBE = """
import os, jax, jax.numpy as jnp
import seqrec_jax
f = jax.jit(lambda a, b: jnp.tanh(a @ b).sum(0))
hlo = f.lower(jnp.ones((64, 32)), jnp.ones((32, 16))).compile().as_text()
print(os.environ.get('XLA_FLAGS', ''), '|', 'ynn_fusion' in hlo)
"""
tested = importlib.metadata.version('jaxlib').startswith(('0.10.',))


def _probe(**env):
  e = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'SEQREC_JAX_XLA_DEFAULTS')}
  e.update(env, PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, '-c', PROBE], env=e, capture_output=True, text=True,
                       timeout=120, check=True).stdout.strip().splitlines()[-1]
  flags, ynn = out.split('|')
  return flags.strip(), ynn.strip() == 'True'


@pytest.mark.skipif(not tested, reason='flag only set for tested jaxlib versions')
def test_import_sets_flag_before_the_backend_starts():
  flags, ynn = _probe(XLA_FLAGS='--xla_force_host_platform_device_count=1')
  assert f'{FLAG}=' in flags and '--xla_force_host_platform_device_count=1' in flags
  assert not ynn


@pytest.mark.skipif(not tested, reason='flag only set for tested jaxlib versions')
def test_user_value_wins_and_defaults_can_be_turned_off():
  flags, _ = _probe(XLA_FLAGS=f'{FLAG}=dot')
  assert flags == f'{FLAG}=dot'
  flags, _ = _probe(SEQREC_JAX_XLA_DEFAULTS='0')
  assert FLAG not in flags


def test_tune_malloc_on_glibc(monkeypatch):
  from seqrec_jax import xla_cpu
  monkeypatch.delenv('SEQREC_JAX_XLA_DEFAULTS', raising=False)
  if not sys.platform.startswith('linux'):
    pytest.skip('glibc only')
  assert xla_cpu.tune_malloc() in (True, False)       # never raises
  monkeypatch.setenv('SEQREC_JAX_XLA_DEFAULTS', '0')
  assert xla_cpu.tune_malloc() is False
