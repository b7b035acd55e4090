"""Shared fixtures: the tiny synthetic config and a small in-memory dataset."""
from __future__ import annotations

import os
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# JAX's persistent compilation cache (what the studies use: experiments/sweep.py), shared by
# the xdist workers and the subprocesses tests start (set before JAX is imported): most tests
# compile the same tiny programs again and again. Keyed by the program, JAX version and XLA
# flags, so a hit is the same executable. tests/test_train.py: 180 s -> 80 s from a cold cache.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), f'seqrec_jax_test_xla_{os.getuid()}'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')

# Most of the suite's CPU time is XLA compiling tiny programs, not running them. LLVM at -O0
# (XLA's HLO passes and fusion decisions unchanged; a 20-step run's metrics agree with -O2 to
# ~1e-9, float32 rounding) compiles ~30-40% faster, and even the suite's longer runs are
# compile-bound: test_din.py 66 -> 39 CPU s, test_train.py 127 -> 101 (cold cache). Set here
# so subprocesses inherit it; a value in XLA_FLAGS wins (XLA_FLAGS=
# --xla_backend_optimization_level=2 runs the suite at the users' -O2).
if 'xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                             + ' --xla_backend_optimization_level=0').strip()

# The entry points' CPU runtime defaults (seqrec_jax/xla_cpu.py), applied explicitly as
# seqrec_jax.main does, so the tests run the configuration users run (but for -O0 above).
from seqrec_jax import xla_cpu  # noqa: E402  pylint: disable=g-import-not-at-top

xla_cpu.apply_defaults()


@pytest.fixture
def tiny_config():
  from seqrec_jax.configs import load_config
  c = load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py'))
  # Packed histories (on by default on CPU) with the platform's 32 capacity buckets give
  # nearly every batch its own shape: a train step and an eval step compiled per batch. 2
  # buckets: at most 2 shapes per batch size, same packed code path.
  c.data.pack_buckets = 2
  return c


@pytest.fixture(scope='session')
def tiny_dataset():
  from seqrec_jax.configs import load_config
  from seqrec_jax.data import load_dataset
  cfg = load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py'))
  return load_dataset(cfg.data)
