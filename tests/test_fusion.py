"""Rank-based and multiplicative score fusion, duration adjustment (seqrec_jax/ranking.py)."""
from __future__ import annotations

import numpy as np
import pytest

from seqrec_jax import ranking


def test_ranks_within_requests_and_ties():
  s = np.array([0.2, 0.9, 0.5, 0.9, 3.0, 1.0])
  g = np.array([0, 0, 0, 0, 1, 1])
  # request 0: 0.9, 0.9 share ranks 1 and 2 -> 1.5; 0.5 -> 3; 0.2 -> 4. request 1: 3.0 -> 1.
  np.testing.assert_array_equal(ranking.ranks_within(s, g), [4, 1.5, 3, 1.5, 1, 2])
  np.testing.assert_array_equal(ranking.ranks_within(s[:3]), [3, 1, 2])


def test_fuse_rank_hand_computed():
  # 3 candidates, 2 tasks (p_click, watch seconds). ranks: click [1, 2, 3], watch [3, 1, 2].
  scores = np.array([[0.9, 10.0], [0.5, 300.0], [0.1, 60.0]])
  w = [1.0, 2.0]
  # alpha=1, beta=0: [1/1 + 2/3, 1/2 + 2/1, 1/3 + 2/2]
  np.testing.assert_allclose(ranking.fuse_rank(scores, w), [5 / 3, 2.5, 4 / 3])
  # alpha=2, beta=1: [1/2 + 2/10, 1/5 + 2/2, 1/10 + 2/5]
  np.testing.assert_allclose(ranking.fuse_rank(scores, w, alpha=2.0, beta=1.0),
                             [0.7, 1.2, 0.5])
  # scale-free: any increasing transform of a task's scores gives the same fused score.
  t = scores.copy()
  t[:, 1] = np.log(t[:, 1])
  np.testing.assert_allclose(ranking.fuse_rank(t, w), ranking.fuse_rank(scores, w))
  # two requests rank separately: the second request alone gives its own fused scores.
  both = np.concatenate([scores, scores[::-1]])
  g = np.array([0, 0, 0, 1, 1, 1])
  np.testing.assert_allclose(ranking.fuse_rank(both, w, groups=g)[3:],
                             ranking.fuse_rank(scores[::-1], w))
  with pytest.raises(ValueError, match='alpha'):
    ranking.fuse_rank(scores, w, alpha=0.0)
  with pytest.raises(ValueError, match='weights'):
    ranking.fuse_rank(scores, [1.0])


def test_fuse_ecommerce_and_power():
  # 0.1^1 * 0.5^1 * 0.2^2 * 100^0.5 = 0.1 * 0.5 * 0.04 * 10 = 0.02
  assert ranking.fuse_ecommerce(0.1, 0.5, 0.2, 100.0, 1, 1, 2, 0.5) == pytest.approx(0.02)
  f = np.array([[0.1, 0.5, 0.2, 100.0], [0.2, 0.5, 0.5, 4.0]])
  np.testing.assert_allclose(ranking.fuse_power(f, [1, 1, 2, 0.5]), [0.02, 0.05])
  np.testing.assert_allclose(ranking.fuse_ecommerce(*f.T, 1, 1, 2, 0.5),
                             ranking.fuse_power(f, [1, 1, 2, 0.5]))
  # d = 0 ignores price; all exponents 0 give 1.
  assert ranking.fuse_ecommerce(0.1, 0.5, 0.2, 100.0, 1, 1, 1, 0) == pytest.approx(0.01)
  np.testing.assert_allclose(ranking.fuse_power(f, [0, 0, 0, 0]), [1.0, 1.0])


def test_duration_adjust():
  p = np.array([2.0, 2.0])
  d = np.array([np.e - 1, np.e ** 2 - 1])
  np.testing.assert_allclose(ranking.duration_adjust(p, d), [2.0, 1.0])         # / log(1 + d)
  np.testing.assert_allclose(ranking.duration_adjust(p, np.array([3.0, 8.0]), 'power', 0.5),
                             [1.0, 2 / 3])                                      # / sqrt(1 + d)
  with pytest.raises(ValueError, match="'log' or 'power'"):
    ranking.duration_adjust(p, d, 'sqrt')
