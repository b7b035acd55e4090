"""Popularity channel: the most frequent train items not yet in the user's history.

The baseline every retrieval channel and the whole funnel must beat; also the fallback a feed
serves a user without history. Implements the Channel contract of docs/RETRIEVAL_API
(retrieve(hist_item [U, L], k) -> ids [U, k], scores [U, k]).
"""
from __future__ import annotations

import numpy as np


class Popularity:
  """Ranks items by train count (ties: smaller id first); scores are the counts."""
  name = 'popularity'

  def __init__(self, item_count: np.ndarray):
    """item_count [I]: train occurrences per item id (item 0 = padding, never returned)."""
    c = np.asarray(item_count, np.float64).copy()
    c[0] = -np.inf
    self.count = c
    self.order = np.lexsort((np.arange(len(c)), -c))        # best first
    self.order = self.order[np.isfinite(c[self.order])]

  @classmethod
  def fit(cls, user, item, num_users: int, num_items: int) -> 'Popularity':
    del user, num_users
    return cls(np.bincount(np.asarray(item), minlength=num_items))

  def retrieve(self, hist_item, k: int, *, user_id=None, exclude_history: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
    del user_id
    hist_item = np.asarray(hist_item)
    U, L = hist_item.shape
    n = min(len(self.order), k + (L if exclude_history else 0))
    cand = np.broadcast_to(self.order[:n], (U, n))
    if exclude_history:
      keep = ~(cand[:, :, None] == hist_item[:, None, :]).any(-1)
    else:
      keep = np.ones(cand.shape, bool)
    # Stable: the kept candidates first, in popularity order.
    pos = np.argsort(~keep, axis=1, kind='stable')[:, :k]
    ids = np.take_along_axis(cand, pos, 1)
    ok = np.take_along_axis(keep, pos, 1)
    ids = np.where(ok, ids, 0).astype(np.int32)
    scores = np.where(ok, self.count[ids], -np.inf).astype(np.float32)
    if ids.shape[1] < k:
      pad = k - ids.shape[1]
      ids = np.pad(ids, ((0, 0), (0, pad)))
      scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return ids, scores
