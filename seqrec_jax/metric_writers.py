"""Where a run's metrics go: workdir/metrics.jsonl and TensorBoard event files in the workdir.

`MetricsWriter.write(record)` takes one flat record, e.g.
`{'step': 100, 'train/loss': 0.61, 'examples_per_sec': 5e4}`, `{'step': 200, 'eval/valid/auc': ...}`
or the final `{'step': 400, 'summary': {...}}`, optionally with `'run': s` (the s-th run of a
multi-run program), and writes it

- as one JSON line to workdir/metrics.jsonl (same keys; what the studies and tests read), and
- as TensorBoard scalars, tag = key (the summary's numbers under `summary/<key>`), with the
  config as hyper-parameters once per log directory. A single run logs into the workdir
  itself; run s of a multi-run program into workdir/runs/<s>, so TensorBoard shows each run
  as its own line under the same tags.

Why TensorBoard's own writer (`tensorboard.summary.writer.event_file_writer`) and not
`clu.metric_writers`: clu's package imports its TensorFlow summary writer on import, and
TensorFlow must not enter .venv (tfds takes other code paths when it is importable); its other
TensorBoard writer needs torch. The `tensorboard` package writes and reads event files without
TensorFlow and is also the viewer (`tensorboard --logdir <workdir>`, docs/tensorboard.md).

Only process 0 writes. On resume, records past the restored step are dropped from
metrics.jsonl and TensorBoard is told to drop them too (a SessionLog START at the first
new step, TensorBoard's own restart marker). A torn last line (a crash mid-write) is dropped
with a warning; any other unparsable line is an error naming the file and line.
"""
from __future__ import annotations

import glob
import json
import math
import numbers
import os
import time
from typing import Any, Iterable

from absl import logging
import jax
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

METRICS_FILE = 'metrics.jsonl'


def read_metrics(path: str) -> list[dict[str, Any]]:
  """The records of a metrics.jsonl; a torn last line is dropped with a warning."""
  with open(path) as f:
    lines = f.read().split('\n')
  records = []
  last = max((i for i, l in enumerate(lines) if l.strip()), default=-1)
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if i == last:
        logging.warning('%s:%d: dropping a torn last line (a crash mid-write?): %r', path, i + 1,
                        line[:200])
        break
      raise ValueError(f'{path}:{i + 1}: not a JSON record ({e}); only the last line of a '
                       'metrics file may be torn') from e
  return records


def _flat_hparams(tree: Any, prefix: str = '') -> dict[str, bool | int | float | str]:
  """Config dict -> {'model.name': 'din', 'train.num_steps': 4, ...} with TensorBoard's types."""
  if hasattr(tree, 'to_dict'):
    tree = tree.to_dict()
  out = {}
  for k, v in tree.items():
    key = f'{prefix}{k}'
    if hasattr(v, 'to_dict') or isinstance(v, dict):
      out.update(_flat_hparams(v, key + '.'))
    elif isinstance(v, (bool, str)) or (isinstance(v, numbers.Real) and math.isfinite(v)):
      out[key] = v if isinstance(v, (bool, str)) else float(v) if isinstance(v, float) else int(v)
    else:                                       # tuples, None, ...: shown as text
      out[key] = str(v)
  return out


def _scalars(record: dict[str, Any]) -> Iterable[tuple[str, float]]:
  for k, v in record.items():
    if k in ('step', 'run'):
      continue
    if k == 'summary' and isinstance(v, dict):
      yield from ((f'summary/{t}', x) for t, x in _scalars(v))
    elif isinstance(v, numbers.Real) and not isinstance(v, bool):
      yield k, float(v)


class MetricsWriter:
  """metrics.jsonl + TensorBoard event files for one workdir; see the module docstring."""

  def __init__(self, workdir: str, resume_step: int, hparams: Any = None):
    self.workdir = workdir
    self.path = os.path.join(workdir, METRICS_FILE)
    self.resume_step = resume_step
    self.hparams = _flat_hparams(hparams) if hparams is not None else None
    self.enabled = jax.process_index() == 0
    self._tb: dict[int | None, EventFileWriter] = {}
    if self.enabled and os.path.exists(self.path):
      # Drop records past the restored step (the resumed run writes them again) and summaries.
      keep = [r for r in read_metrics(self.path)
              if r.get('step', 0) <= resume_step and 'summary' not in r]
      with open(self.path, 'w') as f:
        f.writelines(json.dumps(r, sort_keys=True) + '\n' for r in keep)

  def logdir(self, run: int | None = None) -> str:
    return self.workdir if run is None else os.path.join(self.workdir, 'runs', str(run))

  def _tb_writer(self, run: int | None, step: int) -> EventFileWriter:
    if run not in self._tb:
      logdir = self.logdir(run)
      fresh = not glob.glob(os.path.join(logdir, 'events.out.tfevents.*'))
      w = EventFileWriter(logdir)
      if not fresh:        # resumed: TensorBoard drops the old file's events from this step on
        w.add_event(event_pb2.Event(
            wall_time=time.time(), step=self.resume_step + 1,
            session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
      if fresh and self.hparams is not None:
        hp = dict(self.hparams, **({} if run is None else {'run': run}))
        w.add_event(event_pb2.Event(wall_time=time.time(), step=step,
                                    summary=hparams_summary.hparams_pb(hp)))
      self._tb[run] = w
    return self._tb[run]

  def write(self, record: dict[str, Any]):
    if not self.enabled:
      return
    with open(self.path, 'a') as f:
      f.write(json.dumps(record, sort_keys=True) + '\n')
    run, step = record.get('run'), int(record.get('step', 0))
    w = self._tb_writer(run, step)
    values = [summary_pb2.Summary.Value(tag=t, simple_value=x) for t, x in _scalars(record)]
    if values:
      w.add_event(event_pb2.Event(wall_time=time.time(), step=step,
                                  summary=summary_pb2.Summary(value=values)))
    if 'summary' in record:   # a run's last record: release its writer (thread, file)
      self._tb.pop(run).close()
    else:
      w.flush()

  def close(self):
    for w in self._tb.values():
      w.close()
    self._tb.clear()
