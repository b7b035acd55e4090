"""Ranking metrics on host numpy arrays: AUC, GAUC (DIN eq. 10), logloss, RelaImpr, and the
confidence intervals studies use to say which differences are resolved."""
from __future__ import annotations

import numpy as np
from scipy import stats


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


def _per_group_auc(labels, scores, groups):
  """Per-group AUC pieces: (group ids [G], impressions n_u [G], AUC_u [G], has both classes [G]).

  AUC_u is 0 where a group has one class only (`ok` False); those groups carry no GAUC weight.
  """
  y = np.asarray(labels, dtype=np.float64).ravel()
  s = np.asarray(scores, dtype=np.float64).ravel()
  g = np.asarray(groups).ravel()
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
  with np.errstate(divide='ignore', invalid='ignore'):
    auc_u = np.where(ok, (r_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg), 0.0)
  return g[gstart], size, auc_u, ok


def gauc(labels, scores, groups) -> float:
  """User-weighted AUC (DIN paper eq. 10): sum_u n_u * AUC_u / sum_u n_u.

  n_u is the user's number of impressions; users whose impressions are all of one class have
  no AUC and are skipped (in numerator and denominator). NaN if no user has both classes.
  """
  if np.asarray(labels).size == 0:
    return float('nan')
  _, size, auc_u, ok = _per_group_auc(labels, scores, groups)
  if not ok.any():
    return float('nan')
  return float((size[ok] * auc_u[ok]).sum() / size[ok].sum())


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


def mae(labels, preds) -> float:
  y = np.asarray(labels, dtype=np.float64).ravel()
  return float(np.abs(np.asarray(preds, dtype=np.float64).ravel() - y).mean())


def spearman(labels, preds) -> float:
  """Spearman rank correlation (average ranks for ties); NaN if either side is constant."""
  y = np.asarray(labels, dtype=np.float64).ravel()
  p = np.asarray(preds, dtype=np.float64).ravel()
  if len(y) < 2 or np.all(y == y[0]) or np.all(p == p[0]):
    return float('nan')
  return float(stats.spearmanr(y, p).statistic)


def _tied_pairs(x: np.ndarray) -> float:
  _, counts = np.unique(x, return_counts=True)
  return float((counts * (counts - 1) / 2).sum())


def order_auc(labels, preds) -> float:
  """AUC-style ordering of a continuous target (Harrell's C): over all pairs with different
  labels, the fraction whose predictions are ordered as the labels (prediction ties count 1/2).
  Equals `auc` for 0/1 labels. O(n log n): C = (1 + (P - Q) / (n0 - n_y)) / 2, with P - Q
  (concordant minus discordant pairs) from scipy's Kendall tau-b. NaN if all labels are equal."""
  y = np.asarray(labels, dtype=np.float64).ravel()
  p = np.asarray(preds, dtype=np.float64).ravel()
  n0 = len(y) * (len(y) - 1) / 2
  ty, tp = _tied_pairs(y), _tied_pairs(p)
  if n0 - ty == 0:
    return float('nan')
  if n0 - tp == 0:
    return 0.5                                       # constant predictions: every pair tied
  tau_b = stats.kendalltau(y, p).statistic           # (P - Q) / sqrt((n0 - ty) (n0 - tp))
  return float(0.5 * (1.0 + tau_b * np.sqrt((n0 - ty) * (n0 - tp)) / (n0 - ty)))


def continuous_metrics(labels, preds) -> dict[str, float]:
  """Watch time / completion rate: MAE, Spearman, order AUC of predicted vs true values."""
  return {'mae': mae(labels, preds), 'spearman': spearman(labels, preds),
          'order_auc': order_auc(labels, preds)}


# ---- Confidence intervals: which differences between study rows are resolved. ----

def mean_ci(x, level: float = 0.95) -> tuple[float, float, float]:
  """Student-t interval for the mean of `x` [n]: (mean, lo, hi). lo = hi = NaN when n < 2."""
  x = np.asarray(x, dtype=np.float64).ravel()
  if not 0 < level < 1:
    raise ValueError(f'mean_ci: level={level!r} must be in (0, 1)')
  n = len(x)
  if n == 0:
    return float('nan'), float('nan'), float('nan')
  mean = float(x.mean())
  if n < 2:
    return mean, float('nan'), float('nan')
  half = stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / np.sqrt(n)
  return mean, float(mean - half), float(mean + half)
