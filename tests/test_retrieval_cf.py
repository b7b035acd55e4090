"""ItemCF / Swing / UserCF on toy matrices against the formulas written out plainly."""
import math

import numpy as np
import pytest
import scipy.sparse as sp

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
  with pytest.raises(ValueError, match='k=0'):
    ch.retrieve(np.array([[1]]), 0)


def _assert_top(ids, scores, want, k, tol=1e-5):
  """ids / scores [k] are a best-first top-k of want {id: score > 0} up to ties within tol."""
  best = sorted(want.values(), reverse=True)[:k]
  n = len(best)
  np.testing.assert_allclose(scores[:n], best, rtol=tol)
  assert len(set(ids[:n].tolist())) == n
  for i, s in zip(ids[:n].tolist(), scores[:n].tolist()):
    assert i in want and abs(want[i] - s) <= tol * max(abs(s), 1.0), (i, s, want.get(i))
  assert (ids[n:] == 0).all() and (~np.isfinite(scores[n:]) | (scores[n:] == 0)).all()


def _swing(user, item, alpha, power, offset):
  users_of, items_of = _sets(user, item)
  w = {u: (len(s) + offset) ** -power for u, s in items_of.items()}
  sim = {}
  for i, ui in users_of.items():
    for j, uj in users_of.items():
      common = ui & uj
      if i != j:
        sim.setdefault(i, {})[j] = sum(w[u] * w[v] / (alpha + len(items_of[u] & items_of[v]))
                                       for u in common for v in common if u != v)
  return sim


@pytest.mark.parametrize('alpha,power,block', [(1.0, 0.0, 3), (0.5, 0.35, None)])
def test_swing_table_matches_formula(alpha, power, block):
  from seqrec_jax.retrieval.swing import Swing
  user, item, nu, ni = _toy(seed=3, n_users=10, n_items=9, n=50)
  ch = Swing.fit(user, item, nu, ni, top_k_neighbours=4, alpha=alpha, user_power=power,
                 user_offset=5.0, block=block)
  want = _swing(user, item, alpha, power, 5.0)
  assert (ch.nbr_ids[0] == 0).all()
  for i in range(1, ni):
    pos = {j: s for j, s in want.get(i, {}).items() if s > 0}
    _assert_top(ch.nbr_ids[i], ch.nbr_sim[i], pos, 4)
  # Query = the table's votes (checked on the table the channel holds), history excluded.
  hist = _hist(ni, seed=4)
  ids, scores = ch.retrieve(hist, 5)
  for u in range(len(hist)):
    votes = {}
    for j in hist[u, -ch.last_n:].tolist():
      for i, s in zip(ch.nbr_ids[j].tolist(), ch.nbr_sim[j].tolist()):
        if i and j and i not in hist[u].tolist():
          votes[i] = votes.get(i, 0.0) + s
    _assert_top(ids[u], scores[u], votes, 5)


def test_swing_damps_a_small_circle():
  # Users 1-3 took the same items 1..10 (a circle); users 4 and 5, otherwise unrelated, both
  # took 11 and 12 (which users 6, 7 took once each). Cosine: sim(1, 2) = 1 > sim(11, 12) = 2/3;
  # Swing: 6 pairs x 1/(1 + 10) = 0.545 < 2 pairs x 1/(1 + 2) = 0.667.
  from seqrec_jax.retrieval.swing import Swing
  pairs = [(u, i) for u in (1, 2, 3) for i in range(1, 11)]
  pairs += [(4, 11), (4, 12), (4, 13), (5, 11), (5, 12), (5, 14), (6, 11), (7, 12)]
  user, item = np.array(pairs).T
  sw = Swing.fit(user, item, 8, 15, top_k_neighbours=14)
  cos = ItemCF.fit(user, item, 8, 15, top_k_neighbours=14)
  sim = lambda ch, i, j: dict(zip(ch.nbr_ids[i].tolist(), ch.nbr_sim[i].tolist())).get(j, 0.0)
  assert sim(cos, 1, 2) == pytest.approx(1.0) and sim(cos, 11, 12) == pytest.approx(2 / 3)
  assert sim(sw, 1, 2) == pytest.approx(6 / 11) and sim(sw, 11, 12) == pytest.approx(2 / 3)


def _usercf(user, item):
  users_of, items_of = _sets(user, item)
  return {u: {v: sum(1 / math.log(1 + len(users_of[i])) for i in iu & iv)
              / math.sqrt(len(iu) * len(iv)) for v, iv in items_of.items() if v != u}
          for u, iu in items_of.items()}


def test_usercf_table_and_query_match_formula():
  from seqrec_jax.retrieval.usercf import UserCF
  user, item, nu, ni = _toy(seed=5, n_users=10, n_items=12, n=50)
  K = 3
  ch = UserCF.fit(user, item, nu, ni, top_k_neighbours=K)
  sim = _usercf(user, item)
  users_of, items_of = _sets(user, item)
  for u in range(1, nu):
    _assert_top(ch.nbr_ids[u], ch.nbr_sim[u], {v: s for v, s in sim.get(u, {}).items() if s > 0},
                K)
  hist = _hist(ni, seed=6)
  uid = np.array([1, 2, 3, 0, 4, 5])
  ids, scores = ch.retrieve(hist, 6, user_id=uid)
  for r in range(len(hist)):
    if uid[r]:
      nbr = dict(zip(ch.nbr_ids[uid[r]].tolist(), ch.nbr_sim[uid[r]].tolist()))
    else:   # unknown user: neighbours of the request's own history, same formula
      h = set(hist[r].tolist()) - {0}
      s = {v: sum(1 / math.log(1 + len(users_of[i])) for i in h & iv)
           / math.sqrt(len(h) * len(iv)) for v, iv in items_of.items()}
      nbr = dict(_top(s, K))
      q = sp.csr_matrix((np.ones(len(h)), (np.zeros(len(h), int), sorted(h))), shape=(1, ni))
      got = ch.neighbours(q, K)[1][0, :len(nbr)]
      assert sorted(nbr.values()) == pytest.approx(sorted(got.tolist()), rel=1e-5)
    votes = {}
    for v, s in nbr.items():
      for i in items_of.get(v, ()):
        if v and i not in hist[r].tolist():
          votes[i] = votes.get(i, 0.0) + s
    _assert_top(ids[r], scores[r], votes, 6)
