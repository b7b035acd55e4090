"""Frequency filter (DIN paper Sec. 6.5, Table 4's "Filter" row; config.data.item_top_k).

Keeps the `top_k` item ids that occur in the most training samples (n_j of data/id_counts.py;
ties broken towards the smaller id) and maps every other item id to 0 (OOV), in targets and
histories of every split. The vocabulary size is unchanged (dropped ids' rows are simply never
read), so models and checkpoints keep their shapes. A history position whose item is dropped
stays a real behaviour (its category is kept): only the goods id is filtered, as in the paper.
top_k = -1 keeps no item id: every item reads OOV 0 (one shared row, no information), the
categories stay: Table 4's "without goods_ids" reference row.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from seqrec_jax.data.id_counts import count_split
from seqrec_jax.data.pipeline import Dataset

_ITEM_KEYS = ('target_item', 'hist_items')


def kept_items(item_counts: np.ndarray, top_k: int) -> np.ndarray:
  """item_counts [vocab] -> bool [vocab]: the top_k most frequent non-zero ids (-1: none)."""
  if top_k < 0:
    return np.zeros(len(item_counts), bool)
  counts = np.asarray(item_counts).copy()
  counts[0] = -1                                        # id 0 is OOV already
  order = np.lexsort((np.arange(len(counts)), -counts))  # by count desc, then id asc
  keep = np.zeros(len(counts), bool)
  keep[order[:top_k]] = True
  keep &= counts > 0
  return keep


class FilteredSplit:
  """A split whose item ids outside `keep` read as 0."""

  def __init__(self, split, keep: np.ndarray):
    self.split, self.remap = split, np.where(keep, np.arange(len(keep)), 0).astype(np.int32)
    if hasattr(split, 'all'):
      self._all = None
      self.all = self._read_all

  def __len__(self) -> int:
    return len(self.split)

  def _apply(self, batch):
    return {k: (self.remap[v].astype(v.dtype) if k in _ITEM_KEYS else v)
            for k, v in batch.items()}

  def __getitems__(self, indices):
    if getattr(self, '_all', None) is not None:
      idx = np.asarray(indices)
      return {k: v[idx] for k, v in self._all.items()}
    return self._apply(self.split.__getitems__(indices))

  def _read_all(self):
    if self._all is None:
      self._all = self._apply(self.split.all())
    return self._all


def filter_items(ds: Dataset, top_k: int, source: str = 'config.data.item_top_k',
                 keep: np.ndarray | None = None) -> Dataset:
  """The dataset with item ids outside the training top_k mapped to 0; top_k = 0 keeps all,
  -1 none.

  keep: kept_items(...) when the caller has it (from stored counts); else counted here."""
  if top_k == 0:
    return ds
  if not ds.spec.num_items:
    raise ValueError(f'{source}={top_k}: dataset {ds.name!r} has no item ids to filter')
  if keep is None:
    keep = kept_items(count_split(ds.splits['train'], ds.spec)['item'], top_k)
  splits = {k: FilteredSplit(s, keep) for k, s in ds.splits.items()}
  return dataclasses.replace(ds, splits=splits,
                             info=dict(ds.info, item_top_k=int(top_k),
                                       items_kept=int(keep.sum())))
