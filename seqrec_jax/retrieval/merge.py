"""Merging retrieval channels into one candidate list with de-duplication and per-channel quotas.

Per user, in two passes over the channels (in the order of `results`):
  1. quotas: each channel in turn contributes its best items not already taken, in its own
     order, up to quotas[name] (an item another channel took earlier does not count against
     this channel's quota: the channel moves on to its next item);
  2. fill: the slots left (quotas not met because a channel ran short) are filled from all
     channels' remaining items, interleaved by rank (rank 0 of every channel in channel order,
     then rank 1, ...).
Id 0 is never taken; the list is 0-padded (source -1) when the channels hold too few items.
Vectorised over users: membership tests are np.isin on (user, item) keys.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np


def _first_in_row(keys: np.ndarray) -> np.ndarray:
  """keys [U, n] (already row-disjoint) -> bool [U, n], True at each key's first occurrence."""
  first = np.zeros(keys.size, bool)
  first[np.unique(keys.reshape(-1), return_index=True)[1]] = True
  return first.reshape(keys.shape)


def _take(out, src, fill, taken, ids, keys, cap, channel):
  """Appends to out/src the new ids (not 0, not taken, first in row) while below cap [U, 1]."""
  new = (ids > 0) & ~np.isin(keys, taken) & _first_in_row(keys)
  rank = np.cumsum(new, axis=1) - 1
  take = new & (rank < cap) & (fill[:, None] + rank < out.shape[1])
  r, c = np.nonzero(take)
  pos = fill[r] + rank[r, c]
  out[r, pos] = ids[r, c]
  src[r, pos] = channel[r, c] if np.ndim(channel) else channel
  fill += take.sum(1)
  return np.concatenate([taken, keys[take]])


def merge_channels(results: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   quotas: Mapping[str, int], total: int) -> tuple[np.ndarray, np.ndarray]:
  """results {name: (ids [U, k_c], scores [U, k_c])} best first; quotas {name: n} (missing = 0,
  sum <= total) -> (ids [U, total] int32, source [U, total] int8: the channel's index in
  `results`, -1 on padding)."""
  names = list(results)
  if not names:
    raise ValueError('merge_channels: results is empty; pass at least one channel')
  if len(names) > 127:
    raise ValueError(f'merge_channels: {len(names)} channels; source is int8 (at most 127)')
  unknown = sorted(set(quotas) - set(names))
  if unknown:
    raise ValueError(f'merge_channels: quotas name {unknown}, not among the channels {names}')
  q = {n: int(quotas.get(n, 0)) for n in names}
  if total < 0 or min(q.values()) < 0 or sum(q.values()) > total:
    raise ValueError(f'merge_channels: quotas {q} (sum {sum(q.values())}) must be >= 0 and sum '
                     f'to at most total={total}')
  ids = [np.asarray(results[n][0], np.int64) for n in names]
  n_users = len(ids[0])
  for n, a in zip(names, ids):
    if a.ndim != 2 or len(a) != n_users:
      raise ValueError(f'merge_channels: channel {n!r} ids {a.shape} must be [{n_users}, k]')
  base = max(int(max((a.max(initial=0) for a in ids))) + 1, 1)
  row = np.arange(n_users, dtype=np.int64)[:, None] * base
  out = np.zeros((n_users, total), np.int32)
  src = np.full((n_users, total), -1, np.int8)
  fill = np.zeros(n_users, np.int64)
  taken = np.zeros(0, np.int64)
  for c, (n, a) in enumerate(zip(names, ids)):
    taken = _take(out, src, fill, taken, a, row + a, q[n], c)
  # Fill: interleave the channels by rank, [U, k_max, C] -> [U, k_max * C].
  k_max = max(a.shape[1] for a in ids)
  stack = np.stack([np.pad(a, ((0, 0), (0, k_max - a.shape[1]))) for a in ids], -1)
  chan = np.broadcast_to(np.arange(len(names), dtype=np.int8), stack.shape)
  stack, chan = stack.reshape(n_users, -1), chan.reshape(n_users, -1)
  _take(out, src, fill, taken, stack, row + stack, total, chan)
  return out, src
