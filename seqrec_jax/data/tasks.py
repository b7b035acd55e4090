"""Task selection (config.data.tasks): train and evaluate on a subset of a dataset's tasks.

`select_tasks(ds, ('income',))` returns the same dataset whose spec lists only the named tasks
and whose splits serve `label` [B] (one task) or `labels` [B, T'] (several), so single-task
models and tables (e.g. census income for DCN) need no change in the loader or the prepared
files. An empty selection keeps every task.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from seqrec_jax.data.features import labels_2d
from seqrec_jax.data.pipeline import Dataset


class TaskSplit:
  """A split with its label columns restricted to `columns` (indices into the original)."""

  def __init__(self, split, columns: Sequence[int]):
    self.split, self.columns = split, list(columns)
    if hasattr(split, 'all'):
      self.all = self._all

  def __len__(self) -> int:
    return len(self.split)

  def _select(self, batch):
    out = {k: v for k, v in batch.items() if k not in ('label', 'labels')}
    y = np.asarray(labels_2d(batch))[:, self.columns]
    if len(self.columns) == 1:
      out['label'] = y[:, 0]
    else:
      out['labels'] = y
    return out

  def __getitems__(self, indices):
    return self._select(self.split.__getitems__(indices))

  def _all(self):
    return self._select(self.split.all())


def select_tasks(ds: Dataset, names: Sequence[str], source: str = 'config.data.tasks') -> Dataset:
  """Keeps the tasks named in `names` (in that order); () keeps all."""
  if not names:
    return ds
  have = [t.name for t in ds.spec.tasks]
  missing = [n for n in names if n not in have]
  if missing or len(set(names)) != len(names):
    raise ValueError(f'{source}={tuple(names)!r}: dataset {ds.name!r} has tasks {have}'
                     + (f'; unknown: {missing}' if missing else '; names repeat'))
  if list(names) == have:
    return ds
  cols = [have.index(n) for n in names]
  spec = dataclasses.replace(ds.spec, tasks=tuple(ds.spec.tasks[j] for j in cols))
  oracle = ds.oracle_prob
  if oracle is not None:
    oracle = {k: np.asarray(v).reshape(len(v), -1)[:, cols].squeeze(-1) if len(cols) == 1
              else np.asarray(v).reshape(len(v), -1)[:, cols] for k, v in oracle.items()}
  return dataclasses.replace(ds, spec=spec, oracle_prob=oracle,
                             splits={k: TaskSplit(s, cols) for k, s in ds.splits.items()},
                             info=dict(ds.info, tasks=list(names)))
