"""Evaluation over a whole split: batched jitted predictions, host-side metrics."""
from __future__ import annotations

import os
from typing import Callable, Sequence

import jax
import numpy as np

from seqrec_jax import metrics as M
from seqrec_jax.data.features import Task, labels_2d
from seqrec_jax.data.pipeline import Split, eval_batches


def predict(eval_fn: Callable, state, split: Split, batch_size: int, to_device: Callable,
            process_index: int = 0, process_count: int = 1, run_axis: bool = False):
  """Returns (preds [N, T], labels [N, T], users [N]) for the whole split, in order.

  run_axis: eval_fn returns [S, B, T] (a multi-run group); preds are then [S, N, T]."""
  preds, labels, users = [], [], []
  for batch, n_valid in eval_batches(split, batch_size, process_index, process_count):
    p = eval_fn(state, to_device(batch))
    # Outputs are replicated, so every process holds all rows of the global batch.
    p = np.asarray(jax.device_get(p))
    preds.append(p[:, :n_valid] if run_axis else p[:n_valid])
  # Labels/users come from the host split directly (all rows, every process).
  n = len(split)
  for start in range(0, n, 65536):
    rows = np.arange(start, min(n, start + 65536))
    b = split.__getitems__(rows)
    labels.append(np.asarray(labels_2d(b), np.float64))
    users.append(np.asarray(b['user_id']))
  return (np.concatenate(preds, axis=1 if run_axis else 0), np.concatenate(labels),
          np.concatenate(users))


def split_metrics(preds, labels, users, tasks: Sequence[Task], prefix: str) -> dict[str, float]:
  """Metric names: f'{prefix}/auc' for one task, f'{prefix}/{task}/auc' for several, plus
  f'{prefix}/mean/<metric>' (the mean over the tasks that have it; select with
  config.train.select_task='mean')."""
  out = {}
  for j, t in enumerate(tasks):
    name = prefix if len(tasks) == 1 else f'{prefix}/{t.name}'
    if t.kind == 'binary':
      for k, v in M.binary_metrics(labels[:, j], preds[:, j], users).items():
        out[f'{name}/{k}'] = v
    elif t.kind in ('watch_time', 'completion_rate'):
      for k, v in M.continuous_metrics(labels[:, j], preds[:, j]).items():
        out[f'{name}/{k}'] = v
      if t.kind == 'completion_rate':
        out[f'{name}/logloss'] = M.logloss(labels[:, j], preds[:, j])
    else:
      out[f'{name}/mse'] = M.mse(labels[:, j], preds[:, j])
  if len(tasks) > 1:
    per_metric: dict[str, list[float]] = {}
    for key, v in list(out.items()):
      per_metric.setdefault(key.rsplit('/', 1)[1], []).append(v)
    for metric, vals in per_metric.items():
      out[f'{prefix}/mean/{metric}'] = float(np.mean(vals))
  return out


def predictions_path(workdir: str, split: str, run: int | None = None) -> str:
  """<workdir>/predictions_<split>.npz, or predictions_<split>_run<r>.npz for run r of a group."""
  suffix = '' if run is None else f'_run{run}'
  return os.path.join(workdir, f'predictions_{split}{suffix}.npz')


def save_predictions(workdir: str, split: str, preds, labels, users, run: int | None = None):
  """Writes preds [N, T] (float32), labels [N, T] (uint8 for 0/1, else float32), users [N]."""
  labels = np.asarray(labels)
  small = np.all((labels == 0) | (labels == 1))
  path = predictions_path(workdir, split, run)
  os.makedirs(workdir, exist_ok=True)
  tmp = path + '.tmp.npz'
  np.savez(tmp, preds=np.asarray(preds, np.float32),
           labels=labels.astype(np.uint8 if small else np.float32), users=np.asarray(users))
  os.replace(tmp, path)


def load_predictions(workdir: str, split: str = 'test', run: int | None = None):
  """(preds [N, T], labels [N, T], users [N]) or None when the run saved none."""
  path = predictions_path(workdir, split, run)
  if not os.path.exists(path):
    return None
  with np.load(path) as f:
    return f['preds'], f['labels'].astype(np.float64), f['users']
