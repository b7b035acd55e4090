"""Per-task losses of a batch: the one home of how each task kind (data/features.py) is fit."""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import optax

from seqrec_jax.data.features import Task, watch_time_target


def labels_of(batch):
  """[B, T] float labels from 'labels' [B, T] or 'label' [B]."""
  y = batch['labels'] if 'labels' in batch else batch['label'][:, None]
  return y.astype(jnp.float32)


def task_losses(logits, labels, tasks: Sequence[Task], weight=None):
  """logits, labels [B, T] -> per-task mean loss [T]: BCE for binary and completion_rate (soft
  label), BCE against t / (1 + t) for watch_time, MSE for regression (data/features.py)."""
  per = []
  for j, t in enumerate(tasks):
    if t.kind in ('binary', 'completion_rate'):
      l = optax.sigmoid_binary_cross_entropy(logits[:, j], labels[:, j])
    elif t.kind == 'watch_time':
      l = optax.sigmoid_binary_cross_entropy(logits[:, j], watch_time_target(labels[:, j]))
    elif t.kind == 'regression':
      l = jnp.square(logits[:, j] - labels[:, j])
    else:
      raise ValueError(f'unknown task kind {t.kind!r} for task {t.name!r}')
    if weight is None:
      per.append(l.mean())
    else:
      per.append((l * weight).sum() / jnp.maximum(weight.sum(), 1e-12))
  return jnp.stack(per)
