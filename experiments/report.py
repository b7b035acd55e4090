"""A study's report layer: cells.csv, mean ± std tables, comparison tables, figures.

Every table is written as Markdown and CSV together (`write_table`). Statistics come from
experiments/stats.py. The data a report reads is compact and committed next to its tables:
  cells.csv      one line per cell: its group labels, seed, id, diverged, wall_seconds and
                 every metric the study reports (values JSON-typed: recheck reads them back);
  bootstrap.csv  one line per comparison test: the test-set bootstrap's point difference,
                 p-value and percentile interval at every level a Holm family of its size can
                 ask for (computed from the predictions cells save, or what a family's
                 `inputs` hook gives; `bootstrap_family`).
A study's tables are rendered from these two files only (experiments/study.py renders them
after writing them, experiments/recheck.py renders them again and diffs).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from experiments import stats
from seqrec_jax import evaluate

CELL_KEYS = ('seed', 'id', 'diverged', 'wall_seconds')


# ---- cells.csv / bootstrap.csv. ----

def cell_rows(records: Iterable[dict], metrics: Sequence[str]) -> list[dict]:
  """One flat row per sweep record: group labels, CELL_KEYS, then each metric (NaN if absent)."""
  rows = []
  for r in records:
    row = dict(r['group'])
    row.update(seed=r['seed'], id=r['id'], diverged=bool(r['summary'].get('diverged')),
               wall_seconds=r.get('wall_seconds', 0.0))
    for m in metrics:
      v = r['summary'].get(m, math.nan)
      row[m] = float(v) if isinstance(v, (int, float)) else math.nan
    rows.append(row)
  return rows


def _cell_text(v: Any) -> str:
  return v if isinstance(v, str) else json.dumps(v)


def _cell_value(s: str) -> Any:
  if s == 'NaN':
    return math.nan
  try:
    return json.loads(s)
  except ValueError:
    return s


def write_csv(rows: Sequence[dict], path: str) -> None:
  """rows (equal keys) as CSV, values JSON-encoded (floats round-trip exactly)."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  keys = list(dict.fromkeys(k for r in rows for k in r))
  with open(path, 'w', newline='') as f:
    w = csv.writer(f, lineterminator='\n')
    w.writerow(keys)
    for r in rows:
      w.writerow([_cell_text(r.get(k, math.nan)) for k in keys])


def read_csv(path: str) -> list[dict]:
  """The rows `write_csv` wrote, values typed back."""
  with open(path, newline='') as f:
    reader = csv.reader(f)
    keys = next(reader, None)
    if keys is None:
      raise ValueError(f'{path} is empty (expected a header line)')
    rows = []
    for n, line in enumerate(reader, 2):
      if len(line) != len(keys):
        raise ValueError(f'{path} line {n}: {len(line)} fields, the header has {len(keys)}')
      rows.append({k: _cell_value(v) for k, v in zip(keys, line)})
  return rows


# ---- Mean ± std tables. ----

def aggregate(records: Iterable[dict], metrics: Sequence[str]) -> list[dict]:
  """Groups sweep records by `group`: rows of mean/std/n of each metric, first-seen order
  (the unported studies' form of `aggregate_cells`)."""
  groups: dict[tuple, list[dict]] = {}
  for r in records:
    groups.setdefault(tuple(r['group'].items()), []).append(r)
  rows = []
  for key, recs in groups.items():
    row = dict(key)
    row['n_seeds'] = len(recs)
    for m in metrics:
      vals = np.array([r['summary'].get(m, float('nan')) for r in recs], dtype=np.float64)
      vals = vals[np.isfinite(vals)] if np.isfinite(vals).any() else vals
      row[m] = float(vals.mean()) if len(vals) else float('nan')
      row[m + '_std'] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    row['ids'] = [r['id'] for r in recs]
    # Runs of a group that diverged (non-finite loss, train.check_finite) report their
    # best-valid state and are averaged in; counted so every table says so (write_table).
    row['diverged_ids'] = [r['id'] for r in recs if r['summary'].get('diverged')]
    rows.append(row)
  return rows


