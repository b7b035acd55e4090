"""ItemCF: item-item cosine on the user-item matrix, top-k neighbours per item, queried by history.

Offline (`ItemCF.fit`): the binary train matrix R [U, I] (a repeated (user, item) counts once),
  sim(i, j) = |N(i) ∩ N(j)| / sqrt(|N(i)| |N(j)|)      (N(i): the users of item i; i != j)
kept as a neighbour table: the top_k_neighbours j of every item i by sim (ties: smaller id),
positive sims only, 0-padded. Online (`NeighbourChannel.retrieve`, shared by Swing): a user's
newest last_n history items j, each weighted decay^age (age 0 = newest), vote for their
neighbours i,
  score(u, i) = sum_j decay^age(j) sim(j, i)     (over the table's entries only)
and the top-N by score is returned, history and item 0 excluded. Items no history item reaches
are never returned (0 / -inf fill the slots), as the Channel contract (docs/RETRIEVAL_API) asks.
Sparse work is scipy.sparse; queries are scored a chunk of users at a time in a dense [B, I]
block (np.bincount of the votes), whose top-k is np.partition's k-th value as a threshold and a
stable per-row sort of the k entries it selects.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp


def interaction_matrix(user, item, num_users: int, num_items: int) -> sp.csr_matrix:
  """user, item [N] -> binary R [num_users, num_items] float32 (csr, duplicates count once)."""
  user, item = np.asarray(user, np.int64), np.asarray(item, np.int64)
  if user.shape != item.shape or user.ndim != 1:
    raise ValueError(f'interaction_matrix: user {user.shape} and item {item.shape} must be [N]')
  for name, a, n in (('user', user, num_users), ('item', item, num_items)):
    if len(a) and (a.min() < 0 or a.max() >= n):
      raise ValueError(f'interaction_matrix: {name} ids span [{a.min()}, {a.max()}], outside '
                       f'[0, num_{name}s={n})')
  r = sp.csr_matrix((np.ones(len(user), np.float32), (user, item)), shape=(num_users, num_items))
  r.sum_duplicates()
  r.data[:] = 1.0
  return r


def dense_top_k(d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """d [B, I] scores, -inf = not a candidate -> the k best per row (ties: smaller id) as
  (ids [B, k] int32, scores [B, k] float32), 0 / -inf where a row has fewer than k."""
  n_rows, n_cols = d.shape
  if k < 1:
    raise ValueError(f'top-k: k={k} must be >= 1')
  kk = min(k, n_cols)
  # The k-th largest value of each row: take every finite entry above it, then the entries
  # equal to it with the smallest ids until k are taken; a stable sort of those by -score
  # keeps ascending ids within ties.
  kth = -np.partition(-d, kk - 1, axis=1)[:, kk - 1:kk]
  finite = d > -np.inf
  above, tied = (d > kth) & finite, (d == kth) & finite
  need = kk - above.sum(1, keepdims=True)
  sel = above | tied
  over = tied.sum(1) > need[:, 0]                    # rows with more ties than free slots
  if over.any():
    sel[over] = above[over] | (tied[over] & (np.cumsum(tied[over], axis=1) <= need[over]))
  rows, cols = np.nonzero(sel)
  n_sel = sel.sum(1)
  pos = np.arange(len(rows)) - np.repeat(np.cumsum(n_sel) - n_sel, n_sel)
  ids = np.zeros((n_rows, k), np.int32)
  vals = np.full((n_rows, k), -np.inf)
  ids[rows, pos], vals[rows, pos] = cols, d[rows, cols]
  order = np.argsort(-vals, axis=1, kind='stable')
  return (np.take_along_axis(ids, order, 1),
          np.take_along_axis(vals, order, 1).astype(np.float32))


def _mask_row_ids(d: np.ndarray, ids: np.ndarray | None) -> None:
  """Sets d[r, ids[r]] = -inf in place (ids [B, L], 0 included: column 0 is never returned)."""
  d[:, 0] = -np.inf
  if ids is not None:
    d[np.arange(len(d))[:, None], ids] = -np.inf


def _chunks(n_rows: int, n_cols: int, elems: int = 1 << 20):
  """Row ranges [lo, hi) of about `elems` entries of a [n_rows, n_cols] dense block each."""
  b = max(1, elems // max(n_cols, 1))
  return [(lo, min(lo + b, n_rows)) for lo in range(0, n_rows, b)]


def _check_exclude(exclude, n_rows, n_cols, where):
  if exclude is None:
    return None
  exclude = np.asarray(exclude, np.int64)
  if exclude.ndim != 2 or len(exclude) != n_rows:
    raise ValueError(f'{where}: exclude {exclude.shape} must be [{n_rows}, L]')
  if exclude.size and (exclude.min() < 0 or exclude.max() >= n_cols):
    raise ValueError(f'{where}: exclude ids span [{exclude.min()}, {exclude.max()}], outside '
                     f'[0, {n_cols})')
  return exclude


def sparse_top_k(scores: sp.spmatrix, k: int, exclude: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Per row, the k best stored entries of scores [U, I] (ties: smaller id first), never column
  0 nor the ids in exclude [U, L] (0 = none) -> (ids [U, k] int32, scores [U, k] float32), 0 /
  -inf where fewer than k entries remain. Only stored entries are candidates; rows are made
  dense a chunk at a time."""
  s = sp.csr_matrix(scores)
  s.sum_duplicates()
  n_rows, n_cols = s.shape
  exclude = _check_exclude(exclude, n_rows, n_cols, 'sparse_top_k')
  ids, out = np.zeros((n_rows, k), np.int32), np.full((n_rows, k), -np.inf, np.float32)
  for lo, hi in _chunks(n_rows, n_cols):
    blk = s[lo:hi]
    d = np.full((hi - lo, n_cols), -np.inf)
    d[np.repeat(np.arange(hi - lo), np.diff(blk.indptr)), blk.indices] = blk.data
    _mask_row_ids(d, None if exclude is None else exclude[lo:hi])
    ids[lo:hi], out[lo:hi] = dense_top_k(d, k)
  return ids, out


