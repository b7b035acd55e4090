"""ItemIndex: precomputed item vectors and top-k retrieval by inner product.

  scores = user_vectors [U, D] @ item_vectors[I, D].T     (cosine if both sides are normalised)
  method='exact'  : jax.lax.top_k over the scores (ties: the smaller id first, XLA's order)
  method='approx' : jax.lax.approx_max_k(scores, k, recall_target) -- the partial-reduce top-k
                    that runs fast on TPU; on CPU/GPU XLA may compute it exactly.
Column 0 (padding) and each user's excluded ids are set to -inf before the top-k, so they are
never returned; slots that only -inf could fill come back as id 0 / score -inf. Users are scored
in chunks of `chunk` rows (the last one padded, so one compiled shape serves every call).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

METHODS = ('exact', 'approx')


@functools.partial(jax.jit, static_argnames=('k', 'method', 'recall_target'))
def _top_k(u, v, exclude, *, k, method, recall_target):
  """u [B, D], v [I, D], exclude [B, n] int32 -> (ids [B, k] int32, scores [B, k] float32)."""
  s = jnp.dot(u, v.T, preferred_element_type=jnp.float32)
  s = s.at[:, 0].set(-jnp.inf)
  rows = jnp.broadcast_to(jnp.arange(u.shape[0])[:, None], exclude.shape)
  s = s.at[rows, exclude].set(-jnp.inf)        # id 0 in exclude hits the padding column again
  if method == 'exact':
    scores, ids = jax.lax.top_k(s, k)
  else:
    scores, ids = jax.lax.approx_max_k(s, k, recall_target=recall_target)
  return jnp.where(jnp.isfinite(scores), ids, 0).astype(jnp.int32), scores


class ItemIndex:
  """item_vectors [I, D] (row 0 = padding, never returned), held on the default device."""

  def __init__(self, item_vectors, *, method: str = 'exact', recall_target: float = 0.95,
               chunk: int = 1024):
    if method not in METHODS:
      raise ValueError(f'ItemIndex: method={method!r}; choose one of {METHODS}')
    if not 0.0 < recall_target <= 1.0:
      raise ValueError(f'ItemIndex: recall_target={recall_target} must be in (0, 1]')
    v = np.asarray(item_vectors, np.float32)
    if v.ndim != 2 or len(v) < 2:
      raise ValueError(f'ItemIndex: item_vectors {v.shape} must be [I >= 2, D]')
    self.item_vectors = jax.device_put(v)
    self.method, self.recall_target, self.chunk = method, float(recall_target), int(chunk)

  @property
  def num_items(self) -> int:
    return int(self.item_vectors.shape[0])

  def top_k(self, user_vectors, k: int, *, exclude: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """user_vectors [U, D], exclude [U, n] int ids (0 = none) -> (ids [U, k] int32,
    scores [U, k] float32), best first."""
    u = np.asarray(user_vectors, np.float32)
    if u.ndim != 2 or u.shape[1] != self.item_vectors.shape[1]:
      raise ValueError(f'ItemIndex.top_k: user_vectors {u.shape} must be '
                       f'[U, {self.item_vectors.shape[1]}]')
    if not 0 < k < self.num_items:
      raise ValueError(f'ItemIndex.top_k: k={k} must be in [1, {self.num_items - 1}]')
    ex = np.zeros((len(u), 1), np.int32) if exclude is None else np.asarray(exclude, np.int32)
    if ex.ndim != 2 or len(ex) != len(u):
      raise ValueError(f'ItemIndex.top_k: exclude {ex.shape} must be [{len(u)}, n]')
    if ex.size and (ex.min() < 0 or ex.max() >= self.num_items):
      raise ValueError(f'ItemIndex.top_k: exclude ids span [{ex.min()}, {ex.max()}], outside '
                       f'[0, {self.num_items})')
    b = min(self.chunk, max(len(u), 1))
    ids, scores = [], []
    for lo in range(0, len(u), b):
      uu, ee = u[lo:lo + b], ex[lo:lo + b]
      pad = b - len(uu)
      i, s = _top_k(np.pad(uu, ((0, pad), (0, 0))), self.item_vectors,
                    np.pad(ee, ((0, pad), (0, 0))), k=int(k), method=self.method,
                    recall_target=self.recall_target)
      ids.append(np.asarray(i)[:len(uu)])
      scores.append(np.asarray(s)[:len(uu)])
    if not ids:
      return np.zeros((0, k), np.int32), np.zeros((0, k), np.float32)
    return np.concatenate(ids), np.concatenate(scores)