def aggregate_cells(cells: Sequence[dict], by: Sequence[str], metrics: Sequence[str],
                    modal: Sequence[str] = ()) -> list[dict]:
  """Rows of cells.csv grouped by the `by` labels (first-seen order): mean, std (ddof 1) and
  n of each metric over its finite values. For the `modal` metrics a bimodal row
  (stats.modes) reports its trained runs' mean ± std and counts the collapsed ones
  (<metric>_collapsed)."""
  groups: dict[tuple, list[dict]] = {}
  for c in cells:
    groups.setdefault(tuple(c[k] for k in by), []).append(c)
  rows = []
  for key, cs in groups.items():
    row = dict(zip(by, key), n_seeds=len(cs), ids=[c['id'] for c in cs],
               diverged_ids=[c['id'] for c in cs if c.get('diverged')])
    for m in metrics:
      vals = np.array([c.get(m, math.nan) for c in cs], np.float64)
      if m in modal:
        collapsed, trained = stats.modes(vals, stats.higher_is_better(m))
        if collapsed:
          row[m + '_collapsed'] = f'{len(collapsed)} of {len(cs)}'
          vals = vals[trained]
      vals = vals[np.isfinite(vals)]
      row[m] = float(vals.mean()) if len(vals) else math.nan
      row[m + '_std'] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    rows.append(row)
  return rows


def fmt(mean: float, std: float, digits: int = 4) -> str:
  if mean is None or (isinstance(mean, float) and math.isnan(mean)):
    return 'n/a'
  return f'{mean:.{digits}f} ± {std:.{digits}f}'


def _fmt_value(v) -> str:
  if isinstance(v, float):
    if not np.isfinite(v):
      return 'n/a'
    return f'{v:,.0f}' if abs(v) >= 1000 else f'{v:.1f}' if abs(v) >= 10 else f'{v:.4f}'
  return str(v)


