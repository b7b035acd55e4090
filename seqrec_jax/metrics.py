"""Ranking metrics on host numpy arrays: AUC, GAUC (DIN eq. 10), logloss, RelaImpr."""
from __future__ import annotations

import numpy as np


def _avg_ranks_sorted(keys_equal_prev: np.ndarray) -> np.ndarray:
  """1-based average ranks for an already sorted array, given where a key equals its predecessor."""
  n = len(keys_equal_prev)
  starts = np.flatnonzero(~keys_equal_prev)          # first index of each tie block
  ends = np.append(starts[1:], n)                    # one past the last index
  avg = (starts + ends + 1) / 2.0                    # mean of ranks starts+1 .. ends
  return np.repeat(avg, ends - starts)


def auc(labels, scores) -> float:
  """Area under the ROC curve with ties counted as 1/2 (Mann-Whitney U). NaN if one class."""
  y = np.asarray(labels, dtype=np.float64).ravel()
  s = np.asarray(scores, dtype=np.float64).ravel()
  n_pos = y.sum()
  n_neg = len(y) - n_pos
  if n_pos == 0 or n_neg == 0:
    return float('nan')
  order = np.argsort(s, kind='mergesort')
  s_sorted = s[order]
  same = np.concatenate([[False], s_sorted[1:] == s_sorted[:-1]])
  ranks = _avg_ranks_sorted(same)
  r_pos = ranks[y[order] > 0.5].sum()
  return float((r_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def gauc(labels, scores, groups) -> float:
  """User-weighted AUC (DIN paper eq. 10): sum_u n_u * AUC_u / sum_u n_u.

  n_u is the user's number of impressions; users whose impressions are all of one class have
  no AUC and are skipped (in numerator and denominator). NaN if no user has both classes.
  """
  y = np.asarray(labels, dtype=np.float64).ravel()
  s = np.asarray(scores, dtype=np.float64).ravel()
  g = np.asarray(groups).ravel()
  if len(y) == 0:
    return float('nan')
  order = np.lexsort((s, g))
  y, s, g = y[order], s[order], g[order]
  new_group = np.concatenate([[True], g[1:] != g[:-1]])
  same = np.concatenate([[False], (s[1:] == s[:-1]) & ~new_group[1:]])
  ranks = _avg_ranks_sorted(same)                    # global ranks; ties only within a group
  gstart = np.flatnonzero(new_group)
  size = np.diff(np.append(gstart, len(y)))
  local = ranks - np.repeat(gstart, size)            # 1-based rank inside the group
  n_pos = np.add.reduceat(y, gstart)
  n_neg = size - n_pos
  r_pos = np.add.reduceat(local * y, gstart)
  ok = (n_pos > 0) & (n_neg > 0)
  if not ok.any():
    return float('nan')
  auc_u = (r_pos[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
  return float((size[ok] * auc_u).sum() / size[ok].sum())


def logloss(labels, probs, eps: float = 1e-7) -> float:
  y = np.asarray(labels, dtype=np.float64).ravel()
  p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), eps, 1 - eps)
  return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def mse(labels, preds) -> float:
  y = np.asarray(labels, dtype=np.float64).ravel()
  return float(((np.asarray(preds, dtype=np.float64).ravel() - y) ** 2).mean())


def rela_impr(auc_model: float, auc_base: float) -> float:
  """RelaImpr in percent: ((AUC_model - 0.5) / (AUC_base - 0.5) - 1) * 100."""
  return float(((auc_model - 0.5) / (auc_base - 0.5) - 1.0) * 100.0)


def binary_metrics(labels, probs, users=None) -> dict[str, float]:
  out = {'auc': auc(labels, probs), 'logloss': logloss(labels, probs)}
  if users is not None:
    out['gauc'] = gauc(labels, probs, users)
  return out
