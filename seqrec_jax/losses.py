"""Per-task losses of a batch: the one home of how each task kind (data/features.py) is fit."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from seqrec_jax.data.features import Task, watch_time_target


def labels_of(batch):
  """[B, T] float labels from 'labels' [B, T] or 'label' [B]."""
  y = batch['labels'] if 'labels' in batch else batch['label'][:, None]
  return y.astype(jnp.float32)


def watch_time_loss(z, t, form: str = 'soft_label'):
  """Per-example loss [B] of a watch-time head, logits z [B], watch times t [B] >= 0.

  soft_label: BCE(sigmoid(z), t / (1 + t)); optimum sigmoid(z) = E[t / (1 + t)].
  weighted:   (1 + t) BCE(sigmoid(z), t / (1 + t)) = -t log sigmoid(z) - log(1 - sigmoid(z));
              its derivative -t (1 - sigmoid(z)) + sigmoid(z) vanishes in expectation at
              exp(z) = E[t] (YouTube's weighted logistic regression).
  Both are served as exp(z) (steps.task_outputs)."""
  if form == 'soft_label':
    return optax.sigmoid_binary_cross_entropy(z, watch_time_target(t))
  if form == 'weighted':
    # softplus(-z) = -log sigmoid(z), softplus(z) = -log(1 - sigmoid(z)): stable for any z.
    return t * jax.nn.softplus(-z) + jax.nn.softplus(z)
  raise ValueError(f'unknown watch-time loss {form!r}; choose soft_label | weighted')


def task_losses(logits, labels, tasks: Sequence[Task], weight=None):
  """logits, labels [B, T] -> per-task mean loss [T]: BCE for binary and completion_rate (soft
  label), `watch_time_loss` (Task.loss) for watch_time, MSE for regression
  (data/features.py)."""
  per = []
  for j, t in enumerate(tasks):
    if t.kind in ('binary', 'completion_rate'):
      l = optax.sigmoid_binary_cross_entropy(logits[:, j], labels[:, j])
    elif t.kind == 'watch_time':
      l = watch_time_loss(logits[:, j], labels[:, j], t.loss or 'soft_label')
    elif t.kind == 'regression':
      l = jnp.square(logits[:, j] - labels[:, j])
    else:
      raise ValueError(f'unknown task kind {t.kind!r} for task {t.name!r}')
    if weight is None:
      per.append(l.mean())
    else:
      per.append((l * weight).sum() / jnp.maximum(weight.sum(), 1e-12))
  return jnp.stack(per)
