"""Hard negatives mined from a (fake) ranker: retrieval/hard_negatives.py."""
import numpy as np
import pytest

from seqrec_jax.retrieval import hard_negatives as H


def test_mine_keeps_rankers_best_non_positives():
  cand = np.array([[5, 6, 7, 8, 9, 0],
                   [3, 4, 5, 0, 0, 0]])
  scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 9.0],     # slot of item 0 scores highest
                     [0.1, 0.9, 0.2, 5.0, 5.0, 5.0]])
  hist = np.array([[0, 6], [0, 0]])                      # user 1 had 6 in history
  pos_user, pos_item = np.array([1, 2, 2]), np.array([5, 4, 5])   # user 1 clicked 5, 2: 4, 5
  got = H.mine(cand, scores, hist, np.array([1, 2]), pos_user, pos_item, num_items=10, h=3)
  np.testing.assert_array_equal(got, [[7, 8, 9], [3, 0, 0]])
  assert got.dtype == np.int32


def test_mine_from_ranker_fake_scorer():
  rng = np.random.default_rng(0)
  n_items, n, L, m, h = 40, 30, 5, 12, 3
  user = rng.integers(1, 6, n).astype(np.int32)
  hist = rng.integers(0, n_items, (n, L)).astype(np.int32)
  ex = {'user_id': user, 'hist_item': hist, 'hist_cate': hist % 3,
        'item_id': rng.integers(1, n_items, n).astype(np.int32),
        'cate_of_item': np.arange(n_items) % 3}
  pos_user, pos_item = user, ex['item_id']      # every example's positive is a click

  def retrieve(hist_item, user_id, k):          # any k items not in the history
    out = []
    for row in hist_item:
      out.append([i for i in range(1, n_items) if i not in row][:k])
    return np.array(out)
  value = rng.permutation(n_items).astype(float)  # fake ranker: a fixed score per item

  def score(sub, cand):
    assert set(sub) >= {'user_id', 'hist_item', 'hist_cate', 'target'}
    return value[cand] + 0.0 * sub['user_id'][:, None]
  rows = H.subsample(n, 20, seed=1)
  got = H.mine_from_ranker(ex, rows, retrieve, score, m=m, h=h, pos_user=pos_user,
                           pos_item=pos_item)
  assert got.shape == (n, h) and got.dtype == np.int32
  assert not got[np.setdiff1d(np.arange(n), rows)].any()      # unmined rows: none
  clicked = {(u, i) for u, i in zip(pos_user, pos_item)}
  for r in rows:
    cand = retrieve(hist[r:r + 1], None, m)[0]
    allowed = [c for c in cand if (user[r], c) not in clicked and c not in hist[r]]
    want = sorted(allowed, key=lambda c: -value[c])[:h]
    want += [0] * (h - len(want))
    np.testing.assert_array_equal(got[r], want)
    assert not set(got[r]) & (set(hist[r]) - {0})


def test_errors_and_padding():
  with pytest.raises(ValueError, match='h=0'):
    H.mine(np.ones((1, 2), int), np.ones((1, 2)), np.zeros((1, 1), int), np.ones(1, int),
           np.zeros(0, int), np.zeros(0, int), 5, 0)
  got = H.mine(np.array([[1, 2]]), np.array([[1.0, 2.0]]), np.zeros((1, 1), int),
               np.ones(1, int), np.zeros(0, int), np.zeros(0, int), 5, h=4)
  np.testing.assert_array_equal(got, [[2, 1, 0, 0]])
  assert len(H.subsample(10, 50)) == 10
