"""UserCF with popular-item down-weighting (the "IIF" user similarity).

  sim(u, v) = sum over i in N(u) ∩ N(v) of 1 / log(1 + |N(i)|)  /  sqrt(|N(u)| |N(v)|)
N(u): the items of user u, N(i): the users of item i (binary train matrix). A blockbuster
everyone watched says little about two users' taste; log(1 + |N(i)|) discounts it.
Offline (`UserCF.fit`): the top_k_neighbours users v of every user by sim (ties: smaller id).
Online (`retrieve`): with a known user_id, that user's neighbour row; otherwise (user_id None,
0, or a user absent from train) the neighbours of the request's own newest last_n history
items, by the same formula. Then
  score(u, i) = sum over neighbours v of sim(u, v) R[v, i]
top-N by score, history and item 0 excluded, 0 / -inf where fewer items are reached.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from seqrec_jax.retrieval.itemcf import (_chunks, _mask_row_ids, dense_top_k,
                                         interaction_matrix, last_n_items, sparse_top_k)


class UserCF:
  """r [U, I] binary csr (train), nbr_ids / nbr_sim [U, K] the user neighbour table."""
  name = 'usercf'

  def __init__(self, r: sp.csr_matrix, nbr_ids: np.ndarray, nbr_sim: np.ndarray, *,
               last_n: int | None = None, name: str | None = None):
    self.r = sp.csr_matrix(r, dtype=np.float32)
    self.nbr_ids = np.asarray(nbr_ids, np.int32)
    self.nbr_sim = np.asarray(nbr_sim, np.float32)
    if self.nbr_ids.shape != self.nbr_sim.shape or len(self.nbr_ids) != self.r.shape[0]:
      raise ValueError(f'UserCF: nbr_ids {self.nbr_ids.shape} / nbr_sim {self.nbr_sim.shape} '
                       f'must be [U={self.r.shape[0]}, K]')
    n_i = np.asarray(self.r.sum(0)).ravel()
    self.iif = np.where(n_i > 0, 1.0 / np.log1p(np.maximum(n_i, 1.0)), 0.0)
    n_u = np.asarray(self.r.sum(1)).ravel()
    self.inv_norm = np.where(n_u > 0, 1.0 / np.sqrt(np.maximum(n_u, 1.0)), 0.0)
    self.last_n = last_n
    if name is not None:
      self.name = name

  @classmethod
  def fit(cls, user, item, num_users: int, num_items: int, *, top_k_neighbours: int = 50,
          last_n: int | None = None) -> 'UserCF':
    """user, item [N] train interactions -> the channel (last_n: history items that define a
    request's neighbours when its user_id is unknown; None = all)."""
    r = interaction_matrix(user, item, num_users, num_items)
    empty = np.zeros((num_users, top_k_neighbours), np.int32)
    ch = cls(r, empty, empty.astype(np.float32), last_n=last_n)
    ch.nbr_ids, ch.nbr_sim = ch.neighbours(r, top_k_neighbours, self_ids=np.arange(num_users))
    return ch

  @property
  def num_items(self) -> int:
    return self.r.shape[1]

  def neighbours(self, q: sp.csr_matrix, k: int, self_ids: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """q [B, I] binary item sets -> their top-k train users by sim (never user 0 nor
    self_ids [B]) as (ids [B, k] int32, sims [B, k] float32), 0-padded."""
    q = sp.csr_matrix(q, dtype=np.float64)
    n_q = np.asarray(q.sum(1)).ravel()
    inv_q = np.where(n_q > 0, 1.0 / np.sqrt(np.maximum(n_q, 1.0)), 0.0)
    s = sp.csr_matrix(q.multiply(self.iif[None, :])) @ self.r.T           # [B, U]
    ids = np.zeros((q.shape[0], k), np.int32)
    sims = np.zeros((q.shape[0], k), np.float32)
    for lo, hi in _chunks(q.shape[0], self.r.shape[0]):
      d = s[lo:hi].toarray() * inv_q[lo:hi, None] * self.inv_norm[None, :]
      d[d <= 0] = -np.inf
      _mask_row_ids(d, None if self_ids is None else self_ids[lo:hi, None])
      i, v = dense_top_k(d, k)
      ids[lo:hi], sims[lo:hi] = i, np.where(i > 0, v, 0.0)
    return ids, sims

  def retrieve(self, hist_item, k: int, *, user_id=None, exclude_history: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
    """hist_item [U, L] int32 (user_id [U] optional) -> (ids [U, k] int32, scores [U, k]
    float32), best first."""
    hist_item = np.asarray(hist_item, np.int64)
    if hist_item.ndim != 2:
      raise ValueError(f'{self.name}: hist_item {hist_item.shape} must be [U, L]')
    if hist_item.size and (hist_item.min() < 0 or hist_item.max() >= self.num_items):
      raise ValueError(f'{self.name}: history ids span [{hist_item.min()}, {hist_item.max()}], '
                       f'outside [0, {self.num_items})')
    n_rows = len(hist_item)
    uid = np.zeros(n_rows, np.int64) if user_id is None else np.asarray(user_id, np.int64)
    if uid.shape != (n_rows,):
      raise ValueError(f'{self.name}: user_id {uid.shape} must be [{n_rows}]')
    known = (uid > 0) & (uid < len(self.nbr_ids))
    known[known] = self.nbr_ids[uid[known], 0] > 0
    nbr = np.zeros((n_rows, self.nbr_ids.shape[1]), np.int32)
    sim = np.zeros(nbr.shape, np.float32)
    nbr[known], sim[known] = self.nbr_ids[uid[known]], self.nbr_sim[uid[known]]
    if (~known).any():
      h = hist_item[~known]
      h = h if self.last_n is None else last_n_items(h, self.last_n)
      rows = np.broadcast_to(np.arange(len(h))[:, None], h.shape)
      q = interaction_matrix(rows[h > 0], h[h > 0], len(h), self.num_items)
      nbr[~known], sim[~known] = self.neighbours(q, nbr.shape[1])
    rows = np.broadcast_to(np.arange(n_rows)[:, None], nbr.shape)
    ok = nbr > 0
    s = sp.csr_matrix((sim[ok], (rows[ok], nbr[ok])), shape=(n_rows, self.r.shape[0]))
    return sparse_top_k(s @ self.r, k, hist_item if exclude_history else None)
