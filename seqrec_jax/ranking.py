"""Ranking utilities from practice: calibration after negative down-sampling, score fusion.

Everything works on numpy or jax arrays alike (plain arithmetic, no host-only calls).

Negative down-sampling keeps every positive and a fraction `a` of the negatives, so a model
trained on the sample sees odds inflated by 1/a: odds_sample = odds_true / a. Undoing it,
    p_true = a * p / ((1 - p) + a * p),   equivalently  logit(p_true) = logit(p) + log(a).

Score fusion turns per-task probabilities into one ranking score:
    weighted sum:   s = sum_i w_i * p_i
    product form:   s = p_click * (1 + sum_i w_i * p_i)   (p_i: post-click tasks, e.g. like)
    rank fusion:    s = sum_i w_i / (rank_i^alpha + beta)  (rank_i: 1 = the best of the
                    request's candidates by task i's score; scale-free, so a watch-time estimate
                    in seconds and a like probability mix without calibration; host numpy)
    e-commerce:     s = p_click^a * p_cart^b * p_pay^c * price^d   (fuse_power: prod_k f_k^e_k;
                    a, b, c trade engagement against conversion, d > 0 favours GMV)
Duration adjustment (short video): a score that grows with the video's length (watch time,
completion of long videos) is divided by f(duration) so long videos do not win on length alone:
    s = p / f(duration), f = log(1 + duration) ('log') or (1 + duration)^gamma ('power').
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _check_rate(rate: float) -> float:
  rate = float(rate)
  if not 0.0 < rate <= 1.0:
    raise ValueError(f'negative sampling rate must be in (0, 1] (fraction of negatives kept), '
                     f'got {rate}')
  return rate


def calibrate_downsampled(p, rate: float):
  """Probabilities from a model trained with negatives kept at `rate` -> true-rate probabilities.

  p: array of probabilities in [0, 1]; rate a in (0, 1]. Returns a*p / ((1 - p) + a*p).
  """
  a = _check_rate(rate)
  return a * p / ((1.0 - p) + a * p)


def calibrate_downsampled_logits(logits, rate: float):
  """The same correction on logits: logit(p_true) = logit(p) + log(a)."""
  return logits + math.log(_check_rate(rate))


def downsample_negatives(labels, rate: float, seed: int = 0) -> np.ndarray:
  """Row indices that keep every positive and each negative with probability `rate` (host)."""
  a = _check_rate(rate)
  y = np.asarray(labels)
  keep = (y > 0.5) | (np.random.default_rng(seed).random(len(y)) < a)
  return np.flatnonzero(keep)


def _as_weights(weights, n: int, what: str):
  w = np.asarray(weights, dtype=np.float64).reshape(-1)
  if w.shape != (n,):
    raise ValueError(f'{what}: got {len(w)} weights for {n} task scores')
  return w


def fuse_weighted_sum(probs, weights: Sequence[float]):
  """probs [..., T], weights [T] -> [...]: sum_i w_i * p_i."""
  probs = probs if hasattr(probs, 'shape') else np.asarray(probs, np.float64)
  w = _as_weights(weights, probs.shape[-1], 'fuse_weighted_sum')
  dtype = probs.dtype if np.issubdtype(probs.dtype, np.floating) else np.float64
  return (probs * w.astype(dtype)).sum(-1)


def fuse_product(p_click, probs, weights: Sequence[float]):
  """p_click [...], probs [..., T] (post-click tasks), weights [T] -> [...]:
  p_click * (1 + sum_i w_i * p_i)."""
  return p_click * (1.0 + fuse_weighted_sum(probs, weights))


def duration_adjust(score, duration, f: str = 'log', gamma: float = 1.0):
  """score [...] / f(duration [...]): f = 'log' -> log(1 + d) (d > 0 needed), 'power' ->
  (1 + d)^gamma."""
  d = np.asarray(duration, np.float64) if not hasattr(duration, 'shape') else duration
  if f == 'log':
    return score / np.log1p(d)
  if f == 'power':
    return score / (1.0 + d) ** gamma
  raise ValueError(f"duration_adjust: unknown f {f!r}; choose 'log' or 'power'")


def ranks_within(scores, groups=None) -> np.ndarray:
  """Descending ranks (1 = highest score, ties share their average rank) of scores [N] or
  [N, T] (per column) among the rows of the same group (request); groups [N] or None (one
  request). Host numpy."""
  s = np.asarray(scores, np.float64)
  flat = s.ndim == 1
  s = s[:, None] if flat else s
  g = np.zeros(len(s), np.int64) if groups is None else np.asarray(groups).ravel()
  out = np.empty_like(s)
  for j in range(s.shape[1]):
    order = np.lexsort((-s[:, j], g))
    gs, ss = g[order], -s[order, j]
    new = np.concatenate([[True], gs[1:] != gs[:-1]])
    start = np.maximum.accumulate(np.where(new, np.arange(len(gs)), 0))   # group start
    tie_new = new | np.concatenate([[True], ss[1:] != ss[:-1]])
    t_start = np.flatnonzero(tie_new)
    t_end = np.append(t_start[1:], len(gs))
    avg = np.repeat((t_start + t_end - 1) / 2.0, t_end - t_start)     # mean 0-based position
    out[order, j] = avg - start + 1
  return out[:, 0] if flat else out


def fuse_rank(scores, weights: Sequence[float], alpha: float = 1.0, beta: float = 0.0,
              groups=None) -> np.ndarray:
  """scores [N, T] of a request's N candidates (or of several requests, `groups` [N]) ->
  [N]: sum_i w_i / (rank_i^alpha + beta), rank_i the candidate's rank by task i (1 = best)."""
  s = np.asarray(scores, np.float64)
  w = _as_weights(weights, s.shape[-1], 'fuse_rank')
  if alpha <= 0 or beta < 0:
    raise ValueError(f'fuse_rank: need alpha > 0 and beta >= 0, got alpha={alpha}, beta={beta}')
  return (w / (ranks_within(s, groups) ** alpha + beta)).sum(-1)


def fuse_power(factors, exponents: Sequence[float]):
  """factors [..., K] (probabilities, price, ...), exponents [K] -> [...]: prod_k f_k^e_k."""
  f = factors if hasattr(factors, 'shape') else np.asarray(factors, np.float64)
  e = _as_weights(exponents, f.shape[-1], 'fuse_power')
  return (f ** e.astype(f.dtype if np.issubdtype(f.dtype, np.floating) else np.float64)).prod(-1)


def fuse_ecommerce(p_click, p_cart, p_pay, price, a: float = 1.0, b: float = 1.0,
                   c: float = 1.0, d: float = 1.0):
  """p_click^a * p_cart^b * p_pay^c * price^d (arrays of one shape)."""
  return p_click ** a * p_cart ** b * p_pay ** c * price ** d
