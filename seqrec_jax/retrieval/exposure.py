"""Exposure filter: a Bloom filter over (user, item) with a time window, to drop shown items.

Sizing (Bloom 1970; the standard optimum): for n keys and a false-positive rate p,
  m = ceil(-n ln p / (ln 2)^2) bits,   k = max(1, round(m / n ln 2)) hash functions,
and after n insertions the false-positive rate is (1 - exp(-k n / m))^k ~ p. A Bloom filter
has no false negatives: an added key is always found.

Time window (rotating generations): time is cut into buckets of span = window / generations;
generations + 1 sub-filters form a ring, bucket b writes sub-filter b mod (generations + 1)
(clearing it first when it last held an older bucket), and a lookup at time t reads the
sub-filters of buckets b(t) - generations .. b(t). So an exposure at t0 is found at every
t < t0 + window and is gone from t >= t0 + window + span on (between the two it may linger).
`capacity` is the number of distinct exposures per window; each sub-filter is sized for
capacity / generations of them at rate 1 - (1 - fp_rate)^(1 / (generations + 1)), so a lookup
that reads all generations + 1 full sub-filters errs with probability fp_rate.

Hashing is vectorised numpy: key = user << 32 | item (ids < 2^32), two splitmix64 mixes give
h1, h2 and the k positions are h1 + j h2 mod m (Kirsch & Mitzenmacher double hashing); bits
are packed in uint64 words. Written here rather than taken from a Bloom-filter package: those
hash one Python object per call, while a feed checks [users, candidates] arrays at once.
"""
from __future__ import annotations

