"""Which differences between a study's rows are resolved.

For every row compared with its baseline (same study, same data):
  * each metric's mean paired difference row - baseline over the seeds both have, with a 95%
    Student-t interval (metrics.paired_diff_ci): the training-seed noise;
  * for GAUC, a bootstrap over test users of the seed-averaged difference, from the test
    predictions each cell saved with train.save_predictions (metrics.bootstrap_gauc_diff): the
    test-set sampling noise that seed spread leaves out.
A GAUC difference is marked resolved only when both intervals exclude zero (the seed interval
alone when no predictions were saved); other metrics by their seed interval.
"""
from __future__ import annotations

import math
import os
from typing import Callable, Iterable, Sequence

import numpy as np

from seqrec_jax import evaluate, metrics

GAUC = 'eval/test/gauc'
SHORT = {'eval/test/gauc': 'test GAUC', 'eval/test/auc': 'test AUC',
         'eval/test/logloss': 'test logloss'}


def _name(metric: str) -> str:
  """'test GAUC' for 'eval/test/gauc', 'test income auc' for 'eval/test/income/auc'."""
  return SHORT.get(metric, metric.removeprefix('eval/').replace('/', ' '))


def cell_workdir(rec: dict, outdir: str) -> tuple[str, int | None]:
  """(workdir, run index or None) of a sweep record: 'workdir'/'run' when the multi-run engine
  wrote them, else <outdir>/work/<id> (sweep.run_sweep's single-run layout)."""
  return rec.get('workdir') or os.path.join(outdir, 'work', rec['id']), rec.get('run')


def test_predictions(rec: dict, outdir: str, task: int = 0):
  """(preds [N], labels [N], users [N]) of a record's best-valid state, or None."""
  workdir, run = cell_workdir(rec, outdir)
  out = evaluate.load_predictions(workdir, 'test', run)
  if out is None:
    return None
  preds, labels, users = out
  return preds[:, task], labels[:, task], users


def compare(records: Iterable[dict], row_of: Callable[[dict], str], baseline: str,
            outdir: str, metric_keys: Sequence[str] = (GAUC,), task: int = 0,
            n_boot: int = 1000, rows: Sequence[str] | None = None) -> list[dict]:
  """Each row (other than `baseline`) against `baseline`, paired by seed.

  Returns [{row, baseline, n, <metric>: paired_diff_ci dict, 'boot': bootstrap dict | None,
  'resolved': {metric: bool}}] in first-seen row order (or `rows`' order).
  """
  by_row: dict[str, dict[int, dict]] = {}
  for r in records:
    by_row.setdefault(row_of(r), {})[r['seed']] = r
  if baseline not in by_row:
    return []
  base = by_row[baseline]
  out = []
  for row in (rows or list(by_row)):
    if row == baseline or row not in by_row:
      continue
    cur = by_row[row]
    seeds = sorted(set(cur) & set(base))
    res = {'row': row, 'baseline': baseline, 'n': len(seeds), 'resolved': {}}
    for m in metric_keys:
      a = {s: cur[s]['summary'].get(m, math.nan) for s in seeds}
      b = {s: base[s]['summary'].get(m, math.nan) for s in seeds}
      res[m] = metrics.paired_diff_ci(a, b)
      res['resolved'][m] = res[m]['resolved']
    res['boot'] = _bootstrap(cur, base, seeds, outdir, task, n_boot) if GAUC in metric_keys \
        else None
    if res['boot'] is not None:
      res['resolved'][GAUC] = res['resolved'][GAUC] and res['boot']['resolved']
    out.append(res)
  return out


def _bootstrap(cur, base, seeds, outdir, task, n_boot):
  pa, pb, ref = [], [], None
  for s in seeds:
    a, b = test_predictions(cur[s], outdir, task), test_predictions(base[s], outdir, task)
    if a is None or b is None:
      return None
    if ref is None:
      ref = a
    for x in (a, b):   # every run must have scored the same test rows
      if len(x[1]) != len(ref[1]) or not (np.array_equal(x[1], ref[1])
                                          and np.array_equal(x[2], ref[2])):
        return None
    pa.append(a[0])
    pb.append(b[0])
  if ref is None:
    return None
  return metrics.bootstrap_gauc_diff(ref[1], np.stack(pa), np.stack(pb), ref[2], n_boot=n_boot)


def markdown(comparisons: Sequence[dict], metric_keys: Sequence[str] = (GAUC,),
             title: str = '', digits: int = 4) -> str:
  """A table: one line per row vs baseline; '*' marks an interval that excludes zero."""
  if not comparisons:
    return ''
  head = ['Row', 'vs', 'seeds']
  for m in metric_keys:
    head.append(f'Δ {_name(m)} (95% CI, seeds)')
    if m == GAUC:
      head.append('Δ test GAUC (95% bootstrap, test users)')
  head.append('resolved')
  lines = ([f'{title}', ''] if title else []) + ['| ' + ' | '.join(head) + ' |',
                                                 '|' + '---|' * len(head)]
  for c in comparisons:
    cells = [c['row'], c['baseline'], str(c['n'])]
    for m in metric_keys:
      cells.append(metrics.format_diff(c[m], digits))
      if m == GAUC:
        cells.append(metrics.format_diff(c['boot'], digits) if c['boot'] else
                     'n/a (no saved predictions)')
    won = [_name(m).replace('test ', '') for m in metric_keys if c['resolved'].get(m)]
    cells.append(', '.join(won) if won else 'none')
    lines.append('| ' + ' | '.join(cells) + ' |')
  note = 'Δ = row − baseline, paired by seed (mean and 95% t-interval over seeds). '
  if GAUC in metric_keys:
    note += ('The bootstrap resamples test users (1000 draws, percentile interval) for the '
             'seed-averaged GAUC difference. ')
  note += '* = the interval excludes 0. "resolved" lists the metrics whose difference is resolved'
  note += '; for GAUC both intervals must exclude 0.' if GAUC in metric_keys else '.'
  lines += ['', note]
  return '\n'.join(lines) + '\n'
