"""Per-id occurrence counts n_j over the training split (DIN paper Sec. 4.3.1, eq. 4).

n_j is the number of training samples in which id j occurs (a sample counts once even when the
id repeats in its history). One count vector per embedding table, keyed by the table's name in
`layers.embedding.Embedder`:
  item  <- target_item and the real positions of hist_items
  cate  <- target_cate and the real positions of hist_cates
  user  <- user_id
  sparse_<field> <- sparse[:, j]
Id 0 (padding / OOV) is counted like any other id; the regulariser ignores it.

`IdCounts` is attached to `DataSpec.id_counts` by `data.load_dataset` and counts lazily, once,
on first use (only models with model.mba_lambda > 0 ask), in chunks for splits on disk. It is
hashable by identity of the split it counts, so a jitted model never reuses another dataset's
counts.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np


def _rows_with_id(ids: np.ndarray, vocab: int) -> np.ndarray:
  """ids [N, K] -> [vocab]: number of rows holding each id at least once."""
  s = np.sort(ids.reshape(len(ids), -1), axis=1)
  first = np.ones(s.shape, bool)
  first[:, 1:] = s[:, 1:] != s[:, :-1]
  return np.bincount(s[first], minlength=vocab)[:vocab].astype(np.int64)


def count_ids(arrays: Mapping[str, np.ndarray], spec) -> dict[str, np.ndarray]:
  """Counts for one chunk of batch-contract rows: {table: counts [vocab]}."""
  out = {}
  mask = arrays.get('hist_mask')
  for table, key, hist_key, vocab in (('item', 'target_item', 'hist_items', spec.num_items),
                                      ('cate', 'target_cate', 'hist_cates', spec.num_cates)):
    if not vocab or key not in arrays:
      continue
    cols = [np.asarray(arrays[key])[:, None]]
    if spec.max_len and hist_key in arrays:
      # Padding positions hold 0 already; masking keeps a stray id there from counting.
      cols.append(np.where(mask, arrays[hist_key], 0) if mask is not None
                  else arrays[hist_key])
    out[table] = _rows_with_id(np.concatenate(cols, axis=1), vocab)
  if 'user_id' in arrays:
    out['user'] = _rows_with_id(np.asarray(arrays['user_id'])[:, None], spec.num_users)
  for j, f in enumerate(spec.sparse):
    out[f'sparse_{f.name}'] = _rows_with_id(np.asarray(arrays['sparse'])[:, j:j + 1],
                                            f.vocab_size)
  return out


def count_split(split, spec, chunk: int = 1 << 16) -> dict[str, np.ndarray]:
  """count_ids over a whole split (in memory via .all(), else read in chunks)."""
  if hasattr(split, 'all'):
    return count_ids(split.all(), spec)
  total: dict[str, np.ndarray] = {}
  n = len(split)
  for start in range(0, n, chunk):
    part = count_ids(split.__getitems__(np.arange(start, min(n, start + chunk))), spec)
    for k, v in part.items():
      total[k] = total[k] + v if k in total else v
  return total


class IdCounts:
  """Lazy training-split counts n_j per table; `counts(table) -> [vocab] int64`."""

  def __init__(self, split, spec):
    self._split, self._spec = split, spec
    self._counts: dict[str, np.ndarray] | None = None

  @classmethod
  def from_counts(cls, counts: Mapping[str, np.ndarray]) -> IdCounts:
    """Counts given directly (tests, hand-made batches)."""
    out = cls(None, None)
    out._counts = {k: np.asarray(v, np.int64) for k, v in counts.items()}
    return out

  def counts(self, table: str) -> np.ndarray:
    if self._counts is None:
      self._counts = count_split(self._split, self._spec)
    if table not in self._counts:
      raise KeyError(f'no id counts for embedding table {table!r}; have {sorted(self._counts)}')
    return self._counts[table]

  def __hash__(self):
    return id(self)

  def __eq__(self, other):
    return self is other

  def __repr__(self):
    state = 'counted' if self._counts is not None else 'not counted yet'
    return f'IdCounts({state})'
