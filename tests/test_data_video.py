"""Synthetic short-video data (data/video.py): its oracle is the expected label."""
from __future__ import annotations

import ml_collections
import numpy as np

from seqrec_jax import metrics
from seqrec_jax.configs import default
from seqrec_jax.data import load_dataset, video


def _cfg(**kw):
  c = default.get_config().data
  c.name = 'video'
  c.video.update(dict(num_users=400, num_items=500, requests_per_user=5, **kw))
  return c


def test_oracle_is_the_expected_label():
  c = _cfg()
  ds, orc = load_dataset(c), video.oracles(c.video)
  y = np.concatenate([ds.splits[s].all()['labels'] for s in video.SPLITS])
  o = {k: np.concatenate([orc[s][k] for s in video.SPLITS]) for k in video.ORACLE_KEYS}
  n = len(y)
  for j, k in enumerate(video.ORACLE_KEYS):
    # mean label within 4 standard errors of the mean oracle, and within oracle deciles
    # (calibration: E[y | oracle bin] = mean oracle of the bin).
    err = y[:, j] - o[k]
    assert abs(err.mean()) < 4 * err.std() / np.sqrt(n), k
    edges = np.quantile(o[k], np.linspace(0, 1, 6))
    bins = np.clip(np.searchsorted(edges, o[k], side='right') - 1, 0, 4)
    for b in range(5):
      e = err[bins == b]
      assert abs(e.mean()) < 5 * e.std() / np.sqrt(len(e)) + 1e-9, (k, b)
  # The oracle ranks better than a feature-blind score and watch time follows its oracle.
  assert metrics.auc(y[:, 0], o['click']) > 0.6
  assert metrics.order_auc(y[:, 2], o['watch']) > 0.6
  np.testing.assert_allclose(o['watch'], o['completion'] * np.concatenate(
      [orc[s]['duration'] for s in video.SPLITS]))


def test_requests_and_seed():
  c = _cfg()
  test = video.oracles(c.video)['test']
  rows = load_dataset(c).splits['test'].all()
  _, counts = np.unique(test['request'], return_counts=True)
  assert (counts == c.video.candidates).all()
  for r in np.unique(test['request'])[:5]:
    assert len(np.unique(rows['user_id'][test['request'] == r])) == 1
  a = video.load(ml_collections.ConfigDict(dict(c.video, seed=1))).splits['train'].all()
  b = video.load(c.video).splits['train'].all()
  n = min(len(a['target_item']), len(b['target_item']))
  assert not np.array_equal(a['target_item'][:n], b['target_item'][:n])
