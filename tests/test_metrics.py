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


def test_paired_diff_ci_agrees_with_paired_t_test():
  from scipy import stats
  rng = np.random.default_rng(1)
  for shift in (0.0, 0.3, 1.0, -1.0):
    base = rng.normal(0.7, 1.0, size=10)           # seed effect shared by both rows
    a = base + shift + rng.normal(0, 0.5, size=10)
    b = base + rng.normal(0, 0.5, size=10)
    d = M.paired_diff_ci(a, b)
    assert d['n'] == 10 and d['mean'] == pytest.approx(np.mean(a - b))
    assert d['resolved'] == (stats.ttest_rel(a, b).pvalue < 0.05)


def test_paired_diff_ci_pairs_by_seed():
  a = {0: 0.71, 1: 0.742, 2: 0.691, 5: 0.9}
  b = {2: 0.68, 1: 0.73, 0: 0.70}                  # seed 5 only in a: dropped
  d = M.paired_diff_ci(a, b)
  assert d['n'] == 3 and d['mean'] == pytest.approx(np.mean([0.01, 0.012, 0.011]))
  assert d['resolved'] and d['lo'] > 0
  # Pairing removes the shared seed effect, which an unpaired interval would keep.
  assert M.mean_ci([0.71, 0.742, 0.691])[1] < M.mean_ci([0.70, 0.73, 0.68])[2]
  with pytest.raises(ValueError, match='pair them by seed'):
    M.paired_diff_ci([1, 2, 3], [1, 2])
  assert 'n/a' in M.format_diff(M.paired_diff_ci([1.0], [0.5]))
  assert M.format_diff(d, 3).endswith('*')


def _one_pos_one_neg_users(n_users):
  users = np.repeat(np.arange(n_users), 2)
  labels = np.tile([1, 0], n_users)
  return users, labels


def test_bootstrap_gauc_diff_identical_models_is_zero():
  rng = np.random.default_rng(2)
  users, labels = _one_pos_one_neg_users(50)
  s = rng.random(100)
  d = M.bootstrap_gauc_diff(labels, s, s, users, n_boot=200)
  assert d['mean'] == d['lo'] == d['hi'] == 0.0 and not d['resolved']


def test_bootstrap_gauc_diff_binomial_case():
  # Each user has one positive and one negative, so AUC_u is 0 or 1 and GAUC is the fraction
  # of users ranked right. Model a ranks the first half of users right, b none: the
  # difference is a proportion p = 0.5 over U = 400 users, bootstrap sd sqrt(p(1-p)/U) = 0.025.
  n_users = 400
  users, labels = _one_pos_one_neg_users(n_users)
  right = np.repeat(np.arange(n_users) < n_users // 2, 2)
  sa = np.where(right, labels, 1 - labels).astype(float)
  sb = 1.0 - labels
  d = M.bootstrap_gauc_diff(labels, sa, sb, users, n_boot=2000)
  assert d['mean'] == pytest.approx(M.gauc(labels, sa, users) - M.gauc(labels, sb, users))
  assert d['mean'] == pytest.approx(0.5)
  assert (d['hi'] - d['lo']) / 2 == pytest.approx(1.96 * 0.025, rel=0.12)
  assert d['resolved'] and d['n_users'] == n_users


def test_bootstrap_gauc_diff_averages_runs_and_weights_users():
  rng = np.random.default_rng(3)
  users = rng.integers(0, 40, 600)
  labels = rng.integers(0, 2, 600)
  sa, sb = rng.random((3, 600)), rng.random((3, 600))
  d = M.bootstrap_gauc_diff(labels, sa, sb, users, n_boot=300)
  expected = np.mean([M.gauc(labels, x, users) - M.gauc(labels, y, users)
                      for x, y in zip(sa, sb)])
  assert d['mean'] == pytest.approx(expected)
  assert d['lo'] < d['mean'] < d['hi']
  with pytest.raises(ValueError, match='labels'):
    M.bootstrap_gauc_diff(labels[:10], sa, sb, users)