def neighbour_table(sim_rows: Callable[[int, int], np.ndarray], num_items: int, k: int,
                    block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
  """Top-k neighbours of every item from sim_rows(lo, hi) -> dense sim [hi - lo, num_items]
  (computed block by block, so the [I, I] matrix is never held) -> (ids [I, k] int32,
  sims [I, k] float32); row 0 (padding) is empty; item 0 and the item itself never listed."""
  ids = np.zeros((num_items, k), np.int32)
  sims = np.zeros((num_items, k), np.float32)
  for lo in range(1, num_items, block):
    hi = min(lo + block, num_items)
    s = np.array(sim_rows(lo, hi), np.float32)
    s[s <= 0] = -np.inf
    _mask_row_ids(s, np.arange(lo, hi)[:, None])           # the item itself
    i, v = dense_top_k(s, k)
    ids[lo:hi], sims[lo:hi] = i, np.where(i > 0, v, 0.0)
  return ids, sims


def last_n_items(hist_item: np.ndarray, last_n: int) -> np.ndarray:
  """hist_item [U, L] right-aligned -> its newest last_n columns [U, min(L, last_n)]."""
  hist_item = np.asarray(hist_item)
  if hist_item.ndim != 2:
    raise ValueError(f'hist_item {hist_item.shape} must be [U, L] (right-aligned, 0-padded)')
  return hist_item[:, max(hist_item.shape[1] - last_n, 0):]


class NeighbourChannel:
  """A retrieval channel over an item -> neighbour table (ItemCF, Swing).

  nbr_ids / nbr_sim [I, K]: item j's neighbours and sims (0-padded). last_n: history items
  that vote; decay: weight decay^age of a vote (age 0 = newest; 1.0 = plain sum).
  """
  name = 'neighbours'

  def __init__(self, nbr_ids: np.ndarray, nbr_sim: np.ndarray, *, last_n: int = 20,
               decay: float = 1.0, name: str | None = None):
    self.nbr_ids = np.asarray(nbr_ids, np.int32)
    self.nbr_sim = np.asarray(nbr_sim, np.float32)
    if self.nbr_ids.shape != self.nbr_sim.shape or self.nbr_ids.ndim != 2:
      raise ValueError(f'{type(self).__name__}: nbr_ids {self.nbr_ids.shape} and nbr_sim '
                       f'{self.nbr_sim.shape} must both be [I, K]')
    if last_n < 1 or not 0.0 < decay <= 1.0:
      raise ValueError(f'{type(self).__name__}: last_n={last_n} must be >= 1 and decay={decay} '
                       'in (0, 1]')
    self.last_n, self.decay = int(last_n), float(decay)
    if name is not None:
      self.name = name

  @property
  def num_items(self) -> int:
    return len(self.nbr_ids)

  def dense_scores(self, hist_item: np.ndarray) -> np.ndarray:
    """hist_item [B, L] -> score(u, i) [B, I] float64, -inf where no history item reaches i."""
    h = last_n_items(hist_item, self.last_n).astype(np.int64)
    if h.size and (h.min() < 0 or h.max() >= self.num_items):
      raise ValueError(f'{self.name}: history ids span [{h.min()}, {h.max()}], outside the '
                       f'table\'s [0, {self.num_items})')
    n_rows, n = h.shape
    w = self.decay ** np.arange(n - 1, -1, -1, dtype=np.float64)          # [n], newest last
    cols = self.nbr_ids[h].astype(np.int64)                                 # [B, n, K]
    vals = self.nbr_sim[h] * (w[None, :, None] * (h > 0)[:, :, None])
    flat = (np.arange(n_rows)[:, None, None] * self.num_items + cols)[cols > 0]
    size = n_rows * self.num_items
    d = np.bincount(flat, vals[cols > 0], minlength=size).reshape(n_rows, -1)
    reached = np.bincount(flat, minlength=size).reshape(n_rows, -1) > 0
    return np.where(reached, d, -np.inf)

  def retrieve(self, hist_item, k: int, *, user_id=None, exclude_history: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
    """hist_item [U, L] int32 -> (ids [U, k] int32, scores [U, k] float32), best first."""
    del user_id
    hist_item = np.asarray(hist_item)
    n_rows = len(hist_item)
    ids, out = np.zeros((n_rows, k), np.int32), np.full((n_rows, k), -np.inf, np.float32)
    for lo, hi in _chunks(n_rows, self.num_items):
      d = self.dense_scores(hist_item[lo:hi])
      _mask_row_ids(d, hist_item[lo:hi] if exclude_history else None)
      ids[lo:hi], out[lo:hi] = dense_top_k(d, k)
    return ids, out


class ItemCF(NeighbourChannel):
  """Item-item cosine neighbours (module docstring)."""
  name = 'itemcf'

  @classmethod
  def fit(cls, user, item, num_users: int, num_items: int, *, top_k_neighbours: int = 100,
          last_n: int = 20, decay: float = 1.0, block: int = 1024) -> 'ItemCF':
    """user, item [N] train interactions (ids < num_users / num_items) -> the channel."""
    nbr_ids, nbr_sim = cosine_neighbours(interaction_matrix(user, item, num_users, num_items),
                                         top_k_neighbours, block)
    return cls(nbr_ids, nbr_sim, last_n=last_n, decay=decay)


def cosine_neighbours(r: sp.csr_matrix, k: int, block: int = 1024
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Binary R [U, I] -> the cosine top-k table (ids [I, k], sims [I, k])."""
  rt = r.T.tocsr()
  n = np.asarray(r.sum(0)).ravel()
  inv = np.where(n > 0, 1.0 / np.sqrt(np.maximum(n, 1.0)), 0.0).astype(np.float32)

  def sim_rows(lo, hi):
    co = (rt[lo:hi] @ r).toarray()            # |N(i) ∩ N(j)| for i in [lo, hi)
    return co * inv[lo:hi, None] * inv[None, :]
  return neighbour_table(sim_rows, r.shape[1], k, block)
