"""recall@K, NDCG@K, HR@K (seqrec_jax/retrieval/metrics.py) against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from seqrec_jax.retrieval import metrics as RM


def test_single_target_hand_cases():
  ids = np.array([[5, 7, 9, 0], [1, 2, 3, 4], [9, 8, 0, 0]])
  target = np.array([9, 6, 9])
  # user 0: rank 2 -> 1/log2(4) = 0.5; user 1: miss; user 2: rank 0 -> 1.
  np.testing.assert_allclose(RM.ndcg_per_user(ids, target), [0.5, 0.0, 1.0])
  np.testing.assert_allclose(RM.recall_per_user(ids, target), [1, 0, 1])
  np.testing.assert_allclose(RM.hit_rate_per_user(ids, target, k=2), [0, 0, 1])
  assert RM.recall_at_k(ids, target, 2) == pytest.approx(1 / 3)
  assert RM.ndcg_at_k(ids, target, 3) == pytest.approx(0.5)
  assert RM.hit_rate(ids, target) == pytest.approx(2 / 3)


def test_several_targets_and_padding():
  ids = np.array([[3, 1, 2, 8]])
  target = np.array([[1, 2, 0]])              # two targets, one padding slot
  # hits at ranks 1 and 2: DCG = 1/log2(3) + 1/log2(4); ideal = 1 + 1/log2(3).
  want = (1 / np.log2(3) + 0.5) / (1 + 1 / np.log2(3))
  assert RM.ndcg_at_k(ids, target) == pytest.approx(want)
  assert RM.recall_at_k(ids, target, 2) == pytest.approx(0.5)
  assert RM.hit_rate(ids, target, 1) == 0.0
  # K smaller than the number of targets: the ideal DCG has K hits.
  assert RM.ndcg_at_k(np.array([[1, 2]]), np.array([[1, 2, 7]]), 2) == pytest.approx(1.0)
  # id 0 never hits, a target listed twice counts once, a user without targets scores 0.
  assert RM.recall_at_k(np.array([[0, 0]]), np.array([[0, 0]])) == 0.0
  assert RM.recall_at_k(np.array([[4, 4]]), np.array([[4, 5]])) == pytest.approx(0.5)


def test_top_k_reranks_stably_and_puts_empty_slots_last():
  ids = np.array([[4, 5, 6, 0]])
  scores = np.array([[0.1, 0.9, 0.1, 5.0]])
  np.testing.assert_array_equal(RM.top_k(ids, scores, 3), [[5, 4, 6]])


def test_shapes_are_checked():
  with pytest.raises(ValueError, match=r'\[U, K\]'):
    RM.recall_at_k(np.array([1, 2]), np.array([1]))
  with pytest.raises(ValueError, match='k=0'):
    RM.ndcg_at_k(np.array([[1]]), np.array([1]), 0)
