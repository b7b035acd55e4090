"""Metrics against hand-computed cases."""
import numpy as np
import pytest

from seqrec_jax import metrics as M


def test_auc_hand_computed():
  # Positives at 0.8, 0.4; negatives at 0.5, 0.1: pairs (0.8>0.5, 0.8>0.1, 0.4<0.5, 0.4>0.1) -> 3/4.
  assert M.auc([1, 0, 1, 0], [0.8, 0.5, 0.4, 0.1]) == pytest.approx(0.75)


def test_auc_ties_count_half():
  assert M.auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
  # pos {0.5, 0.9}, neg {0.5, 0.1}: (0.5~0.5 -> .5) + 1 + 1 + 1 = 3.5 / 4.
  assert M.auc([1, 1, 0, 0], [0.5, 0.9, 0.5, 0.1]) == pytest.approx(0.875)


def test_auc_matches_pairwise_bruteforce():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 2, 300)
  s = np.round(rng.random(300), 2)            # many ties
  pos, neg = s[y == 1], s[y == 0]
  brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (
      len(pos) * len(neg))
  assert M.auc(y, s) == pytest.approx(brute)


def test_auc_one_class_is_nan():
  assert np.isnan(M.auc([1, 1], [0.2, 0.3]))


def test_gauc_weights_by_impressions_and_skips_one_class_users():
  users = [1, 1, 1, 1, 2, 2, 3, 3, 3]
  labels = [1, 0, 1, 0, 1, 0, 1, 1, 1]     # user 3 has one class only: skipped
  scores = [0.8, 0.5, 0.4, 0.1, 0.2, 0.9, 0.3, 0.2, 0.1]
  # user 1: AUC 0.75 with 4 impressions; user 2: AUC 0 with 2 impressions.
  expected = (4 * 0.75 + 2 * 0.0) / (4 + 2)
  assert M.gauc(labels, scores, users) == pytest.approx(expected)


def test_gauc_ties_within_user_only():
  # Equal scores across different users must not be treated as ties.
  assert M.gauc([1, 0, 1, 0], [0.5, 0.4, 0.5, 0.6], [1, 1, 2, 2]) == pytest.approx(0.5)


def test_gauc_all_one_class_is_nan():
  assert np.isnan(M.gauc([1, 1, 0], [0.1, 0.2, 0.3], [1, 1, 2]))


def test_gauc_equals_mean_of_per_user_auc_bruteforce():
  rng = np.random.default_rng(1)
  u = rng.integers(0, 30, 500)
  y = rng.integers(0, 2, 500)
  s = np.round(rng.random(500), 1)
  num = den = 0.0
  for user in np.unique(u):
    m = u == user
    if 0 < y[m].sum() < m.sum():
      num += m.sum() * M.auc(y[m], s[m])
      den += m.sum()
  assert M.gauc(y, s, u) == pytest.approx(num / den)


def test_logloss_and_relaimpr():
  assert M.logloss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
  assert M.logloss([1], [1.0]) < 1e-6          # clipped, finite
  assert M.rela_impr(0.8871, 0.8624) == pytest.approx(((0.8871 - .5) / (0.8624 - .5) - 1) * 100)
  assert M.rela_impr(0.7, 0.7) == 0.0


# ---- Confidence intervals ----

def test_mean_ci_textbook_case():
  # x = 1..5: mean 3, s = sqrt(2.5), t_{0.975, 4} = 2.776445 -> 3 -/+ 1.963243.
  mean, lo, hi = M.mean_ci([1, 2, 3, 4, 5])
  assert mean == 3.0
  assert (lo, hi) == pytest.approx((3 - 1.963243, 3 + 1.963243), abs=1e-6)
  # level 0.90: t_{0.95, 4} = 2.131847.
  _, lo90, _ = M.mean_ci([1, 2, 3, 4, 5], level=0.90)
  assert lo90 == pytest.approx(3 - 2.131847 * np.sqrt(2.5 / 5), abs=1e-6)


def test_mean_ci_degenerate():
  assert np.isnan(M.mean_ci([0.7])[1])
  assert np.isnan(M.mean_ci([])[0])
  with pytest.raises(ValueError, match='level'):
    M.mean_ci([1, 2], level=95)


def test_mean_ci_coverage():
  rng = np.random.default_rng(0)
  hits = 0
  for _ in range(1000):
    _, lo, hi = M.mean_ci(rng.normal(1.0, 2.0, size=4))
    hits += lo < 1.0 < hi
  assert 0.93 < hits / 1000 < 0.97
