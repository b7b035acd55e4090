"""Evaluation over a whole split: batched jitted predictions, host-side metrics."""
from __future__ import annotations

import os
from typing import Callable, Sequence

import jax
import numpy as np

from seqrec_jax import metrics as M
from seqrec_jax.data.features import Task, labels_2d
from seqrec_jax.data.pipeline import Split, eval_batches


def outputs(eval_fn: Callable, variables, split: Split, batch_size: int, to_device: Callable,
            process_index: int = 0, process_count: int = 1, axis: int = 0):
  """eval_fn(variables, device batch) -> a pytree of replicated arrays whose `axis` is the
  batch's rows (1 under a leading run axis [S, B, ...]); returns the same pytree of host numpy
  arrays over the whole split in order, the last batch's padding dropped."""
  out = []
  for batch, n_valid in eval_batches(split, batch_size, process_index, process_count):
    # Outputs are replicated, so every process holds all rows of the global batch.
    p = jax.device_get(eval_fn(variables, to_device(batch)))
    keep = (slice(None),) * axis + (slice(n_valid),)
    out.append(jax.tree.map(lambda x, k=keep: np.asarray(x)[k], p))
  return jax.tree.map(lambda *xs: np.concatenate(xs, axis=axis), *out)


def labels_and_users(split: Split):
  """(labels [N, T] float64, users [N]) of the whole split, read on the host (every process)."""
  labels, users = [], []
  n = len(split)
  for start in range(0, n, 65536):
    b = split.__getitems__(np.arange(start, min(n, start + 65536)))
    labels.append(np.asarray(labels_2d(b), np.float64))
    users.append(np.asarray(b['user_id']))
  return np.concatenate(labels), np.concatenate(users)


def predict(eval_fn: Callable, state, split: Split, batch_size: int, to_device: Callable,
            process_index: int = 0, process_count: int = 1, run_axis: bool = False):
  """Returns (preds [N, T], labels [N, T], users [N]) for the whole split, in order.

  run_axis: eval_fn returns [S, B, T] (a multi-run group); preds are then [S, N, T]."""
  preds = outputs(eval_fn, state, split, batch_size, to_device, process_index, process_count,
                  axis=1 if run_axis else 0)
  return (preds, *labels_and_users(split))


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
