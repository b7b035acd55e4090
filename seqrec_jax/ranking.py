"""Ranking utilities from practice: calibration after negative down-sampling, score fusion.

Everything works on numpy or jax arrays alike (plain arithmetic, no host-only calls).

Negative down-sampling keeps every positive and a fraction `a` of the negatives, so a model
trained on the sample sees odds inflated by 1/a: odds_sample = odds_true / a. Undoing it,
    p_true = a * p / ((1 - p) + a * p),   equivalently  logit(p_true) = logit(p) + log(a).

Score fusion turns per-task probabilities into one ranking score:
    weighted sum:   s = sum_i w_i * p_i
    product form:   s = p_click * (1 + sum_i w_i * p_i)   (p_i: post-click tasks, e.g. like)
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
