"""The statistics every study table uses (experiments/report.py renders them).

For a comparison row - baseline on a metric (a family = the comparisons of one table):
  * seed interval: the paired difference over the seeds both rows have, Student-t (the
    training-seed noise; `seed_diff`);
  * test-set bootstrap: the seed-averaged difference recomputed on resamples of the test set,
    the same resample for both rows (the test-set sampling noise seeds leave out;
    `bootstrap_diff`). The unit resampled is the user for GAUC (all of a user's impressions
    go together) and the row for AUC, logloss, MSE and Spearman (kind 'spearman': the rank
    correlation of a prediction with a reference such as an oracle's expected label,
    recomputed exactly on each resample); kind 'mean' resamples the caller's units (requests,
    users) of a metric that is a mean of per-unit values (a per-request top-k utility, a
    per-user HR@10). Runs scored on one test set share each
    resample; runs on their own test sets (a dataset per seed) are resampled independently;
  * Holm step-down within the family, separately for the seed and the bootstrap p-values
    (`holm`). The interval shown for the comparison of Holm rank k (ascending p) of m is at
    level 1 - alpha / (m - min(k, k_stop) + 1), k_stop the first rank Holm does not reject,
    so it excludes 0 exactly when Holm rejects. "resolved" = both families reject.
  * modes (`modes`): runs that split into a collapsed and a trained mode are counted, and the
    comparison uses the trained runs (never a t-interval over a mixture). The rule: with n >= 4
    finite values, split the sorted values at their largest gap; the runs are bimodal when
    that gap exceeds c(n) times the pooled within-group standard deviation, c(n) = max(the
    99.9th percentile of that ratio for n Gaussian values (GAP_RATIO, simulated), 4). The
    worse group (low for a higher-is-better metric) is the collapsed mode.
  * edges (`select_on_grid`): a selection on the edge of its grid extends the grid one step
    that way (log or linear steps) and reruns, up to `cap` extensions; a choice still on an
    edge is reported as such.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import stats as sp_stats

from seqrec_jax import metrics as M

ALPHA = 0.05
N_BOOT = 2000
LOWER_IS_BETTER = ('mse', 'logloss', 'loss', 'mae')
# 99.9th percentile of (largest gap / pooled within-group std) for n standard normal values
# (200,000 draws each, numpy default_rng(0)): `modes` calls a row of Gaussian seeds bimodal
# with probability <= 0.1% (a table of 40 rows x metrics: ~4% to see one false alarm).
GAP_RATIO = {4: 90.2, 5: 29.6, 6: 17.8, 7: 12.5, 8: 9.7, 9: 7.8, 10: 7.0, 11: 6.1, 12: 5.5,
             13: 5.0, 14: 4.7, 15: 4.4, 16: 4.3, 17: 4.1}
GAP_RATIO_FLOOR = 4.0


def higher_is_better(metric: str) -> bool:
  """'eval/test/mean/mse' and 'head/mae_vs_et' (a LOWER_IS_BETTER name, alone or before '_')
  -> False; AUC, GAUC and the like -> True."""
  last = metric.rsplit('/', 1)[-1]
  return not any(last == k or last.startswith(k + '_') for k in LOWER_IS_BETTER)


# ---- Seeds. ----

def seed_diff(a: Mapping[int, float], b: Mapping[int, float]) -> dict:
  """Paired a - b over the seeds both have: {mean, se, n, p, seeds}; p from the paired t-test
  (NaN when n < 2 or the differences are all equal)."""
  seeds = sorted(s for s in set(a) & set(b)
                 if np.isfinite(a[s]) and np.isfinite(b[s]))
  d = np.array([a[s] - b[s] for s in seeds], np.float64)
  n = len(d)
  mean = float(d.mean()) if n else math.nan
  se = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else math.nan
  if n > 1 and se > 0:
    p = float(2 * sp_stats.t.sf(abs(mean) / se, n - 1))
  else:
    p = math.nan if n < 2 else (1.0 if mean == 0 else 0.0)
  return {'mean': mean, 'se': se, 'n': n, 'p': p, 'seeds': seeds}


def t_interval(d: Mapping, level: float) -> tuple[float, float]:
  """The `seed_diff` interval at `level` (NaN when n < 2)."""
  if d['n'] < 2:
    return math.nan, math.nan
  half = sp_stats.t.ppf(0.5 + level / 2, d['n'] - 1) * d['se']
  return d['mean'] - half, d['mean'] + half


# ---- Multiple comparisons. ----

def holm(p: Sequence[float], alpha: float = ALPHA) -> tuple[list[bool], list[float]]:
  """Holm step-down over a family: (rejected, interval level) per comparison, in input order.

  Sorted by p, rank k (1-based) is rejected while p_(k) <= alpha / (m - k + 1) for it and every
  rank before it; NaN p-values are never rejected and count in m. The level is
  1 - alpha / (m - min(k, k_stop) + 1), k_stop the first rank not rejected.
  """
  p = np.asarray(p, np.float64)
  m = len(p)
  order = np.argsort(np.where(np.isnan(p), np.inf, p), kind='stable')
  rejected, level = [False] * m, [0.0] * m
  stop = None
  for k, i in enumerate(order, 1):
    if stop is None and not (np.isfinite(p[i]) and p[i] <= alpha / (m - k + 1)):
      stop = k
    rejected[i] = stop is None
    level[i] = 1 - alpha / (m - min(k, stop or k) + 1)
  return rejected, level


# ---- Test-set bootstrap. ----

def _auc_parts(scores, labels):
  """What the weighted AUC of one run needs: the negatives in score order and, per positive,
  how many negatives score below it (klo) and at most equal to it (khi)."""
  pos = labels > 0.5
  neg_idx = np.flatnonzero(~pos)
  neg_idx = neg_idx[np.argsort(scores[neg_idx], kind='stable')]
  neg_scores = scores[neg_idx]
  pos_scores = scores[pos]
  return (neg_idx, np.searchsorted(neg_scores, pos_scores, 'left'),
          np.searchsorted(neg_scores, pos_scores, 'right'))


def _weighted_auc(parts, c_pos, counts):
  """AUC of one run under row weights counts [B, N] (c_pos: counts of the positive rows):
  sum over positives of w_i * (negative weight below + half the tied) / (W+ W-). [B]"""
  neg_idx, klo, khi = parts
  cn = np.zeros((counts.shape[0], len(neg_idx) + 1), counts.dtype)
  np.cumsum(counts[:, neg_idx], axis=1, out=cn[:, 1:])
  num = (c_pos * (cn[:, klo] + cn[:, khi])).sum(1) * 0.5
  with np.errstate(divide='ignore', invalid='ignore'):
    return num / (c_pos.sum(1) * cn[:, -1])


KINDS = ('gauc', 'auc', 'logloss', 'mse', 'mean', 'spearman')
UNIT_NAME = {'gauc': 'users', 'mean': 'units'}      # every other kind resamples rows


def metric_kind(metric: str) -> str:
  """'gauc', 'auc', 'logloss' or 'mse' from a summary key such as 'eval/test/income/auc'
  (the kinds 'mean' and 'spearman' are named by the caller: bootstrap_diff's kind)."""
  kind = metric.rsplit('/', 1)[-1]
  if kind not in ('gauc', 'auc', 'logloss', 'mse'):
    raise ValueError(f'no test-set bootstrap for metric {metric!r} (kind {kind!r}); one of '
                     'gauc (users), auc, logloss, mse (rows), or pass kind= (mean over units, '
                     'spearman with a reference)')
  return kind


def _tie_blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """x [N] -> (order [N]: x sorted, starts [K]: where each block of equal values begins in
  that order, block [N]: each row's block)."""
  order = np.argsort(x, kind='stable')
  xs = x[order]
  new = np.concatenate([[True], xs[1:] != xs[:-1]])
  block = np.empty(len(x), np.int64)
  block[order] = np.cumsum(new) - 1
  return order, np.flatnonzero(new), block


def _midranks(blocks, counts: np.ndarray) -> np.ndarray:
  """Mid-ranks [B, N] of every row in the resamples counts [B, N] (a row drawn c times is c
  tied copies): (weight of the smaller values) + (weight of its tie block + 1) / 2, so tied
  values, and the copies of one row, share the mean of their ranks (scipy's 'average')."""
  order, starts, block = blocks
  w = counts[:, order]
  if len(starts) < len(order):
    w = np.add.reduceat(w, starts, axis=1)                        # [B, K]
  below = np.cumsum(w, axis=1)
  below -= w
  below += (w + 1) / 2
  return below[:, block]


def _weighted_spearman(ref_rank, blocks, counts):
  """The Spearman correlation [B] of a prediction (its tie blocks) with the reference (its
  mid-ranks ref_rank [B, N]) on each resample: the count-weighted Pearson correlation of the
  two mid-rank vectors, centred on their exact mean (W + 1) / 2."""
  centre = (counts.sum(1, keepdims=True) + 1) / 2
  x = ref_rank - centre
  y = _midranks(blocks, counts)
  y -= centre
  cy = counts * y
  with np.errstate(divide='ignore', invalid='ignore'):
    return (np.einsum('bn,bn->b', cy, x)
            / np.sqrt(np.einsum('bn,bn,bn->b', counts, x, x) * np.einsum('bn,bn->b', cy, y)))


def _mean_run(units, pred_a, pred_b):
  """Kind 'mean': (key of the units, sums of a - b per unit [U'], values per unit [U']), the
  U' distinct unit ids in first-seen order (a unit of several values is resampled whole)."""
  units = np.asarray(units)
  a = np.asarray(pred_a, np.float64).ravel()
  b = None if pred_b is None else np.asarray(pred_b, np.float64).ravel()
  if units.ndim != 1 or len(units) != len(a) or (b is not None and len(b) != len(a)):
    raise ValueError(f'bootstrap (kind mean): units {units.shape}, values {a.shape} / '
                     f'{None if b is None else b.shape} must be [U] each (one value per unit '
                     'row; a paired run scores the same units)')
  _, first, inv = np.unique(units, return_index=True, return_inverse=True)
  rank = np.empty(len(first), np.int64)
  rank[np.argsort(first, kind='stable')] = np.arange(len(first))   # first-seen unit order
  group = rank[inv.ravel()]
  sums = np.zeros(len(first))
  np.add.at(sums, group, a - (0.0 if b is None else b))
  return (hashlib.sha1(b'mean' + units.tobytes()).hexdigest(), sums,
          np.bincount(group, minlength=len(first)).astype(np.float64))


class _Run:
  """One paired seed: per-unit statistics of both rows on one test set."""

  def __init__(self, kind, labels, users, pred_a, pred_b=None):
    """pred_b None: the metric of pred_a alone (one side of a comparison across test sets).
    Kind 'mean': labels None, users the unit ids [U], preds the per-unit values [U]; kind
    'spearman': labels the reference [N] the predictions [N] are rank-correlated with."""
    self.kind = kind
    if kind == 'mean':
      self.key, self.sums, self.size = _mean_run(users, pred_a, pred_b)
      self.units = len(self.size)
      return
    labels = np.asarray(labels, np.float64)
    users = np.asarray(users)
    pa = np.asarray(pred_a, np.float64)
    pb = None if pred_b is None else np.asarray(pred_b, np.float64)
    if kind == 'spearman' and (labels.ndim != 1 or pa.ndim != 1 or (
        pb is not None and pb.ndim != 1)):
      raise ValueError(f'bootstrap (kind spearman): reference {labels.shape}, predictions '
                       f'{pa.shape} / {None if pb is None else pb.shape} must be [N] each')
    if labels.ndim == 1:
      labels, pa = labels[:, None], pa[:, None]
      pb = None if pb is None else pb[:, None]
    if labels.shape != pa.shape or (pb is not None and pb.shape != pa.shape):
      raise ValueError(f'bootstrap: labels {labels.shape}, predictions {pa.shape} / '
                       f'{None if pb is None else pb.shape} differ (one paired seed must score '
                       'the same rows)')
    self.key = hashlib.sha1(labels.tobytes() + users.tobytes()).hexdigest()
    self.tasks = labels.shape[1]
    if kind == 'spearman':
      self.ref = _tie_blocks(labels[:, 0])
      self.parts = [_tie_blocks(pa[:, 0]), None if pb is None else _tie_blocks(pb[:, 0])]
      self.units = len(labels)
    elif kind == 'gauc':
      self.parts = []
      for t in range(self.tasks):
        _, size, auc_a, ok = M._per_group_auc(labels[:, t], pa[:, t], users)  # pylint: disable=protected-access
        auc_b = 0.0 if pb is None else M._per_group_auc(labels[:, t], pb[:, t], users)[2]  # pylint: disable=protected-access
        self.parts.append((size * ok * auc_a, size * ok * auc_b, size * ok))
      self.units = len(self.parts[0][2])
    elif kind == 'auc':
      self.parts = [(np.flatnonzero(labels[:, t] > 0.5), _auc_parts(pa[:, t], labels[:, t]),
                     None if pb is None else _auc_parts(pb[:, t], labels[:, t]))
                    for t in range(self.tasks)]
      self.units = len(labels)
    else:
      eps = 1e-7
      if kind == 'logloss':
        def loss(p):
          p = np.clip(p, eps, 1 - eps)
          return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
      else:
        def loss(p):
          return (p - labels) ** 2
      self.diff_row = (loss(pa) - (0.0 if pb is None else loss(pb))).mean(1)   # [N]
      self.units = len(labels)

  _ref_cache: tuple = (None, None, None)

  @staticmethod
  def _ref_ranks(key, blocks, counts):
    """The reference's mid-ranks under counts, once per resample for every run of one test
    set (the cache holds the counts array itself: a new array is never mistaken for it)."""
    got, got_key, ranks = _Run._ref_cache
    if got is not counts or got_key != key:
      ranks = _midranks(blocks, counts)
      _Run._ref_cache = (counts, key, ranks)
    return ranks

  def diff(self, counts):
    """The difference a - b under unit weights counts [B, units] -> [B]."""
    if self.kind == 'gauc':
      out = []
      for num_a, num_b, w in self.parts:
        with np.errstate(divide='ignore', invalid='ignore'):
          out.append((counts @ num_a - counts @ num_b) / (counts @ w))
      return np.mean(out, 0)
    if self.kind == 'auc':
      out = []
      for pos, a, b in self.parts:
        c_pos = counts[:, pos]
        out.append(_weighted_auc(a, c_pos, counts)
                   - (0.0 if b is None else _weighted_auc(b, c_pos, counts)))
      return np.mean(out, 0)
    if self.kind == 'mean':
      return counts @ self.sums / (counts @ self.size)
    if self.kind == 'spearman':
      ref = _Run._ref_ranks(self.key, self.ref, counts)
      a, b = self.parts
      return (_weighted_spearman(ref, a, counts)
              - (0.0 if b is None else _weighted_spearman(ref, b, counts)))
    return counts @ self.diff_row / counts.sum(1)


def _resample_counts(rng, u: int, b: int, fast: bool = False) -> np.ndarray:
  """[b, u] bootstrap counts (each row multinomial(u, uniform)). Above FAST_COUNTS units (or
  with fast: the kinds 'mean' and 'spearman', new since) they are counted from u uniform index
  draws (np.bincount: the same distribution, ~8x faster than numpy's multinomial, which draws
  u binomials per row); at or below it the multinomial stream is kept, so bootstraps
  published before stay reproducible draw for draw."""
  if u <= FAST_COUNTS and not fast:
    return rng.multinomial(u, np.full(u, 1.0 / u), size=b).astype(np.float64)
  idx = rng.integers(0, u, size=(b, u)) + (np.arange(b) * u)[:, None]
  return np.bincount(idx.ravel(), minlength=b * u).reshape(b, u).astype(np.float64)


FAST_COUNTS = 10_000


def bootstrap_diff(metric: str, runs: Sequence[tuple], n_boot: int = N_BOOT,
                   seed: int = 0, minus: Sequence[tuple] = (), kind: str | None = None,
                   unit_name: str | None = None) -> dict:
  """The test-set bootstrap of the seed-averaged difference a - b.

  runs: one (labels [N] or [N, T], users [N], pred_a, pred_b) per paired seed (T tasks: the
  metric is averaged over them, as 'eval/test/mean/...'). For rows scored on different test
  sets (two correlations' datasets), runs hold (labels, users, pred_a, None) and minus the
  (labels, users, pred_b) of the other side: mean metric of runs - mean metric of minus. Runs
  on one test set share each resample; distinct sets are resampled independently.

  kind (default metric_kind(metric)) names what is resampled and recomputed:
    'gauc' (users), 'auc', 'logloss', 'mse' (rows): as above;
    'mean': runs hold (None, units [U], a [U], b [U] or None): a metric that is the mean of
      per-unit values (per-request utility, per-user HR@10; a unit id that repeats groups its
      values: resampled whole). Draw: counts @ (a - b) / counts.sum(1) over the units;
    'spearman': runs hold (reference [N], users [N], pred_a [N], pred_b [N] or None); rows
      are resampled and the Spearman correlation of each prediction with the reference is
      recomputed exactly on the resample (tied values and copies share mid-ranks).
  Identical (labels, users) / (units) arrays are one test set. unit_name labels the resampled
  unit (default: 'users' for gauc, 'units' for mean, else 'rows').

  Returns {mean (on the test sets themselves), p (two-sided, (1 + draws on the other side of
  0) / (1 + B) x 2), draws [B'] (the finite draws), unit, n_units, n_boot}.
  """
  kind = kind or metric_kind(metric)
  if kind not in KINDS:
    raise ValueError(f'bootstrap_diff({metric!r}): kind {kind!r} is not one of {KINDS}')
  if not runs:
    raise ValueError(f'bootstrap_diff({metric!r}): no paired runs')
  sides = [([_Run(kind, *r) for r in runs], 1.0)]
  if minus:
    sides.append(([_Run(kind, *r[:3]) for r in minus], -1.0))
  sets: dict[str, list] = {}                      # test set -> (run, weight): same resample
  for rs, sign in sides:
    for r in rs:
      sets.setdefault(r.key, []).append((r, sign / len(rs)))
  point = float(sum(w * r.diff(np.ones((1, r.units)))[0]
                    for members in sets.values() for r, w in members))
  rng = np.random.default_rng(seed)
  biggest = max(m[0][0].units for m in sets.values())
  chunk = max(1, min(n_boot, 1_000_000 // biggest))
  draws = []
  for start in range(0, n_boot, chunk):
    b = min(chunk, n_boot - start)
    total = np.zeros(b)
    for members in sets.values():
      u = members[0][0].units
      counts = _resample_counts(rng, u, b, fast=kind in ('mean', 'spearman'))
      for r, w in members:
        total += w * r.diff(counts)
    draws.append(total)
  draws = np.concatenate(draws)
  draws = draws[np.isfinite(draws)]
  p = min(1.0, 2 * (1 + min((draws <= 0).sum(), (draws >= 0).sum())) / (1 + len(draws)))
  return {'mean': point, 'p': float(p), 'draws': draws, 'n_boot': n_boot,
          'unit': unit_name or UNIT_NAME.get(kind, 'rows'), 'n_units': biggest}


def user_bootstrap(values: np.ndarray, groups: np.ndarray | None = None,
                   n_boot: int = 10_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """values [R, C]: per-request values (e.g. seed-averaged paired differences) of C
  comparisons; groups [R]: each request's user (None = one user per request) -> (draws
  [n_boot, C]: the mean over requests when users are resampled with replacement, one resample
  shared by every comparison; p [C]: two-sided, (1 + draws on the other side of 0) / (1 + B)
  doubled, as bootstrap_diff). Intervals: boot_interval(draws[:, c], level)."""
  values = np.asarray(values, np.float64).reshape(len(values), -1)
  if groups is None:
    sums, counts = values, np.ones(len(values))
  else:
    _, inv = np.unique(groups, return_inverse=True)
    sums = np.zeros((inv.max() + 1, values.shape[1]))
    np.add.at(sums, inv, values)
    counts = np.bincount(inv).astype(np.float64)
  u = len(counts)
  rng = np.random.default_rng(seed)
  draws = []
  for start in range(0, n_boot, 1000):
    c = rng.multinomial(u, np.full(u, 1.0 / u), size=min(1000, n_boot - start))
    c = c.astype(np.float64)
    draws.append((c @ sums) / (c @ counts)[:, None])
  draws = np.concatenate(draws)
  side = np.minimum((draws <= 0).sum(0), (draws >= 0).sum(0))
  return draws, np.minimum(1.0, 2 * (1 + side) / (1 + len(draws)))


def boot_interval(draws, level: float) -> tuple[float, float]:
  """Percentile interval of bootstrap draws at `level`."""
  if len(draws) < 2:
    return math.nan, math.nan
  lo, hi = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2])
  return float(lo), float(hi)


def holm_levels(m: int, alpha: float = ALPHA) -> list[float]:
  """Every level a Holm family of m can ask for: 1 - alpha / j, j = 1..m."""
  return [1 - alpha / j for j in range(1, m + 1)]


# ---- Modes. ----

def modes(values: Sequence[float], higher_better: bool = True) -> tuple[list[int], list[int]]:
  """(collapsed, trained) indices into `values` when they are bimodal (module docstring),
  else ([], every finite index)."""
  x = np.asarray(values, np.float64)
  idx = np.flatnonzero(np.isfinite(x))
  n = len(idx)
  if n < 4:
    return [], idx.tolist()
  order = idx[np.argsort(x[idx], kind='stable')]
  xs = x[order]
  gaps = np.diff(xs)
  j = int(np.argmax(gaps))
  low, high = xs[:j + 1], xs[j + 1:]
  within = np.sqrt((((low - low.mean()) ** 2).sum() + ((high - high.mean()) ** 2).sum())
                   / (n - 2))
  ratio = max(GAP_RATIO.get(n, 0.0), GAP_RATIO_FLOOR)
  if not gaps[j] > ratio * within or gaps[j] <= 0:
    return [], idx.tolist()
  lo_i, hi_i = sorted(order[:j + 1].tolist()), sorted(order[j + 1:].tolist())
  return (lo_i, hi_i) if higher_better else (hi_i, lo_i)


# ---- Grids. ----

@dataclasses.dataclass
class GridChoice:
  value: float
  grid: list[float]                  # every value tried, sorted
  scores: dict[float, float]
  at_edge: str                       # '', 'low' or 'high': the choice is still on that edge
  extensions: int


def extend(grid: Sequence[float], side: str, scale: str = 'log') -> float:
  """The next grid value beyond `side` ('low'/'high'): one step of the grid's own spacing
  at that end (ratio for scale='log', difference for 'linear')."""
  g = sorted(grid)
  if len(g) < 2:
    raise ValueError(f'extend: a grid of {len(g)} value(s) has no step ({g})')
  a, b = (g[0], g[1]) if side == 'low' else (g[-1], g[-2])
  if scale == 'log':
    if a <= 0 or b <= 0:
      raise ValueError(f'extend: log steps need positive values, got {g}')
    return a * (a / b)
  return a + (a - b)


def select_on_grids(grids: Mapping, score: Callable[[dict], Mapping], higher_better: bool = True,
                    cap: int = 2, scale: str = 'log',
                    bounds: tuple[float, float] = (-math.inf, math.inf)) -> dict:
  """`select_on_grid` for several keys at once (e.g. one learning-rate grid per model and
  correlation), so each round's new cells run together.

  score({key: [values to run]}) -> {key: {value: score}} for those values only. Returns
  {key: GridChoice}. Every round extends each key whose choice is on an edge (and has
  extensions left) by one step.
  """
  tried = {k: sorted(set(g)) for k, g in grids.items()}
  scores = {k: dict(v) for k, v in score({k: list(g) for k, g in tried.items()}).items()}
  n_ext = dict.fromkeys(tried, 0)
  while True:
    pending, choice = {}, {}
    for k, vals in tried.items():
      pick = (max if higher_better else min)(vals, key=lambda v, k=k: scores[k][v])
      side = 'low' if pick == vals[0] else 'high' if pick == vals[-1] else ''
      choice[k] = (pick, side)
      if side and n_ext[k] < cap:
        new = extend(vals, side, scale)
        if bounds[0] <= new <= bounds[1]:
          pending[k] = [new]
    if not pending:
      return {k: GridChoice(p, tried[k], scores[k], side, n_ext[k])
              for k, (p, side) in choice.items()}
    for k, v in score(pending).items():
      scores[k].update(v)
      tried[k] = sorted(tried[k] + pending[k])
      n_ext[k] += 1


def select_on_grid(grid: Sequence[float], score: Callable[[list[float]], Mapping[float, float]],
                   higher_better: bool = True, cap: int = 2, scale: str = 'log',
                   bounds: tuple[float, float] = (-math.inf, math.inf)) -> GridChoice:
  """Chooses the best grid value, extending the grid past an edge choice up to `cap` times.

  score(values) runs the cells of `values` (new ones only) and returns {value: score}. A
  value outside `bounds` is never tried: a choice against a bound stays marked at_edge.
  """
  return select_on_grids({0: grid}, lambda todo: {0: score(todo[0])}, higher_better, cap,
                         scale, bounds)[0]
