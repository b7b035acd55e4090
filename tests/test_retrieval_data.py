"""Leave-last-out by time (seqrec_jax/data/retrieval.py): no leakage, strictly earlier
histories, the synthetic replay and its oracle."""
from __future__ import annotations

import numpy as np
import pytest

from seqrec_jax.data import retrieval as D


def _toy() -> D.Logs:
  # user 1: items 1..5 at times 0,1,1,2,3 (a same-second pair); user 2: two items (too few);
  # user 3: 3 items, the last two in the same second.
  user = np.array([1, 1, 1, 1, 1, 2, 2, 3, 3, 3])
  item = np.array([1, 2, 3, 4, 5, 1, 2, 6, 7, 8])
  time = np.array([0, 1, 1, 2, 3, 5, 6, 0, 4, 4])
  perm = np.random.default_rng(0).permutation(len(user))     # any input order
  cate = np.array([0, 1, 1, 2, 2, 3, 3, 1, 2])
  return D._ordered('toy', user[perm], item[perm], time[perm], cate, 4, {})


def test_split_targets_and_histories():
  sp = D.leave_last_out(_toy())
  lg = sp.logs
  np.testing.assert_array_equal(sp.eval_users, [1, 3])
  np.testing.assert_array_equal(lg.item[sp.test_row], [5, 8])
  np.testing.assert_array_equal(lg.item[sp.valid_row], [4, 7])
  assert (sp.part[lg.user == 2] == D.TRAIN).all()          # too short: all train
  q = D.queries(sp, 'test', 4)
  # user 1's test history: everything earlier, the valid item newest; user 3's valid item is
  # in the same second as its test item, so it is not history.
  np.testing.assert_array_equal(q['hist_item'], [[1, 2, 3, 4], [0, 0, 0, 6]])
  np.testing.assert_array_equal(q['hist_cate'], [[1, 1, 2, 2], [0, 0, 0, 3]])
  ex = D.retrieval_examples(sp, 4)
  # item 3 shares a second with item 2: neither is the other's history.
  row = np.flatnonzero((ex['user_id'] == 1) & (ex['item_id'] == 3))[0]
  np.testing.assert_array_equal(ex['hist_item'][row], [0, 0, 0, 1])
  np.testing.assert_array_equal(ex['item_count'], [0, 2, 2, 1, 0, 0, 1, 0, 0])


def _assert_no_leak(sp: D.TimeSplit, L: int):
  lg = sp.logs
  held = {(int(lg.user[r]), int(lg.item[r])) for r in np.concatenate([sp.test_row,
                                                                        sp.valid_row])}
  time_of = {(int(u), int(i)): int(t) for u, i, t in zip(lg.user, lg.item, lg.time)}
  ex = D.retrieval_examples(sp, L)
  for u, i, h in zip(ex['user_id'], ex['item_id'], ex['hist_item']):
    assert (int(u), int(i)) not in held
    hs = [(int(u), int(x)) for x in h if x]
    assert not held.intersection(hs)
    assert all(time_of[p] < time_of[(int(u), int(i))] for p in hs)   # strictly earlier
  q = D.queries(sp, 'test', L)
  cand = np.stack([q['target'], np.ones_like(q['target'])], 1)
  ds = D.ctr_dataset(sp, L, D.candidate_rows(sp, q, cand), neg_per_pos=2)
  tr = ds.splits['train'].all()
  for u, i, h, y in zip(tr['user_id'], tr['target_item'], tr['hist_items'], tr['label']):
    assert not (y == 1 and (int(u), int(i)) in held)
    assert not held.intersection((int(u), int(x)) for x in h if x)
  test = ds.splits['test'].all()
  np.testing.assert_array_equal(test['label'].reshape(-1, 2)[:, 0], 1)
  assert ds.splits['valid'].all()['label'].mean() == pytest.approx(1 / 3)


def test_no_leakage_movielens_and_synthetic():
  _assert_no_leak(D.leave_last_out(_toy()), 4)
  lg = D.synthetic_logs(num_users=60, num_items=80, num_cates=8, max_len=8, min_len=3,
                        impressions_per_user=6)
  assert lg.info['interactions'] > 0
  for u in np.unique(lg.user):                           # distinct items per user, time order
    its, ts = lg.item[lg.user == u], lg.time[lg.user == u]
    assert len(set(its)) == len(its) and (np.diff(ts) > 0).all()
  _assert_no_leak(D.leave_last_out(lg), 8)


def test_synthetic_oracle_matches_the_generator():
  from seqrec_jax.data import synthetic
  cfg = {**synthetic.DEFAULTS, **D.SYNTHETIC, 'num_users': 40, 'num_items': 60,
         'num_cates': 6, 'max_len': 6, 'min_len': 2, 'impressions_per_user': 4}
  lg = D.synthetic_logs(**{k: cfg[k] for k in ('num_users', 'num_items', 'num_cates',
                                               'max_len', 'min_len', 'impressions_per_user')})
  orc = lg.oracle
  ds = synthetic.generate(**cfg)
  a = ds.splits['train'].all()
  p = orc.click_prob(a['hist_items'])[np.arange(len(a['label'])), a['target_item']]
  np.testing.assert_allclose(p, ds.oracle_prob['train'], rtol=1e-6)
  nxt = orc.next_item_prob(np.arange(1, 41))
  np.testing.assert_allclose(nxt.sum(1), 1.0, rtol=1e-9)
  # Only the user's interest categories get more than the noise share.
  noise = orc.noise / (lg.num_items - 1)
  for u in (1, 7):
    cats = set(orc.cate_of_item[np.flatnonzero(nxt[u - 1] > noise * 1.01)])
    assert cats == set(orc.interests[u][orc.weights[u] > 0])
