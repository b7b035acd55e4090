"""Top-K list metrics against held-out items: recall@K, NDCG@K, HR@K.

ids [U, K'] are each user's list, best first (0 = empty slot, never a hit); target is [U] (one
held-out item per user, leave-last-out) or [U, T] (several, 0-padded). Per-user values are
returned by the `*_per_user` functions (for paired comparisons); the plain functions average
over users.
  recall@K = |top-K & targets| / |targets|
  HR@K     = 1 if any target is in the top-K
  NDCG@K   = sum over hits of 1 / log2(rank + 2) (rank 0 = first), divided by the ideal DCG
             of min(|targets|, K) hits at the top
With one target, recall@K = HR@K and NDCG@K = 1 / log2(rank + 2) when it is ranked within K.
"""
from __future__ import annotations

import numpy as np


def _hits(ids, target, k: int | None) -> tuple[np.ndarray, np.ndarray]:
  """(hit [U, K] bool: the slot holds a target, n_targets [U])."""
  ids = np.asarray(ids)
  target = np.asarray(target)
  if target.ndim == 1:
    target = target[:, None]
  if ids.ndim != 2 or target.ndim != 2 or len(ids) != len(target):
    raise ValueError(f'ids {ids.shape} must be [U, K] and target {target.shape} [U] or [U, T] '
                     'with the same U')
  if k is not None:
    if k < 1:
      raise ValueError(f'k={k} must be >= 1')
    ids = ids[:, :k]
  hit = (ids[:, :, None] == target[:, None, :]) & (target[:, None, :] > 0) & (
      ids[:, :, None] > 0)
  # A target listed twice counts once: keep the first slot of each target.
  first = hit & (np.cumsum(hit, axis=1) == 1)
  return first.any(-1), (target > 0).sum(-1)


def recall_per_user(ids, target, k: int | None = None) -> np.ndarray:
  hit, n = _hits(ids, target, k)
  return np.where(n > 0, hit.sum(1) / np.maximum(n, 1), 0.0)


def hit_rate_per_user(ids, target, k: int | None = None) -> np.ndarray:
  hit, _ = _hits(ids, target, k)
  return hit.any(1).astype(np.float64)


def ndcg_per_user(ids, target, k: int | None = None) -> np.ndarray:
  hit, n = _hits(ids, target, k)
  disc = 1.0 / np.log2(np.arange(hit.shape[1]) + 2.0)
  dcg = (hit * disc).sum(1)
  ideal = np.cumsum(disc)[np.clip(np.minimum(n, hit.shape[1]) - 1, 0, None)]
  return np.where(n > 0, dcg / ideal, 0.0)


def recall_at_k(ids, target, k: int | None = None) -> float:
  return float(np.mean(recall_per_user(ids, target, k)))


def hit_rate(ids, target, k: int | None = None) -> float:
  return float(np.mean(hit_rate_per_user(ids, target, k)))


def ndcg_at_k(ids, target, k: int | None = None) -> float:
  return float(np.mean(ndcg_per_user(ids, target, k)))


def top_k_positions(ids, scores, k: int) -> np.ndarray:
  """ids [U, C], scores [U, C] -> the columns [U, k] of the k best candidates (stable: ties
  keep the candidates' order; id-0 slots go last)."""
  s = np.where(np.asarray(ids) > 0, np.asarray(scores, np.float64), -np.inf)
  return np.argsort(-s, axis=1, kind='stable')[:, :k]


def top_k(ids, scores, k: int) -> np.ndarray:
  """Re-ranks each user's candidates: ids [U, C], scores [U, C] -> the k best ids [U, k]
  (top_k_positions' order)."""
  return np.take_along_axis(np.asarray(ids), top_k_positions(ids, scores, k), 1)
