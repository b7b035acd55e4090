"""Reliability (issue 14): no checkpoint past a non-finite step, resume refuses a changed
config, one run per workdir, corrupt checkpoints fall back, config errors before any work."""
import os

import numpy as np
import pytest

from seqrec_jax import train
from seqrec_jax.data import register_dataset, synthetic
from seqrec_jax.data.features import DataSpec


@register_dataset('_zero_dense')
def _zero_dense(data_cfg):
  """Synthetic data plus one all-zero dense feature (the fault tests overwrite it)."""
  ds = synthetic.load(data_cfg.synthetic)
  ds.spec = DataSpec(**{**ds.spec.__dict__, 'dense_dim': 1})
  for split in ds.splits.values():
    split.arrays['dense'] = np.zeros((len(split), 1), np.float32)
  return ds


_TRAIN_BATCHES = train.train_batches


@pytest.fixture
def fast_config(tiny_config):
  """The tiny config without packed histories (one compiled shape: faster to start)."""
  tiny_config.data.pack_history = False
  return tiny_config


def _poison_from(monkeypatch, first_bad_step, starts):
  """Training batches from `first_bad_step` on carry a dense value that overflows the loss;
  records the start step of every run."""
  real = _TRAIN_BATCHES

  def batches(split, gb, seed, start, *args, **kw):
    starts.append(start)
    for step, b in enumerate(real(split, gb, seed, start, *args, **kw), start + 1):
      if first_bad_step is not None and step >= first_bad_step:
        b = dict(b, dense=np.full_like(b['dense'], 3e38))
      yield b
  monkeypatch.setattr(train, 'train_batches', batches)


def _steps(path):
  return sorted(int(d) for d in os.listdir(path) if d.isdigit()) if os.path.isdir(path) else []


def test_no_checkpoint_past_a_non_finite_step_and_rerun_resumes_from_last_good(
    fast_config, tmp_path, monkeypatch):
  """Issue 14.4: losses are checked before every checkpoint, not only on logging steps."""
  cfg = fast_config
  cfg.data.name = '_zero_dense'
  cfg.train.num_steps, cfg.train.eval_every, cfg.train.log_every = 20, 20, 20
  cfg.train.checkpoint_every = 5
  starts = []
  _poison_from(monkeypatch, 7, starts)
  want = r'at step 7; the last finite step is 6, the last good checkpoint is step 5'
  with pytest.raises(FloatingPointError, match=want):
    train.train_and_evaluate(cfg, str(tmp_path))
  assert _steps(tmp_path / 'checkpoints') == [5]
  assert _steps(tmp_path / 'best') == []
  # The data is fixed: the rerun resumes from step 5 and finishes.
  _poison_from(monkeypatch, None, starts)
  summary = train.train_and_evaluate(cfg, str(tmp_path))
  assert starts == [0, 5]
  assert summary['steps'] == 20 and np.isfinite(summary['eval/test/logloss'])
