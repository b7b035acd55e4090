"""ItemIndex top-k against brute force; merge_channels quota / de-duplication cases."""
import numpy as np
import pytest

from seqrec_jax.retrieval.index import ItemIndex
from seqrec_jax.retrieval.merge import merge_channels


def _brute(u, v, k, exclude):
  s = u.astype(np.float64) @ v.T.astype(np.float64)
  s[:, 0] = -np.inf
  for r, ex in enumerate(exclude):
    s[r, ex] = -np.inf
  ids = np.argsort(-s, axis=1, kind='stable')[:, :k]          # ties: smaller id first
  return ids, np.take_along_axis(s, ids, 1)


def test_exact_top_k_equals_brute_force_with_ties_and_exclusion():
  rng = np.random.default_rng(0)
  v = rng.integers(-3, 4, (50, 4)).astype(np.float32)        # small integers: many exact ties
  u = rng.integers(-3, 4, (37, 4)).astype(np.float32)
  ex = rng.integers(0, 50, (37, 6)).astype(np.int32)
  idx = ItemIndex(v, chunk=16)                                # 3 chunks, the last one padded
  ids, scores = idx.top_k(u, 10, exclude=ex)
  want_ids, want_s = _brute(u, v, 10, ex)
  np.testing.assert_array_equal(ids, want_ids)
  np.testing.assert_allclose(scores, want_s, rtol=1e-6)
  assert not (ids == 0).any() and not (ids[:, :, None] == ex[:, None, :]).any()


def test_exact_top_k_pads_when_everything_is_excluded():
  v = np.eye(4, dtype=np.float32)
  ids, scores = ItemIndex(v).top_k(np.ones((1, 4), np.float32), 3,
                                   exclude=np.array([[1, 2, 0]]))
  assert ids.tolist() == [[3, 0, 0]] and np.isneginf(scores[0, 1:]).all()


def test_approx_top_k_recall():
  rng = np.random.default_rng(1)
  v = rng.normal(size=(3000, 16)).astype(np.float32)
  u = rng.normal(size=(64, 16)).astype(np.float32)
  ex = rng.integers(0, 3000, (64, 20)).astype(np.int32)
  ids, _ = ItemIndex(v, method='approx', recall_target=0.95).top_k(u, 50, exclude=ex)
  want, _ = _brute(u, v, 50, ex)
  recall = np.mean([len(set(a) & set(b)) / 50 for a, b in zip(ids.tolist(), want.tolist())])
  assert recall >= 0.95
  assert not (ids == 0).any() and not (ids[:, :, None] == ex[:, None, :]).any()


def test_index_errors_name_the_argument():
  with pytest.raises(ValueError, match="method='ann'"):
    ItemIndex(np.zeros((3, 2)), method='ann')
  idx = ItemIndex(np.zeros((3, 2)))
  with pytest.raises(ValueError, match='k=3'):
    idx.top_k(np.zeros((1, 2)), 3)
  with pytest.raises(ValueError, match='exclude'):
    idx.top_k(np.zeros((1, 2)), 1, exclude=np.array([[5]]))


def _res(*rows):
  a = np.array(rows, np.int32)
  return a, -np.arange(a.shape[1], dtype=np.float32)[None].repeat(len(a), 0)


def test_merge_quotas_dedup_and_fill():
  results = {'a': _res([1, 2, 3, 4], [5, 6, 0, 0]),
             'b': _res([2, 7, 8, 9], [5, 6, 7, 8])}
  ids, src = merge_channels(results, {'a': 2, 'b': 2}, 6)
  # row 0: a gives 1, 2; b skips 2 (taken) -> 7, 8; fill by rank: a3, (b2 taken) a4, b9 ...
  assert ids[0].tolist() == [1, 2, 7, 8, 3, 4]
  assert src[0].tolist() == [0, 0, 1, 1, 0, 0]
  # row 1: a has only 5, 6; b skips both -> 7, 8; fill: nothing left of a, b's 9 missing ->
  # b has 5, 6, 7, 8 only, so padding.
  assert ids[1].tolist() == [5, 6, 7, 8, 0, 0]
  assert src[1].tolist() == [0, 0, 1, 1, -1, -1]


def test_merge_fill_interleaves_by_rank_and_dedups_within_channel():
  results = {'a': _res([1, 1, 2, 3]), 'b': _res([4, 5, 6, 0])}
  ids, src = merge_channels(results, {'a': 1}, 6)            # b's quota missing = 0
  # fill order a1 b4 a1 b5 a2 b6 a3: the repeated 1 is taken once
  assert ids[0].tolist() == [1, 4, 5, 2, 6, 3]
  assert src[0].tolist() == [0, 1, 1, 0, 1, 0]
  assert ids.dtype == np.int32 and src.dtype == np.int8


def test_merge_total_smaller_than_lists_and_errors():
  results = {'a': _res([1, 2, 3]), 'b': _res([4, 5, 6])}
  ids, _ = merge_channels(results, {'a': 1, 'b': 1}, 2)
  assert ids.tolist() == [[1, 4]]
  with pytest.raises(ValueError, match="'c'"):
    merge_channels(results, {'c': 1}, 2)
  with pytest.raises(ValueError, match='total=2'):
    merge_channels(results, {'a': 2, 'b': 1}, 2)
