"""ItemCF / Swing / UserCF on toy matrices against the formulas written out plainly."""
import math

import numpy as np
import pytest

from seqrec_jax.retrieval import itemcf
from seqrec_jax.retrieval.itemcf import ItemCF


def _toy(seed=0, n_users=9, n_items=12, n=45):
  """Random (user, item) pairs with ids from 1 (0 = padding) and a few repeats."""
  rng = np.random.default_rng(seed)
  user = rng.integers(1, n_users, n)
  item = rng.integers(1, n_items, n)
  return user, item, n_users, n_items


def _sets(user, item):
  users_of, items_of = {}, {}
  for u, i in zip(user.tolist(), item.tolist()):
    users_of.setdefault(i, set()).add(u)
    items_of.setdefault(u, set()).add(i)
  return users_of, items_of


def _top(sim_of_i, k):
  """{j: sim} -> the k best (j, sim) with sim > 0, ties by smaller j."""
  return sorted(((j, s) for j, s in sim_of_i.items() if s > 0), key=lambda t: (-t[1], t[0]))[:k]


def _check_table(ch, want_sim, n_items, k):
  for i in range(n_items):
    want = _top(want_sim.get(i, {}), k)
    got_ids = ch.nbr_ids[i]
    n = len(want)
    assert got_ids[:n].tolist() == [j for j, _ in want], i
    np.testing.assert_allclose(ch.nbr_sim[i, :n], [s for _, s in want], rtol=1e-5)
    assert (got_ids[n:] == 0).all() and (ch.nbr_sim[i, n:] == 0).all()


def _brute_query(want_sim, hist_row, last_n, decay, k, table_k):
  """score(i) = sum over the newest last_n history items j of decay^age sim(j, i), using only
  j's table_k best neighbours; history and 0 excluded; ties by smaller id."""
  h = [int(x) for x in hist_row[-last_n:]]
  score = {}
  for age, j in enumerate(reversed(h)):
    if j == 0:
      continue
    for i, s in _top(want_sim.get(j, {}), table_k):
      score[i] = score.get(i, 0.0) + decay ** age * s
  cand = [(i, s) for i, s in score.items() if i not in set(hist_row.tolist())]
  return sorted(cand, key=lambda t: (-t[1], t[0]))[:k]


def _check_query(ch, want_sim, hist, k, table_k, decay=1.0):
  ids, scores = ch.retrieve(hist, k)
  assert ids.shape == (len(hist), k) and ids.dtype == np.int32 and scores.dtype == np.float32
  for u in range(len(hist)):
    want = _brute_query(want_sim, hist[u], ch.last_n, decay, k, table_k)
    n = len(want)
    assert ids[u, :n].tolist() == [i for i, _ in want], u
    np.testing.assert_allclose(scores[u, :n], [s for _, s in want], rtol=1e-5)
    assert (ids[u, n:] == 0).all() and np.isneginf(scores[u, n:]).all()


def _hist(n_items, seed=1, n_users=6, L=5):
  rng = np.random.default_rng(seed)
  h = rng.integers(1, n_items, (n_users, L)).astype(np.int32)
  h[0, :3] = 0                                # right-aligned padding
  h[1, :] = 0                                 # no history at all
  return h


def _cosine(user, item):
  users_of, _ = _sets(user, item)
  return {i: {j: len(ui & uj) / math.sqrt(len(ui) * len(uj))
              for j, uj in users_of.items() if j != i} for i, ui in users_of.items()}


@pytest.mark.parametrize('k,block', [(3, 4), (20, 1024)])
def test_itemcf_table_is_cosine_top_k(k, block):
  user, item, nu, ni = _toy()
  ch = ItemCF.fit(user, item, nu, ni, top_k_neighbours=k, block=block)
  assert ch.nbr_ids.shape == (ni, k) and (ch.nbr_ids[0] == 0).all()
  _check_table(ch, _cosine(user, item), ni, k)


@pytest.mark.parametrize('last_n,decay', [(3, 1.0), (5, 0.5)])
def test_itemcf_query_matches_brute_force(last_n, decay):
  user, item, nu, ni = _toy(seed=2)
  ch = ItemCF.fit(user, item, nu, ni, top_k_neighbours=4, last_n=last_n, decay=decay)
  _check_query(ch, _cosine(user, item), _hist(ni), k=6, table_k=4, decay=decay)


def test_itemcf_ties_break_by_smaller_id():
  # Items 2, 3, 4 all co-occur once with item 1 with equal cosine.
  user = np.array([1, 1, 1, 1])
  item = np.array([1, 4, 2, 3])
  ch = ItemCF.fit(user, item, 2, 5, top_k_neighbours=2)
  assert ch.nbr_ids[1].tolist() == [2, 3]
  ids, _ = ch.retrieve(np.array([[0, 1]], np.int32), 5)
  assert ids[0].tolist() == [2, 3, 0, 0, 0]
  ids, _ = ch.retrieve(np.array([[0, 1]], np.int32), 3, exclude_history=False)
  assert ids[0].tolist() == [2, 3, 0]


def test_sparse_top_k_exclusion_and_padding():
  import scipy.sparse as sp
  s = sp.csr_matrix(np.array([[0.0, 5.0, 1.0, 3.0, 3.0], [9.0, 0.0, 0.0, 0.0, 2.0]]))
  ids, sc = itemcf.sparse_top_k(s, 3, exclude=np.array([[0, 1], [4, 0]]))
  assert ids.tolist() == [[3, 4, 2], [0, 0, 0]]          # column 0 never, excluded never
  assert sc[0].tolist() == [3.0, 3.0, 1.0] and np.isneginf(sc[1]).all()


def test_itemcf_rejects_bad_ids():
  with pytest.raises(ValueError, match='item ids span'):
    ItemCF.fit(np.array([1]), np.array([7]), 3, 5)
  ch = ItemCF.fit(np.array([1, 1]), np.array([1, 2]), 3, 5)
  with pytest.raises(ValueError, match='outside'):
    ch.retrieve(np.array([[9]]), 2)