def write_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]], outdir: str,
                title: str = '', notes: str = '', basename: str = 'table') -> str:
  """columns: (header, key) pairs; a key with a '_std' sibling is shown as mean ± std (and,
  where its runs were bimodal, '(k of n collapsed: trained runs)').

  Writes <basename>.md and <basename>.csv (mean and std in separate CSV columns); returns the
  Markdown.
  """
  md = [f'### {title}', ''] if title else []
  md.append('| ' + ' | '.join(h for h, _ in columns) + ' |')
  md.append('|' + '|'.join('---' for _ in columns) + '|')
  collapsed = False
  for r in rows:
    cells = []
    for _, k in columns:
      if k + '_std' in r:
        text = fmt(r.get(k), r[k + '_std'])
        if k + '_collapsed' in r:
          text += f' ({r[k + "_collapsed"]} collapsed)'
          collapsed = True
        cells.append(text)
      else:
        cells.append(_fmt_value(r.get(k)))
    md.append('| ' + ' | '.join(cells) + ' |')
  if notes:
    md += ['', notes]
  if collapsed:
    md += ['', '"k of n collapsed": the runs split into a collapsed and a trained mode '
           '(experiments/stats.py, modes); mean ± std of the trained runs.']
  diverged = [i for r in rows for i in r.get('diverged_ids', ())]
  if diverged:
    md += ['', f'{len(diverged)} run(s) diverged (non-finite training loss) and are included '
           f'with their best-valid state: {", ".join(diverged)}.']
  text = '\n'.join(md) + '\n'
  os.makedirs(outdir, exist_ok=True)
  with open(os.path.join(outdir, f'{basename}.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(outdir, f'{basename}.csv'), 'w', newline='') as f:
    w = csv.writer(f, lineterminator='\n')
    header = []
    for h, k in columns:
      header += [h, h + ' std'] if rows and k + '_std' in rows[0] else [h]
    w.writerow(header)
    for r in rows:
      line = []
      for _, k in columns:
        line += [r.get(k), r.get(k + '_std')] if k + '_std' in r else [r.get(k)]
      w.writerow(line)
  return text


# ---- Comparisons. ----

@dataclasses.dataclass
class Family:
  """The comparisons of one table, Holm-corrected together: every (row, baseline) pair on
  every metric is one test. label: a cells.csv row -> its row label. unit: the cells.csv
  column that pairs row and baseline (the seed; or e.g. a data seed, whose runs are averaged
  first: runs that share a dataset are not independent). The bootstrap pairs runs by seed.

  Two optional hooks (None: cells.csv rows are the family's rows, and the bootstrap reads the
  cells' saved test predictions, the metric's columns of them by `_task_slice`):
    expand(cells) -> rows: the family's rows from cells.csv rows, e.g. one pseudo-row per
      fusion of a cell, each keeping the cell's 'id' and 'seed' (and `unit`), with its own
      label and its value under the family's metric key. by_label, pairing, compare and
      bootstrap_family all read the expanded rows.
    inputs(row, record, metric, outdir) -> (kind, labels, units, pred[, unit_name]) or None:
      what stats.bootstrap_diff resamples for one side of a test (record: the sweep record
      with row['id']; non-sweep studies pass records they build, dicts with 'id' at least).
      kind is a stats.KINDS name (None: stats.metric_kind(metric)), the same for both sides
      of a test; labels / units / pred as that kind's run tuple (kind 'mean': None, unit ids
      [U], values [U]; 'spearman': reference [N], users [N], prediction [N]; 'gauc', 'auc',
      'logloss', 'mse': labels [N, T], users [N], predictions [N, T]); unit_name labels the
      resampled unit ('requests'). Sides on identical labels and units are paired (one
      resample of that test set for both), else resampled apart.
      None for either side: that test has no bootstrap (its table says n/a).
  """
  name: str                                    # writes <name>.md / <name>.csv
  title: str
  pairs: Sequence[tuple[str, str]]             # (row, baseline) labels
  metrics: Sequence[str]
  label: Callable[[dict], str]
  unit: str = 'seed'
  expand: Callable[[list[dict]], list[dict]] | None = None
  inputs: Callable[[dict, dict, str, str], tuple | None] | None = None

  def tests(self) -> list[tuple[str, str, str]]:
    return [(row, base, m) for row, base in self.pairs for m in self.metrics]


def by_label(cells: Sequence[dict], family: Family) -> dict[str, list[dict]]:
  """The family's rows (family.expand(cells) when set, else cells) by label."""
  out: dict[str, list[dict]] = {}
  for c in (family.expand(list(cells)) if family.expand else cells):
    out.setdefault(family.label(c), []).append(c)
  return out


def pairing(by: Mapping[str, list[dict]], family: Family, row: str, base: str,
            metric: str) -> dict:
  """What a test compares: the trained runs of both rows (stats.modes), their means per
  unit, the units both have, the runs paired by seed within those units (the bootstrap's) and
  the collapsed runs' seeds."""
  for label in (row, base):
    if label not in by:
      raise KeyError(f'family {family.name!r}: no cells labelled {label!r} (labels: '
                     f'{sorted(by)})')
  hib = stats.higher_is_better(metric)
  out = {'collapsed': {}, 'means': {}, 'kept': {}, 'n_runs': (len(by[row]), len(by[base]))}
  for who, label in (('row', row), ('baseline', base)):
    cs = by[label]
    lost, kept = stats.modes([c.get(metric, math.nan) for c in cs], hib)
    out['collapsed'][who] = sorted(cs[i]['seed'] for i in lost)
    out['kept'][who] = {cs[i]['seed']: cs[i] for i in kept}
    units: dict[Any, list[float]] = {}
    for i in kept:
      units.setdefault(cs[i][family.unit], []).append(cs[i][metric])
    out['means'][who] = {u: float(np.mean(v)) for u, v in units.items()}
  out['units'] = sorted(set(out['means']['row']) & set(out['means']['baseline']))
  unit_set = set(out['units'])
  out['runs'] = [(out['kept']['row'][s], out['kept']['baseline'][s])
                 for s in sorted(set(out['kept']['row']) & set(out['kept']['baseline']))
                 if out['kept']['row'][s][family.unit] in unit_set]
  out['median_diff'] = float(np.median([c[metric] for c in out['kept']['row'].values()]
                                       or [math.nan])
                             - np.median([c[metric] for c in out['kept']['baseline'].values()]
                                         or [math.nan]))
  return out


def cell_workdir(rec: dict, outdir: str) -> tuple[str, int | None]:
  """(workdir, run index or None) of a sweep record: 'workdir'/'run' when the multi-run engine
  wrote them, else <outdir>/work/<id> (sweep.run_sweep's single-run layout)."""
  return rec.get('workdir') or os.path.join(outdir, 'work', rec['id']), rec.get('run')


def test_predictions(rec: dict, outdir: str):
  """(preds [N, T], labels [N, T], users [N]) of a record's best-valid state, or None."""
  workdir, run = cell_workdir(rec, outdir)
  return evaluate.load_predictions(workdir, 'test', run)


def _task_slice(metric: str, tasks: Sequence[str]):
  """Which prediction columns a metric scores: 'eval/test/<task>/<m>' one, '.../mean/<m>'
  all, 'eval/test/<m>' the first."""
  parts = metric.split('/')
  if len(parts) < 4:
    return slice(0, 1)
  if parts[-2] == 'mean':
    return slice(None)
  if parts[-2] not in tasks:
    raise ValueError(f'metric {metric!r}: task {parts[-2]!r} is not one of the study tasks '
                     f'{list(tasks)}')
  j = list(tasks).index(parts[-2])
  return slice(j, j + 1)


def _saved_inputs(row, rec, metric, outdir):
  """The default path's side of a test: a cell's saved test predictions, every column
  (bootstrap_family takes the metric's after pairing on the whole test set; None when the
  cell saved none)."""
  del row, metric
  got = test_predictions(rec, outdir)
  return None if got is None else (None, got[1], got[2], got[0])


def _cut(x, cols):
  """The metric's columns of labels / predictions [N, T] (cols None: a hook's, as given)."""
  return x if x is None or cols is None else x[:, cols]


def _same(x, y) -> bool:
  return (x is None and y is None) or (x is not None and y is not None
                                       and np.array_equal(x, y))


def bootstrap_family(family: Family, cells: Sequence[dict], records: Sequence[dict],
                     outdir: str, tasks: Sequence[str] = (), n_boot: int = stats.N_BOOT
                     ) -> list[dict]:
  """bootstrap.csv rows of a family's tests, from the test predictions its cells saved, or
  from family.inputs (a test whose cells saved none, or whose hook returns None, has no row:
  its table says n/a). Runs of both rows on one test set are paired; rows on different test
  sets are resampled apart."""
  rec_of = {r['id']: r for r in records}
  by = by_label(cells, family)
  m = len(family.tests())
  # Enough draws that the smallest bootstrap p ((1 + 0) / (1 + B) x 2) is half the strictest
  # Holm threshold alpha / m.
  n_boot = max(n_boot, math.ceil(4 * m / stats.ALPHA))
  out = []
  for k, (row, base, metric) in enumerate(family.tests()):
    pr = pairing(by, family, row, base, metric)
    inputs = family.inputs or _saved_inputs
    cols = None if family.inputs else _task_slice(metric, tasks)
    sides = []
    for ca, cb in pr['runs']:
      a = inputs(ca, rec_of[ca['id']], metric, outdir)
      b = None if a is None else inputs(cb, rec_of[cb['id']], metric, outdir)
      if a is None or b is None:
        sides = []
        break
      if a[0] != b[0]:
        raise ValueError(f'family {family.name!r}: {row} vs {base} on {metric}: the inputs '
                         f'hook gave kind {a[0]!r} for {ca["id"]} and {b[0]!r} for {cb["id"]} '
                         '(one test resamples one kind)')
      sides.append((a, b))
    if not sides:
      continue
    kind = sides[0][0][0]
    if any(a[0] != kind for a, _ in sides):
      raise ValueError(f'family {family.name!r}: {row} vs {base} on {metric}: the inputs hook '
                       f'gave kinds {sorted({str(a[0]) for a, _ in sides})} across seeds')
    unit_name = sides[0][0][4] if len(sides[0][0]) > 4 else None
    if all(_same(a[1], b[1]) and _same(a[2], b[2]) for a, b in sides):
      runs = [(_cut(a[1], cols), a[2], _cut(a[3], cols), _cut(b[3], cols)) for a, b in sides]
      minus = ()
    else:
      runs = [(_cut(a[1], cols), a[2], _cut(a[3], cols), None) for a, _ in sides]
      minus = [(_cut(b[1], cols), b[2], _cut(b[3], cols)) for _, b in sides]
    b = stats.bootstrap_diff(metric, runs, n_boot=n_boot, seed=k, minus=minus, kind=kind,
                             unit_name=unit_name)
    ivs = [stats.boot_interval(b['draws'], lv) for lv in stats.holm_levels(m)]
    out.append({'table': family.name, 'row': row, 'baseline': base, 'metric': metric,
                'seeds': [ca['seed'] for ca, _ in pr['runs']], 'paired': not minus,
                'unit': b['unit'], 'n_units': b['n_units'], 'n_boot': b['n_boot'],
                'mean': b['mean'], 'p': b['p'],
                'lo': [lo for lo, _ in ivs], 'hi': [hi for _, hi in ivs]})
  return out


def compare(cells: Sequence[dict], family: Family, boot: Sequence[dict],
            alpha: float = stats.ALPHA) -> list[dict]:
  """Every test of the family: the paired interval over units and the bootstrap, each
  Holm-corrected over the family; resolved = both reject (a test without a bootstrap, its
  cells having saved no predictions, is never resolved)."""
  by = by_label(cells, family)
  boots = {(b['row'], b['baseline'], b['metric']): b for b in boot
           if b['table'] == family.name}
  res = []
  for row, base, metric in family.tests():
    pr = pairing(by, family, row, base, metric)
    sd = stats.seed_diff({u: pr['means']['row'][u] for u in pr['units']},
                         {u: pr['means']['baseline'][u] for u in pr['units']})
    b = boots.get((row, base, metric))
    seeds = [ca['seed'] for ca, _ in pr['runs']]
    if b is not None and b['seeds'] != seeds:
      raise ValueError(f'bootstrap.csv: {family.name} {row} vs {base} {metric} paired seeds '
                       f'{b["seeds"]}, cells.csv pairs {seeds}')
    res.append({'row': row, 'baseline': base, 'metric': metric, 'seed': sd, 'boot': b,
                'collapsed': pr['collapsed'], 'n_runs': pr['n_runs'],
                'median_diff': pr['median_diff']})
  m = len(res)
  seed_rej, seed_lv = stats.holm([r['seed']['p'] for r in res], alpha)
  boot_rej, boot_lv = stats.holm([r['boot']['p'] if r['boot'] else math.nan for r in res],
                                 alpha)
  for r, sr, sl, br, bl in zip(res, seed_rej, seed_lv, boot_rej, boot_lv):
    r['seed_interval'] = stats.t_interval(r['seed'], sl)
    r['seed_level'], r['seed_resolved'] = sl, sr
    if r['boot']:
      j = round(alpha / (1 - bl)) - 1           # level 1 - alpha / (j + 1)
      r['boot_interval'] = (r['boot']['lo'][j], r['boot']['hi'][j])
      r['boot_level'], r['boot_resolved'] = bl, br
    r['resolved'] = bool(sr and r['boot'] and br)
    r['family_size'] = m
  return res


def _diff(mean: float, iv: tuple[float, float], resolved: bool, digits: int = 4) -> str:
  if not np.isfinite(mean):
    return 'n/a'
  if not all(np.isfinite(iv)):
    return f'{mean:+.{digits}f} [n/a]'
  return f'{mean:+.{digits}f} [{iv[0]:+.{digits}f}, {iv[1]:+.{digits}f}]' + (
      '*' if resolved else '')


def metric_name(metric: str) -> str:
  """'test GAUC' for 'eval/test/gauc', 'test income auc' for 'eval/test/income/auc'."""
  short = {'eval/test/gauc': 'test GAUC', 'eval/test/auc': 'test AUC',
           'eval/test/logloss': 'test logloss'}
  return short.get(metric, metric.removeprefix('eval/').replace('/', ' '))


def write_comparisons(results: Sequence[dict], family: Family, outdir: str,
                      notes: str = '') -> str:
  """<family.name>.md / .csv: one line per test; returns the Markdown."""
  units = 'seeds' if family.unit == 'seed' else f'{family.unit}s'
  head = ['row', 'vs', 'metric', units, f'Δ (Holm CI, {units})', 'Δ (Holm CI, test-set '
          'bootstrap)', 'resolved']
  modal = any(r['collapsed']['row'] or r['collapsed']['baseline'] for r in results)
  if modal:
    head.insert(4, 'collapsed runs (row, vs)')
    head.insert(5, 'Δ medians (trained runs)')
  lines = [f'### {family.title}', '', '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  csv_rows = []
  for r in results:
    b = r['boot']
    cells = [r['row'], r['baseline'], metric_name(r['metric']), str(r['seed']['n']),
             _diff(r['seed']['mean'], r['seed_interval'], r['seed_resolved']),
             _diff(b['mean'], r['boot_interval'], r['boot_resolved']) if b else
             'n/a (no saved predictions)' if family.inputs is None else
             'n/a (no bootstrap inputs)', 'yes' if r['resolved'] else 'no']
    if modal:
      cells.insert(4, f'{len(r["collapsed"]["row"])} of {r["n_runs"][0]}, '
                      f'{len(r["collapsed"]["baseline"])} of {r["n_runs"][1]}')
      cells.insert(5, f'{r["median_diff"]:+.4f}')
    lines.append('| ' + ' | '.join(cells) + ' |')
    csv_rows.append({
        'row': r['row'], 'baseline': r['baseline'], 'metric': r['metric'],
        'seeds': r['seed']['n'], 'collapsed_row': len(r['collapsed']['row']),
        'collapsed_baseline': len(r['collapsed']['baseline']),
        'median_diff': r['median_diff'], 'seed_mean': r['seed']['mean'],
        'seed_p': r['seed']['p'], 'seed_level': r['seed_level'],
        'seed_lo': r['seed_interval'][0], 'seed_hi': r['seed_interval'][1],
        'seed_resolved': r['seed_resolved'],
        'boot_unit': b['unit'] if b else '', 'boot_mean': b['mean'] if b else math.nan,
        'boot_p': b['p'] if b else math.nan,
        'boot_level': r.get('boot_level', math.nan),
        'boot_lo': r['boot_interval'][0] if b else math.nan,
        'boot_hi': r['boot_interval'][1] if b else math.nan,
        'boot_resolved': r.get('boot_resolved', False), 'resolved': r['resolved']})
  resampled = sorted({f'{b["unit"]} ({b["n_units"]:,}, {b["n_boot"]} draws)'
                      for r in results if (b := r['boot'])})
  m = len(results)
  over = ('the seeds both ran (paired)' if family.unit == 'seed' else
          f'the {units} both ran (paired; each {family.unit} the mean of its runs)')
  lines += ['', (f'Δ = row − vs over {over}. Family: {m} test(s) (every '
                 f'row pair × metric of this table), Holm step-down at α = {stats.ALPHA} '
                 'within it, separately for the seed t-intervals and the test-set bootstrap '
                 '(percentile) intervals; each interval is shown at its Holm level, so it '
                 'excludes 0 (*) exactly when Holm rejects. resolved = both reject (never without '
                 'a bootstrap). '
                 'Bootstrap resamples: ' + (', '.join(resampled) if resampled else 'none') + '.')]
  if modal:
    lines += ['', 'Collapsed runs (experiments/stats.py, modes) are left out of the '
              'intervals: they pair only seeds where both runs trained.']
  if notes:
    lines += ['', notes]
  text = '\n'.join(lines) + '\n'
  os.makedirs(outdir, exist_ok=True)
  with open(os.path.join(outdir, f'{family.name}.md'), 'w') as f:
    f.write(text)
  write_csv(csv_rows, os.path.join(outdir, f'{family.name}.csv'))
  return text


# ---- Figures. ----

def plot_bars(rows: Sequence[dict], label_keys: Sequence[str], metric: str, path: str,
              title: str = '', reference: Mapping[str, float] | None = None) -> None:
  """Horizontal bar chart of mean ± std of `metric` per row; dashed lines for references."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  labels = [' / '.join(str(r[k]) for k in label_keys) for r in rows]
  means = [r[metric] for r in rows]
  stds = [r.get(metric + '_std', 0.0) for r in rows]
  fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
  ax.barh(range(len(rows)), means, xerr=stds, color='tab:blue', alpha=0.8, capsize=3)
  ax.set_yticks(range(len(rows)), labels, fontsize=8)
  ax.invert_yaxis()
  finite = [m for m in means if np.isfinite(m)]
  lo = min(finite + list((reference or {}).values())) if finite else 0
  hi = max(finite + list((reference or {}).values())) if finite else 1
  pad = max((hi - lo) * 0.15, 0.005)
  ax.set_xlim(lo - pad, hi + pad)
  for name, v in (reference or {}).items():
    ax.axvline(v, ls='--', color='tab:red')
    ax.text(v, -0.6, name, color='tab:red', fontsize=8, ha='center')
  ax.set_xlabel(metric)
  ax.set_title(title, fontsize=10)
  save_figure(fig, path)


def save_figure(fig, path: str) -> None:
  """tight_layout, write `path` (its folder made if missing) at the studies' dpi, close."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
