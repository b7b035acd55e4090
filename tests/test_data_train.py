"""End to end: the training loop runs on the MovieLens fixture through the TFDS path."""
from __future__ import annotations

import os

import numpy as np
import pytest

from seqrec_jax.configs import din

FIX = os.path.join(os.path.dirname(__file__), 'fixtures')


@pytest.mark.slow
def test_training_loop_runs_on_movielens_fixture(tmp_path):
  dataset, path = 'movielens', os.path.join(FIX, 'movielens', 'ml-1m')
  from seqrec_jax import train  # pylint: disable=g-import-not-at-top
  c = din.get_config(f'{dataset},base')   # DIN itself is timed in docs/datasets.md
  c.data.data_dir = str(tmp_path / 'data')
  c.data[dataset].path = path
  c.data[dataset].max_len = 4
  c.data.movielens.valid_frac = c.data.movielens.test_frac = 0.25   # 3 users each
  c.data.batch_size, c.data.eval_batch_size = 8, 16
  c.model.embed_dim, c.model.hidden, c.model.attention.hidden = 4, (8,), (4,)
  c.train.num_steps, c.train.eval_every, c.train.checkpoint_every = 3, 3, 3
  c.train.progress = False
  summary = train.train_and_evaluate(c, str(tmp_path / 'run'))
  for k in ('eval/test/auc', 'eval/test/logloss', 'eval/valid/auc'):
    assert np.isfinite(summary[k]), (k, summary)
