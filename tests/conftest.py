"""Shared fixtures: the tiny synthetic config and a small in-memory dataset."""
from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# The entry points' CPU runtime defaults (seqrec_jax/xla_cpu.py), applied explicitly as
# seqrec_jax.main does, so the tests run the configuration users run.
from seqrec_jax import xla_cpu  # noqa: E402  pylint: disable=g-import-not-at-top

xla_cpu.apply_defaults()


@pytest.fixture
def tiny_config():
  from seqrec_jax.configs import load_config
  return load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py'))


@pytest.fixture(scope='session')
def tiny_dataset():
  from seqrec_jax.configs import load_config
  from seqrec_jax.data import load_dataset
  cfg = load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py'))
  return load_dataset(cfg.data)
