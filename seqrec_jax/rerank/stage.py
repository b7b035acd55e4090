"""The feed's last stage: one re-rank policy applied to the ranker's ordered top-N.

  policy = Policy('dpp', 0.7, scatter=True)
  picks = rerank(policy, rel, emb, cates, k=10, rule=(1, 3))       # [R, k] positions in N

Inputs are the ranker's list in its own order (position 0 = highest score): rel [R, N]
relevance (e.g. the ranker's logit min-max scaled to [0, 1] per request, `scale_relevance`),
emb [R, N, D] item embeddings, cates [R, N] categories, valid [R, N]. Methods:
  none  the ranker's order;
  mmr   mmr.mmr(lam=param) on the raw cosine of emb;
  dpp   dpp.dpp(alpha=alpha_from_theta(param)) on similarity.cosine(emb, identity=0.05)
        (the identity share keeps S positive definite; window=None is Algorithm 1).
With scatter=True the model-based step picks `long` items, the other candidates follow in the
ranker's order (`complete`), scatter.scatter applies the rule (at most m of a category in any
w consecutive positions) to that whole list, and the first k are shown.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from seqrec_jax.rerank import dpp, mmr, scatter, similarity

METHODS = ('none', 'mmr', 'dpp')
DPP_IDENTITY = 0.05


@dataclasses.dataclass(frozen=True)
class Policy:
  """method in METHODS; param = MMR's lambda or DPP's theta; window: DPP's sliding window."""
  method: str
  param: float = 1.0
  scatter: bool = False
  window: int | None = None

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f'rerank Policy.method={self.method!r}; choose from {METHODS}')

  @property
  def name(self) -> str:
    base = {'none': 'no re-rank', 'mmr': f'MMR lambda={self.param:g}',
            'dpp': f'DPP theta={self.param:g}'}[self.method]
    if self.window is not None:
      base += f' window {self.window}'
    return base + (' + scatter' if self.scatter else '')


def scale_relevance(score: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
  """score [R, N] -> min-max scaled to [0, 1] within each request (over valid positions; a
  request whose scores are all equal gets 1 everywhere)."""
  s = np.asarray(score, np.float64)
  valid = np.ones(s.shape, bool) if valid is None else np.asarray(valid, bool)
  lo = np.where(valid, s, np.inf).min(1, keepdims=True)
  hi = np.where(valid, s, -np.inf).max(1, keepdims=True)
  span = hi - lo
  out = np.where(span > 0, (s - lo) / np.where(span > 0, span, 1.0), 1.0)
  return np.where(valid, out, 0.0).astype(np.float32)


def complete(picks: np.ndarray, n: int) -> np.ndarray:
  """picks [R, P] positions (-1 = empty) -> [R, n]: the picks in order, then every other
  position in ranker order (0, 1, ...)."""
  picks = np.asarray(picks)
  r, p = picks.shape
  key = np.broadcast_to(p + np.arange(n), (r, n)).copy()
  rows, cols = np.nonzero(picks >= 0)
  key[rows, picks[rows, cols]] = cols
  return np.argsort(key, axis=1, kind='stable').astype(np.int32)


def rerank(policy: Policy, rel, emb, cates, k: int, rule: tuple[int, int], *, valid=None,
           long: int | None = None) -> np.ndarray:
  """-> picks [R, k] int32 positions into the ranker's list (-1 = empty slot).
  long: how many the model-based step picks before scattering (default min(N, 2 k))."""
  rel = np.asarray(rel, np.float32)
  r, n = rel.shape
  if not 1 <= k <= n:
    raise ValueError(f'rerank: k={k} must be in [1, N={n}]')
  valid = np.ones((r, n), bool) if valid is None else np.asarray(valid, bool)
  depth = k if not policy.scatter else min(n, long or 2 * k)
  if policy.method == 'none':
    picks = np.where(valid, np.arange(n), -1)[:, :depth]   # ranker order (valid come first)
  elif policy.method == 'mmr':
    picks = mmr.mmr(rel, similarity.cosine(emb, shift=False), depth, lam=policy.param,
                    valid=valid)
  else:
    picks = dpp.dpp(rel, similarity.cosine(emb, identity=DPP_IDENTITY), depth,
                    alpha=dpp.alpha_from_theta(policy.param), valid=valid,
                    window=policy.window)
  picks = np.asarray(picks, np.int32)
  if not policy.scatter:
    return picks[:, :k]
  full = complete(picks, n)
  m, w = rule
  order, _ = scatter.scatter(np.take_along_axis(np.asarray(cates), full, 1), m, w,
                             valid=np.take_along_axis(valid, full, 1))
  return np.asarray(scatter.take(full, order, fill=-1), np.int32)[:, :k]
