"""Packed histories: compute attention on real behaviours only (same maths, less work).

A batch's histories are [B, L] with a padding mask; with lengths spread over [1, L] about
half the positions are padding, and a dense attention unit spends half its time on them.
`add_history_index` adds `hist_index` [C] to a host batch: the flat positions (b * L + l) of
the real behaviours in row-major order, then -1 up to a capacity C that is rounded up to a
multiple of `granule` = ceil(B * L / buckets). Units that support it (`packable`: DIN and the
sum/mean/max poolings) then run on [C, D] rows instead of [B, L, D]; the result and its
gradients are those of the dense path (tests/test_packing.py), since padding contributes
nothing there either. Rounding C to `buckets` sizes bounds the number of compiled step
shapes (one per capacity seen, at most `buckets`; with realistic batches 1-3). Batches with
more than `max_fill` real positions are left padded (one more compiled shape).

A multi-run group's train batch is [S, B, L] (S runs, each with its own rows):
`add_group_history_index` gives every run its own flat indices in `hist_index` [S, C], with
one capacity C for the S runs of the step (the capacity of the largest run's count, so still at
most `buckets` shapes) and filler -1; the group packs or stays padded as a whole, decided by
its fullest run (the packed work is S * C). Inside the group's lax.map / vmap each run sees its
own [C] index. For S = 1 the index is the single run's (`add_history_index`), element for
element. A group's eval batches are shared by its runs and packed by `add_history_index`.

Only for single-device runs: under data parallelism the flat positions would cross shards,
so train.py packs only when the run has one device.
"""
from __future__ import annotations

import numpy as np

INDEX_KEY = 'hist_index'


def capacity(n_real: int, total: int, buckets: int) -> int:
  """Smallest multiple of ceil(total / buckets) that holds n_real (at least one granule)."""
  granule = max(1, -(-total // buckets))
  return max(granule, -(-n_real // granule) * granule)


def history_index(mask: np.ndarray, buckets: int = 32) -> np.ndarray:
  """mask [B, L] bool -> int32 [C]: flat indices of True entries (row-major), then -1."""
  mask = np.asarray(mask)
  if mask.ndim != 2:
    raise ValueError(f'hist_mask must be [B, L], got shape {mask.shape}')
  return group_history_index(mask[None], buckets)[0]      # a group of one run


def add_history_index(batch: dict, buckets: int = 32, max_fill: float = 0.8) -> dict:
  """Returns batch with INDEX_KEY [C] added (a new dict; arrays are not copied), or batch itself
  when more than `max_fill` of its positions are real: with little padding the padded path's
  per-example kernel is faster than per-row packing (full histories, L=100/200: 1.15-1.2x).
  The decision and the index are those of `add_group_history_index` for a group of one."""
  if 'hist_mask' not in batch:
    return batch
  mask = np.asarray(batch['hist_mask'])
  if mask.ndim != 2:
    raise ValueError(f'hist_mask must be [B, L], got shape {mask.shape}')
  group = add_group_history_index({'hist_mask': mask[None]}, buckets, max_fill)
  if INDEX_KEY not in group:
    return batch
  out = dict(batch)
  out[INDEX_KEY] = group[INDEX_KEY][0]
  return out


def group_history_index(masks: np.ndarray, buckets: int = 32) -> np.ndarray:
  """masks [S, B, L] bool -> int32 [S, C]: row s the flat indices of masks[s]'s True entries
  (row-major), then -1; C = capacity of the largest run's count (one shape for the group)."""
  masks = np.asarray(masks)
  if masks.ndim != 3:
    raise ValueError(f'a group\'s hist_mask must be [S, B, L], got shape {masks.shape}')
  flats = [np.flatnonzero(m.reshape(-1)) for m in masks]
  n_max = max((f.size for f in flats), default=0)
  out = np.full((len(flats), capacity(n_max, masks[0].size, buckets)), -1, np.int32)
  for s, f in enumerate(flats):
    out[s, :f.size] = f
  return out


def add_group_history_index(batch: dict, buckets: int = 32, max_fill: float = 0.8) -> dict:
  """add_history_index for a group's stacked batch (hist_mask [S, B, L]): INDEX_KEY [S, C]
  added (a new dict), or batch itself when its fullest run has more than `max_fill` of its
  positions real (one decision, one shape, for the whole group; S = 1: the single run's)."""
  if 'hist_mask' not in batch:
    return batch
  mask = np.asarray(batch['hist_mask'])
  if mask.size == 0 or mask.reshape(mask.shape[0], -1).mean(axis=1).max() > max_fill:
    return batch
  out = dict(batch)
  out[INDEX_KEY] = group_history_index(mask, buckets)
  return out
