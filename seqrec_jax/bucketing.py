"""Experiment bucketing: layers, exclusive bucket ranges, holdbacks, and the offline read-out.

  bucket(user, layer) = hash64(user, salt = layer name) mod B
hash64 is stable across processes, machines and Python versions (unlike hash()):
  * integer ids: splitmix64(splitmix64(id) XOR s), s = the first 8 bytes of
    blake2b(salt) -- vectorised over numpy uint64 (wrapping arithmetic);
  * string ids : the first 8 bytes of blake2b(id, key=salt), one call per id.
Layers (Tang et al., "Overlapping experiment infrastructure", KDD 2010):
  * orthogonal across layers: each layer has its own salt, so a user's buckets in two layers
    are independent and every experiment of one layer sees the same mix of another's;
  * exclusive within a layer: experiments own disjoint bucket ranges [lo, hi);
  * a holdback ("reverse") range of a layer is in none of its experiments: it measures the
    layer's launched changes against no change, long after the experiments end.
Checks (scipy.stats): `uniformity_test` (chi-square of bucket counts against uniform),
`independence_test` (chi-square of the contingency table of two layers' coarse buckets),
`srm_test` (sample-ratio mismatch: arm counts against the planned split) and `welch_readout`
(difference in means, treatment - control, with a Welch t interval).
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Mapping

import numpy as np
from scipy import stats

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x: np.ndarray) -> np.ndarray:
  """uint64 [...] -> uint64 [...]: the splitmix64 finaliser (Steele et al. 2014)."""
  x = np.asarray(x, np.uint64)
  with np.errstate(over='ignore'):
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def _salt64(salt: str) -> np.uint64:
  return np.uint64(int.from_bytes(hashlib.blake2b(salt.encode(), digest_size=8).digest(), 'little'))


def hash64(ids, salt: str) -> np.ndarray:
  """ids [...] int (>= 0 or any int64) or str -> uint64 [...], stable for (id, salt)."""
  ids = np.asarray(ids)
  if ids.dtype.kind in 'iub':
    return splitmix64(splitmix64(ids.astype(np.int64).view(np.uint64)) ^ _salt64(salt))
  if ids.dtype.kind in 'UOS':
    key = hashlib.blake2b(salt.encode(), digest_size=32).digest()
    out = [int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8, key=key).digest(),
                          'little') for i in ids.ravel()]
    return np.array(out, np.uint64).reshape(ids.shape)
  raise ValueError(f'hash64: ids dtype {ids.dtype} must be integer or string')


def buckets(ids, salt: str, num_buckets: int) -> np.ndarray:
  """ids [...] -> int64 buckets in [0, num_buckets) (modulo bias < num_buckets / 2^64)."""
  if num_buckets < 1:
    raise ValueError(f'buckets: num_buckets={num_buckets} must be >= 1')
  return (hash64(ids, salt) % np.uint64(num_buckets)).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Layer:
  """One layer: salt `name`, B buckets, experiments -> disjoint [lo, hi) ranges, a holdback.

  Arms of one experiment are experiments here too (e.g. 'rerank/control', 'rerank/mmr'), so
  the read-out compares two ranges of the same layer."""
  name: str
  num_buckets: int = 1000
  experiments: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
  holdback: tuple[int, int] | None = None

  def __post_init__(self):
    if not self.name:
      raise ValueError('Layer: name (the salt) must be non-empty')
    if self.num_buckets < 1:
      raise ValueError(f'Layer {self.name!r}: num_buckets={self.num_buckets} must be >= 1')
    ranges = dict(self.experiments)
    if self.holdback is not None:
      if 'holdback' in ranges:
        raise ValueError(f'Layer {self.name!r}: "holdback" is reserved; rename the experiment')
      ranges['holdback'] = self.holdback
    spans = []
    for exp, (lo, hi) in ranges.items():
      if not 0 <= lo < hi <= self.num_buckets:
        raise ValueError(f'Layer {self.name!r}: {exp}=[{lo}, {hi}) must lie in '
                         f'[0, {self.num_buckets}) and be non-empty')
      spans.append((lo, hi, exp))
    spans.sort()
    for (_, hi, a), (lo, _, b) in zip(spans, spans[1:]):
      if lo < hi:
        raise ValueError(f'Layer {self.name!r}: ranges of {a} and {b} overlap; experiments in '
                         'a layer are exclusive and the holdback is in none')

  @property
  def names(self) -> list[str]:
    return list(self.experiments)

  def buckets(self, ids) -> np.ndarray:
    return buckets(ids, self.name, self.num_buckets)

  def assign(self, ids) -> np.ndarray:
    """ids [U] -> int64 [U]: index into `names`, -1 for no experiment (holdback or free)."""
    b = self.buckets(ids)
    out = np.full(b.shape, -1, np.int64)
    for k, (lo, hi) in enumerate(self.experiments.values()):
      out[(b >= lo) & (b < hi)] = k
    return out

  def in_holdback(self, ids) -> np.ndarray:
    """ids [U] -> bool [U]."""
    b = self.buckets(ids)
    if self.holdback is None:
      return np.zeros(b.shape, bool)
    return (b >= self.holdback[0]) & (b < self.holdback[1])

  def share(self, name: str) -> float:
    """Planned fraction of users in experiment `name`."""
    if name not in self.experiments:
      raise ValueError(f'Layer {self.name!r}: experiment {name!r} not in {self.names}')
    lo, hi = self.experiments[name]
    return (hi - lo) / self.num_buckets


def layers_named(layers) -> dict[str, Layer]:
  """[Layer] -> {name: Layer}; salts must differ, or the layers would not be orthogonal."""
  out = {}
  for layer in layers:
    if layer.name in out:
      raise ValueError(f'layers_named: two layers share the salt {layer.name!r}')
    out[layer.name] = layer
  return out


def uniformity_test(b: np.ndarray, num_buckets: int) -> tuple[float, float]:
  """buckets [U] -> (chi2, p) of the counts against uniform over num_buckets."""
  counts = np.bincount(np.asarray(b, np.int64), minlength=num_buckets)
  if len(counts) != num_buckets:
    raise ValueError(f'uniformity_test: buckets reach {len(counts) - 1} >= {num_buckets}')
  res = stats.chisquare(counts)
  return float(res.statistic), float(res.pvalue)


def independence_test(b1, b2, num_buckets: int, groups: int = 10) -> tuple[float, float]:
  """Two layers' buckets [U] -> (chi2, p) of the groups x groups contingency table of
  floor(b * groups / B): coarse groups keep the expected cell counts large."""
  if not 2 <= groups <= num_buckets:
    raise ValueError(f'independence_test: groups={groups} must be in [2, {num_buckets}]')
  g1 = np.asarray(b1, np.int64) * groups // num_buckets
  g2 = np.asarray(b2, np.int64) * groups // num_buckets
  table = np.zeros((groups, groups), np.int64)
  np.add.at(table, (g1, g2), 1)
  res = stats.chi2_contingency(table, correction=False)
  return float(res.statistic), float(res.pvalue)


def srm_test(counts, planned) -> tuple[float, float]:
  """Sample-ratio mismatch: arm counts [A] against planned shares [A] (any scale) ->
  (chi2, p). A small p (say < 0.001) means the assignment or the logging is broken and the
  read-out should not be trusted."""
  counts = np.asarray(counts, np.float64)
  planned = np.asarray(planned, np.float64)
  if counts.shape != planned.shape or counts.ndim != 1 or len(counts) < 2:
    raise ValueError(f'srm_test: counts {counts.shape} and planned {planned.shape} must be '
                     'the same [A >= 2]')
  if (planned <= 0).any():
    raise ValueError(f'srm_test: planned={planned.tolist()} must be > 0')
  res = stats.chisquare(counts, planned / planned.sum() * counts.sum())
  return float(res.statistic), float(res.pvalue)


def welch_readout(treatment, control, level: float = 0.95) -> dict[str, float]:
  """Per-user metric values [n_t], [n_c] -> {'diff': mean_t - mean_c, 'lo', 'hi' (the Welch
  t interval at `level`), 'se', 'df' (Welch-Satterthwaite), 'p' (two-sided), 'rel': diff /
  mean_c, 'n_t', 'n_c'}."""
  t = np.asarray(treatment, np.float64)
  c = np.asarray(control, np.float64)
  if len(t) < 2 or len(c) < 2:
    raise ValueError(f'welch_readout: need >= 2 values per arm, got {len(t)} and {len(c)}')
  if not 0 < level < 1:
    raise ValueError(f'welch_readout: level={level} must be in (0, 1)')
  vt, vc = t.var(ddof=1) / len(t), c.var(ddof=1) / len(c)
  se = float(np.sqrt(vt + vc))
  df = float((vt + vc) ** 2 / (vt ** 2 / (len(t) - 1) + vc ** 2 / (len(c) - 1)))
  diff = float(t.mean() - c.mean())
  q = float(stats.t.ppf(0.5 + level / 2, df))
  p = float(2 * stats.t.sf(abs(diff) / se, df)) if se > 0 else float(diff == 0)
  return dict(diff=diff, lo=diff - q * se, hi=diff + q * se, se=se, df=df, p=p,
              rel=diff / float(c.mean()) if c.mean() else float('nan'),
              n_t=float(len(t)), n_c=float(len(c)))


def ab_readout(layer: Layer, ids, metric, control: str, treatment: str,
               level: float = 0.95) -> dict[str, float]:
  """Users ids [U] with per-user metric [U] -> welch_readout(treatment, control) plus
  'srm_chi2'/'srm_p': the two arms' counts against their planned bucket shares."""
  metric = np.asarray(metric)
  arm = layer.assign(ids)
  for name in (control, treatment):
    if name not in layer.names:
      raise ValueError(f'ab_readout: {name!r} is not an experiment of layer {layer.name!r}: '
                       f'{layer.names}')
  ic, it = layer.names.index(control), layer.names.index(treatment)
  out = welch_readout(metric[arm == it], metric[arm == ic], level)
  chi2, p = srm_test([(arm == ic).sum(), (arm == it).sum()],
                     [layer.share(control), layer.share(treatment)])
  return dict(out, srm_chi2=chi2, srm_p=p)
