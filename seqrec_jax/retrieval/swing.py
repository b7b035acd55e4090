"""Swing (Yang et al. 2020, Alibaba): item-item similarity from user pairs, against small circles.

  sim(i, j) = sum over ordered pairs u != v in U_i ∩ U_j of  w_u w_v / (alpha + |I_u ∩ I_v|)
  w_u = (|I_u| + user_offset) ** -user_power            (user_power = 0: plain Swing, w = 1)
U_i: the users of item i, I_u: the items of user u (binary train matrix). Two users who share
many items (a small circle: one household, one fan club) add little to each of their common
pairs; two otherwise different users who both took i and j are strong evidence. The activity
weight w_u damps heavy users further. Queried like ItemCF (itemcf.NeighbourChannel: top-k
neighbour table, last-n history votes, history excluded).

Build, exactly and without the [I, I] matrix in one piece. Every user pair u < v that shares
an item is a row of the sparse pair matrix Z [P, I], Z[(u, v), i] = R[u, i] R[v, i], found from
the item side (all user pairs of every item: sum_i |U_i|^2 / 2 triples, no [U, U] matrix); the
row count is C_uv = |I_u ∩ I_v|, and pairs with C_uv < 2 (no common pair i != j) are dropped.
Then, item rows in blocks,
  sim[block, :] = 2 Z[:, block]^T diag(a) Z,   a_(u,v) = w_u w_v / (alpha + C_uv)
(one scipy sparse product per block; 2 for the ordered pairs). Cost: sum over user pairs of
C_uv^2 multiply-adds.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from seqrec_jax.retrieval.itemcf import NeighbourChannel, interaction_matrix, neighbour_table


def pair_matrices(r, *, alpha: float = 1.0, user_power: float = 0.0, user_offset: float = 5.0):
  """Binary R [U, I] (csr) -> (Z^T [I, P] csr, diag(a) Z [P, I] csr) of the module docstring."""
  rc = r.tocsc()
  rc.sort_indices()
  n_users, n_items = r.shape
  per_item = np.diff(rc.indptr)
  item_of = np.repeat(np.arange(n_items), per_item)
  # Every entry pairs with the later entries of its item's user list (sorted: u < v).
  after = np.repeat(rc.indptr[1:], per_item) - np.arange(rc.nnz) - 1
  first = np.repeat(np.arange(rc.nnz), after)
  second = first + 1 + np.arange(len(first)) - np.repeat(np.cumsum(after) - after, after)
  u, v = rc.indices[first].astype(np.int64), rc.indices[second].astype(np.int64)
  pair, row = np.unique(u * n_users + v, return_inverse=True)
  c = np.bincount(row, minlength=len(pair))                 # C_uv = |I_u ∩ I_v|
  n_u = np.diff(r.indptr)
  w = (n_u + user_offset) ** -float(user_power)
  a = w[pair // n_users] * w[pair % n_users] / (alpha + c)
  keep = c[row] >= 2
  row, item = row[keep], item_of[first][keep]
  shape = (len(pair), n_items)
  z = sp.csr_matrix((np.ones(len(row)), (row, item)), shape=shape)
  return z.T.tocsr(), sp.csr_matrix((a[row], (row, item)), shape=shape)


class Swing(NeighbourChannel):
  """Swing neighbours (module docstring) as a retrieval channel."""
  name = 'swing'

  @classmethod
  def fit(cls, user, item, num_users: int, num_items: int, *, top_k_neighbours: int = 100,
          last_n: int = 20, decay: float = 1.0, alpha: float = 1.0, user_power: float = 0.0,
          user_offset: float = 5.0, block: int | None = None) -> 'Swing':
    """user, item [N] train interactions -> the channel; block: item rows per step (default:
    as many as keep a [block, I] float64 block near 256 MB)."""
    if alpha <= 0 or user_power < 0 or user_offset < 0:
      raise ValueError(f'Swing.fit: alpha={alpha} must be > 0, user_power={user_power} and '
                       f'user_offset={user_offset} >= 0')
    r = interaction_matrix(user, item, num_users, num_items)
    zt, az = pair_matrices(r, alpha=alpha, user_power=user_power, user_offset=user_offset)
    block = block or max(1, (1 << 25) // max(num_items, 1))
    nbr_ids, nbr_sim = neighbour_table(lambda lo, hi: 2.0 * (zt[lo:hi] @ az).toarray(),
                                       num_items, top_k_neighbours, block)
    return cls(nbr_ids, nbr_sim, last_n=last_n, decay=decay)
