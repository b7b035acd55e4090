"""Hard negatives mined from the ranker (issue 21): items the ranker scored high for a training
example's history but that the user never clicked, for `train.two_tower.hard_negative_rate`.

  rows = subsample(len(ex['item_id']), 5000)
  hard = mine_from_ranker(ex, rows, retrieve, score, m=100, h=2, pos_user=..., pos_item=...)
  ds = data.retrieval.next_item_dataset(split, max_len, hard_item=hard)   # tasks/two_tower.py

retrieve(hist_item [n, L], user_id [n], m) -> ids [n, m] is the trained two-tower's top-m
(history excluded); score(sub, cand [n, m]) -> [n, m] is the ranker's score of each
(history, candidate) pair (experiments/funnel.py passes DIN's best checkpoint through its own
`score`). Rows that are not mined get hard_item 0 (= none).
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def subsample(n: int, num: int, seed: int = 0) -> np.ndarray:
  """min(num, n) distinct row indices of n, sorted: [num]."""
  if num <= 0:
    raise ValueError(f'subsample: num={num} rows must be > 0')
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(n, min(num, n), replace=False))


def mine(cand: np.ndarray, scores: np.ndarray, hist_item: np.ndarray, user_id: np.ndarray,
         pos_user: np.ndarray, pos_item: np.ndarray, num_items: int, h: int) -> np.ndarray:
  """The ranker's h highest-scoring candidates of each row that are neither in the row's
  history nor among its user's positives: [n, h] int32, best first, 0-padded.

  cand [n, m] int (0 = empty slot), scores [n, m], hist_item [n, L], user_id [n];
  (pos_user [P], pos_item [P]) every (user, item) click of the train part."""
  cand = np.asarray(cand).astype(np.int64)
  if cand.shape != np.shape(scores):
    raise ValueError(f'mine: cand {cand.shape} and scores {np.shape(scores)} differ')
  if h <= 0:
    raise ValueError(f'mine: h={h} hard negatives per row must be > 0')
  user = np.asarray(user_id).astype(np.int64)[:, None]
  clicked = np.unique(np.asarray(pos_user).astype(np.int64) * num_items + pos_item)
  in_hist = (cand[:, :, None] == np.asarray(hist_item)[:, None, :]).any(-1)
  bad = (cand <= 0) | in_hist | np.isin(user * num_items + cand, clicked)
  s = np.where(bad, -np.inf, np.asarray(scores, np.float64))
  order = np.argsort(-s, axis=1, kind='stable')[:, :h]
  ids = np.where(np.isfinite(np.take_along_axis(s, order, 1)),
                 np.take_along_axis(cand, order, 1), 0)
  if ids.shape[1] < h:
    ids = np.pad(ids, ((0, 0), (0, h - ids.shape[1])))
  return ids.astype(np.int32)


def mine_from_ranker(ex: dict, rows: np.ndarray,
                     retrieve: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
                     score: Callable[[dict, np.ndarray], np.ndarray], *, m: int, h: int,
                     pos_user: np.ndarray, pos_item: np.ndarray) -> np.ndarray:
  """hard_item [N, h] int32 for the RETRIEVAL_API examples ex (N rows): rows [n] are mined
  (two-tower top-m -> ranker scores -> `mine`), every other row is 0 (none)."""
  sub = {k: ex[k][rows] for k in ('user_id', 'hist_item', 'hist_cate', 'item_id')}
  sub['target'] = sub['item_id']
  cand = np.asarray(retrieve(sub['hist_item'], sub['user_id'], m))
  scores = np.asarray(score(sub, cand)).reshape(cand.shape)
  out = np.zeros((len(ex['item_id']), h), np.int32)
  out[rows] = mine(cand, scores, sub['hist_item'], sub['user_id'], pos_user, pos_item,
                   len(ex['cate_of_item']), h)
  return out