import math

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
  """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
  x = x + _GOLDEN
  x = (x ^ (x >> np.uint64(30))) * _M1
  x = (x ^ (x >> np.uint64(27))) * _M2
  return x ^ (x >> np.uint64(31))


def bloom_size(capacity: int, fp_rate: float) -> tuple[int, int]:
  """(m bits, k hashes) for `capacity` keys at false-positive rate `fp_rate`."""
  if capacity < 1 or not 0.0 < fp_rate < 1.0:
    raise ValueError(f'bloom_size: capacity={capacity} must be >= 1 and fp_rate={fp_rate} in '
                     '(0, 1)')
  m = math.ceil(-capacity * math.log(fp_rate) / math.log(2) ** 2)
  return m, max(1, round(m / capacity * math.log(2)))


def pair_keys(user, item) -> np.ndarray:
  """(user, item) int arrays (broadcast) -> uint64 keys user << 32 | item."""
  user, item = np.broadcast_arrays(np.asarray(user, np.int64), np.asarray(item, np.int64))
  if user.size and (min(user.min(), item.min()) < 0 or max(user.max(), item.max()) >= 1 << 32):
    raise ValueError('pair_keys: user and item ids must lie in [0, 2^32)')
  return (user.astype(np.uint64) << np.uint64(32)) | item.astype(np.uint64)


class _Bits:
  """One Bloom bit array of m bits in uint64 words."""

  def __init__(self, m: int):
    self.words = np.zeros((m + 63) // 64, np.uint64)
    self.count = 0

  def add(self, pos: np.ndarray) -> None:
    np.bitwise_or.at(self.words, pos >> np.uint64(6), np.uint64(1) << (pos & np.uint64(63)))
    self.count += len(pos)

  def contains(self, pos: np.ndarray) -> np.ndarray:
    bits = (self.words[pos >> np.uint64(6)] >> (pos & np.uint64(63))) & np.uint64(1)
    return bits.astype(bool).all(axis=-1)

  def clear(self) -> None:
    self.words[:] = 0
    self.count = 0


class BloomFilter:
  """(user, item) exposures, optionally forgotten after `window` (module docstring).

  capacity: distinct exposures per window (all time when window is None); fp_rate: the
  false-positive rate of a lookup once that many are in; generations: sub-filters per window.
  """

  def __init__(self, capacity: int, fp_rate: float = 0.01, *, window: float | None = None,
               generations: int = 4, seed: int = 0):
    if window is not None and (window <= 0 or generations < 1):
      raise ValueError(f'BloomFilter: window={window} must be > 0 and generations='
                       f'{generations} >= 1')
    self.window = window
    self.generations = generations if window is not None else 0
    n_slots = self.generations + 1
    per_slot = math.ceil(capacity / max(self.generations, 1))
    slot_rate = 1.0 - (1.0 - fp_rate) ** (1.0 / n_slots)
    self.m, self.k = bloom_size(per_slot, slot_rate)
    self.capacity, self.fp_rate = int(capacity), float(fp_rate)
    self.seed = np.uint64(seed)
    self.slots = [_Bits(self.m) for _ in range(n_slots)]
    self.bucket = np.full(n_slots, np.iinfo(np.int64).min, np.int64)

  @property
  def nbytes(self) -> int:
    return sum(s.words.nbytes for s in self.slots)

  def positions(self, keys: np.ndarray) -> np.ndarray:
    """uint64 keys [N] -> bit positions [N, k]."""
    h1 = _splitmix64(keys ^ self.seed)
    h2 = _splitmix64(h1) | np.uint64(1)
    j = np.arange(self.k, dtype=np.uint64)
    return (h1[:, None] + j[None, :] * h2[:, None]) % np.uint64(self.m)

  def _buckets(self, t, shape) -> np.ndarray:
    """t broadcast to the keys' shape -> bucket ids, flat."""
    if self.window is None:
      return np.zeros(math.prod(shape), np.int64)
    b = np.floor(np.asarray(t, np.float64) / (self.window / self.generations)).astype(np.int64)
    return np.broadcast_to(b, shape).reshape(-1)

  def add(self, user, item, t=0.0) -> None:
    """Records exposures (user, item) [N] at time t (scalar or [N]). Exposures older than the
    window, counted from the newest time this filter has seen, are dropped."""
    keys = pair_keys(user, item)
    b = self._buckets(t, keys.shape)
    keys = keys.reshape(-1)
    pos = self.positions(keys)
    for bb in np.unique(b):
      s = int(bb % len(self.slots))
      if self.bucket[s] != bb:
        if self.bucket[s] > bb:
          continue                       # the slot already holds a newer bucket: expired
        self.slots[s].clear()
        self.bucket[s] = bb
      self.slots[s].add(pos[b == bb].reshape(-1))

  def contains(self, user, item, t=0.0) -> np.ndarray:
    """(user, item) broadcast to a shape S, time t -> bool S: True if exposed within the window
    before t (never a false negative; false positives at about fp_rate)."""
    keys = pair_keys(user, item)
    shape, keys = keys.shape, keys.reshape(-1)
    b = self._buckets(t, shape)
    pos = self.positions(keys)
    out = np.zeros(len(keys), bool)
    for bb in np.unique(b):
      sel = b == bb
      for s in np.flatnonzero((self.bucket <= bb) & (self.bucket >= bb - self.generations)):
        out[sel] |= self.slots[s].contains(pos[sel])
    return out.reshape(shape)


def filter_exposed(ids: np.ndarray, user_id: np.ndarray, bloom: BloomFilter, t=0.0
                   ) -> np.ndarray:
  """ids [U, K] candidates of users user_id [U] -> ids [U, K] without the items bloom holds as
  exposed at time t; the rest keep their order, moved left, 0-padded."""
  ids = np.asarray(ids)
  exposed = bloom.contains(np.asarray(user_id)[:, None], ids, t) & (ids > 0)
  keep = ~exposed & (ids > 0)
  order = np.argsort(~keep, axis=1, kind='stable')
  return np.where(np.take_along_axis(keep, order, 1), np.take_along_axis(ids, order, 1), 0
                  ).astype(ids.dtype)
