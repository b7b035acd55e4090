"""Ranking utilities: calibration after negative down-sampling and score fusion."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax import ranking


def test_calibration_hand_computed():
  p = np.array([0.0, 0.2, 0.5, 0.9, 1.0])
  got = ranking.calibrate_downsampled(p, 0.1)
  # a*p / ((1 - p) + a*p) with a = 0.1
  want = np.array([0.0, 0.02 / 0.82, 0.05 / 0.55, 0.09 / 0.19, 1.0])
  np.testing.assert_allclose(got, want, rtol=1e-12)
  assert ranking.calibrate_downsampled(0.2, 0.5) == pytest.approx(0.1 / 0.9)
  np.testing.assert_allclose(ranking.calibrate_downsampled(p, 1.0), p)   # no sampling


def test_calibration_on_logits_matches_and_works_in_jax():
  logits = np.array([-3.0, -0.5, 0.0, 2.0])
  p = 1 / (1 + np.exp(-logits))
  via_logits = 1 / (1 + np.exp(-ranking.calibrate_downsampled_logits(logits, 0.05)))
  np.testing.assert_allclose(via_logits, ranking.calibrate_downsampled(p, 0.05), rtol=1e-10)
  got = ranking.calibrate_downsampled(jnp.asarray(p, jnp.float32), 0.05)
  np.testing.assert_allclose(np.asarray(got), ranking.calibrate_downsampled(p, 0.05), rtol=1e-5)


def test_calibration_recovers_true_rate_after_downsampling():
  """Empirical check: the positive rate seen after down-sampling, calibrated, is the true one."""
  rng = np.random.default_rng(0)
  n, a = 400_000, 0.2
  p_true = rng.choice([0.02, 0.1, 0.3], size=n)
  y = (rng.random(n) < p_true).astype(np.float64)
  keep = ranking.downsample_negatives(y, a, seed=1)
  assert y[keep].sum() == y.sum()                              # every positive kept
  kept_neg = (1 - y[keep]).sum() / (1 - y).sum()
  assert kept_neg == pytest.approx(a, abs=0.01)
  for level in (0.02, 0.1, 0.3):
    rows = keep[p_true[keep] == level]
    p_sample = y[rows].mean()                                   # what a perfect model learns
    assert p_sample > level * 1.5                               # inflated by down-sampling
    assert ranking.calibrate_downsampled(p_sample, a) == pytest.approx(level, rel=0.08)


@pytest.mark.parametrize('rate', [0.0, -0.1, 1.5])
def test_bad_rate_is_an_error(rate):
  with pytest.raises(ValueError, match=f'got {rate}'):
    ranking.calibrate_downsampled(np.array([0.5]), rate)


def test_fusion_hand_computed():
  probs = np.array([[0.1, 0.5, 0.2], [0.3, 0.0, 1.0]])
  np.testing.assert_allclose(ranking.fuse_weighted_sum(probs, [1, 2, 3]), [1.7, 3.3])
  # p_click * (1 + sum_i w_i p_i): 0.1 * (1 + 2*0.5 + 3*0.2) = 0.26; 0.3 * (1 + 0 + 3) = 1.2
  np.testing.assert_allclose(ranking.fuse_product(probs[:, 0], probs[:, 1:], [2, 3]),
                             [0.26, 1.2])
  got = ranking.fuse_product(jnp.asarray(probs[:, 0], jnp.float32),
                             jnp.asarray(probs[:, 1:], jnp.float32), [2, 3])
  np.testing.assert_allclose(np.asarray(got), [0.26, 1.2], rtol=1e-6)
  # Zero weights: the product form is the click probability alone.
  np.testing.assert_allclose(ranking.fuse_product(probs[:, 0], probs[:, 1:], [0, 0]),
                             probs[:, 0])


def test_fusion_weight_count_must_match():
  with pytest.raises(ValueError, match='2 weights for 3 task scores'):
    ranking.fuse_weighted_sum(np.zeros((4, 3)), [1.0, 2.0])
