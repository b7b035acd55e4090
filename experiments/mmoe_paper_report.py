"""Tables, findings and figures of experiments/mmoe_paper.py, rendered from cells.csv (kept
apart so the study file stays short).

Runs that share a dataset are not independent, so the units of every interval are the data
seeds: each data seed's runs are averaged first (report.Family unit='data_seed'), differences
pair the data seeds, and each family of comparisons is Holm-corrected (experiments/stats.py);
the test-set bootstrap resamples each data seed's test rows (both correlations' test sets
apart when a comparison crosses correlations). Runs that split into a collapsed and a trained
mode (stats.modes) are counted and left out of the means and intervals.

The curves: each reported run's test MSE at p.curve_steps (mmoe_paper.TestCurve, in the run's
metrics.jsonl) is a cells.csv column 'test@<step>/mean/mse' (`enrich`). Curve tables and the
findings per step use the data-seed intervals alone (Holm over every step and comparison of a
table): only the final state's test predictions are saved, so only the final step has a
test-set bootstrap.
"""
from __future__ import annotations

import os

import numpy as np

from experiments import report, stats
from seqrec_jax import metrics
from seqrec_jax.data import mmoe_synthetic

METRIC = 'eval/test/mean/mse'
VALID = 'eval/valid/mean/mse'
METRICS = (METRIC, VALID, 'params', 'lr', 'data_seed')
LABELS = {'shared_bottom_16': 'Shared-Bottom (16)', 'shared_bottom': 'Shared-Bottom (113)',
          'omoe': 'OMoE', 'mmoe': 'MMoE'}
FIG4_MODELS = ('shared_bottom', 'omoe', 'mmoe')     # the paper's Fig. 4 / Fig. 5 models


CURVE = 'test@{}/mean/mse'         # cells.csv column of the test MSE at a step


def curve_metric(step: int) -> str:
  return CURVE.format(step)


def curve_columns(cells) -> list[str]:
  """The curve's cells.csv columns, by step."""
  cols = {k for c in cells for k in c if k.startswith('test@')}
  return sorted(cols, key=lambda k: int(k.split('@')[1].split('/')[0]))


def step_of(col: str) -> int:
  return int(col.split('@')[1].split('/')[0])


def enrich(records, outdir: str = '') -> None:
  """summary['data_seed'] and summary['lr']: the cell's dataset and learning rate;
  summary['test@<step>/mean/mse']: its test MSE at each curve step (metrics.jsonl)."""
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  for r in records:
    r['summary']['data_seed'] = int(r['overrides']['data.mmoe_synthetic.seed'])
    r['summary']['lr'] = float(r['overrides']['optim.learning_rate'])
    if outdir:
      for m in sweep.cell_metrics(r, outdir):
        if 'curve/test/mean/mse' in m:
          r['summary'][curve_metric(m['step'])] = m['curve/test/mean/mse']


def metrics_of(records) -> tuple[str, ...]:
  """METRICS and every curve column the (enriched) records hold."""
  cols = {k for r in records for k in r['summary'] if k.startswith('test@')}
  return METRICS + tuple(sorted(cols, key=step_of))


def cells_of(records, outdir: str = '') -> list[dict]:
  """cells.csv rows of sweep records (as study_main writes them)."""
  enrich(records, outdir)
  return report.cell_rows(records, metrics_of(records))


def label(c: dict) -> str:
  if c['phase'] == 'report':
    return f'{c["model"]} @ {c["correlation"]}'
  return f'select {c["model"]} @ {c["correlation"]} lr {c["lr"]:g}'


def _report(cells):
  return [c for c in cells if c['phase'] == 'report']


def selection(cells) -> dict[tuple, dict]:
  """(model, correlation) -> {'lr': the rate with the lowest mean valid MSE over its selection
  runs (non-finite runs count as infinitely bad), 'edge': 'low'/'high' when that rate is the
  smallest/largest tried (the grid was extended up to its cap and still ends there), 'rates':
  {lr: [valid MSE]}}."""
  out: dict[tuple, dict] = {}
  for c in cells:
    if c['phase'] == 'select':
      v = c[VALID]
      out.setdefault((c['model'], c['correlation']), {'rates': {}})['rates'].setdefault(
          c['lr'], []).append(v if np.isfinite(v) else np.inf)
  for d in out.values():
    tried = sorted(d['rates'])
    d['lr'] = min(tried, key=lambda lr: np.mean(d['rates'][lr]))
    d['edge'] = 'low' if d['lr'] == tried[0] else 'high' if d['lr'] == tried[-1] else ''
  return out


def _ci(cs: list[dict], metric: str) -> dict:
  """Mean [95% CI] over data seeds (each the mean of its trained runs), std and median over
  the trained runs, the collapsed and non-finite counts."""
  v = np.array([c.get(metric, np.nan) for c in cs], np.float64)
  lost, kept = stats.modes(v, higher_better=False)
  by_seed: dict[int, list[float]] = {}
  for i in kept:
    by_seed.setdefault(cs[i]['data_seed'], []).append(v[i])
  mean, lo, hi = metrics.mean_ci([np.mean(x) for x in by_seed.values()])
  kv = v[kept]
  return {'data_seeds': len(by_seed), 'mean': mean, 'lo': lo, 'hi': hi,
          'std': float(np.std(kv, ddof=1)) if len(kv) > 1 else 0.0,
          'median': float(np.median(kv)) if len(kv) else np.nan,
          'nonfinite': int((~np.isfinite(v)).sum()), 'collapsed': len(lost)}


def _groups(cells) -> dict[tuple, list[dict]]:
  out: dict[tuple, list[dict]] = {}
  for c in _report(cells):
    out.setdefault((c['model'], c['correlation']), []).append(c)
  return out


def rows(cells) -> list[dict]:
  """One row per (model, correlation) of the reported runs: the final test MSE."""
  out = []
  for (m, corr), cs in _groups(cells).items():
    s = _ci(cs, METRIC)
    out.append({'model': m, 'correlation': corr,
                'label_pearson': mmoe_synthetic.expected_label_pearson(corr),
                'params': int(cs[0]['params']), 'runs': len(cs), 'data_seeds': s['data_seeds'],
                'lr': cs[0]['lr'], 'test_mse_mean': s['mean'], 'test_mse_std': s['std'],
                'ci95_lo': s['lo'], 'ci95_hi': s['hi'], 'test_mse_median': s['median'],
                'nonfinite_runs': s['nonfinite'], 'collapsed_runs': s['collapsed']})
  return out


def curve_rows(cells) -> list[dict]:
  """One row per (model, correlation, curve step): the test MSE at that step."""
  out = []
  for (m, corr), cs in _groups(cells).items():
    for col in curve_columns(cs):
      s = _ci(cs, col)
      out.append({'model': m, 'correlation': corr, 'step': step_of(col), 'runs': len(cs),
                  'data_seeds': s['data_seeds'], 'test_mse_mean': s['mean'],
                  'ci95_lo': s['lo'], 'ci95_hi': s['hi'], 'test_mse_median': s['median'],
                  'nonfinite_runs': s['nonfinite'], 'collapsed_runs': s['collapsed']})
  return out


def _pairs(cells) -> tuple[list, list]:
  """(finding 1's pairs: every model at each correlation vs the next higher one; finding 3's:
  OMoE and MMoE vs Shared-Bottom (113) at every correlation)."""
  have = {(c['model'], c['correlation']) for c in _report(cells)}
  models = list(dict.fromkeys(c['model'] for c in _report(cells)))
  corrs = sorted({c for _, c in have})
  f1 = [(f'{m} @ {a}', f'{m} @ {b}') for m in models for a, b in zip(corrs, corrs[1:])
        if (m, a) in have and (m, b) in have]
  f3 = [(f'{moe} @ {c}', f'shared_bottom @ {c}') for moe in ('omoe', 'mmoe') for c in corrs
        if (moe, c) in have and ('shared_bottom', c) in have]
  return f1, f3


def families(cells, dataset: str = '') -> list[report.Family]:
  """Findings 1 and 3 on the final test MSE as Holm families (with the test-row bootstrap)."""
  del dataset
  f1, f3 = _pairs(cells)
  return [report.Family('resolved_correlation', 'Finding 1: each model at a correlation vs the '
                        'next higher one (final test MSE; Δ > 0 = worse at the lower '
                        'correlation)', f1, (METRIC,), label, unit='data_seed'),
          report.Family('resolved_moe', 'Finding 3: OMoE and MMoE vs Shared-Bottom (113) '
                        '(final test MSE; Δ < 0 = the mixture is better)', f3, (METRIC,), label,
                        unit='data_seed')]


def curve_families(cells) -> list[report.Family]:
  """Findings 1 and 3 at every curve step: one Holm family per finding over its pairs x
  steps (seed intervals only: no predictions are saved at intermediate steps)."""
  f1, f3 = _pairs(cells)
  cols = tuple(curve_columns(_report(cells)))
  return [report.Family('curve_correlation', 'Finding 1 along the curve: each model at a '
                        'correlation vs the next higher one (test MSE at each step; Δ > 0 = '
                        'worse at the lower correlation)', f1, cols, label, unit='data_seed'),
          report.Family('curve_moe', 'Finding 3 along the curve: OMoE and MMoE vs '
                        'Shared-Bottom (113) (test MSE at each step; Δ < 0 = the mixture is '
                        'better)', f3, cols, label, unit='data_seed')] if cols else []


def _fmt(r: dict, key: str = 'resolved') -> str:
  lo, hi = r['seed_interval']
  return f'{r["seed"]["mean"]:+.4f} [{lo:+.4f}, {hi:+.4f}]' + ('*' if r[key] else '')


def _verdict(results: list[dict], want_negative: bool, key: str = 'resolved') -> str:
  """holds: every comparison resolved (results[i][key]) on the wanted side of 0; does not hold:
  any resolved on the other side; unsettled otherwise."""
  good = [r[key] and (r['seed']['mean'] < 0) == want_negative for r in results]
  bad = [r[key] and not g for r, g in zip(results, good)]
  return 'holds' if all(good) else 'does not hold' if any(bad) else 'unsettled'


def spread_tests(cells, cols: list[str]) -> tuple[dict, list[dict]]:
  """Finding 2: MMoE's spread MSE(lowest corr.) - MSE(highest) minus OMoE's and minus
  Shared-Bottom (113)'s, per data seed (a difference of differences: seed intervals only),
  at each metric of cols; Holm over every (other model, metric). Returns ({metric: {model:
  mean spread}}, [{'metric', 'other', 'seed', 'resolved', 'seed_interval'}])."""
  rep = _report(cells)
  corrs = sorted({c['correlation'] for c in rep})
  means: dict[tuple, dict[int, list[dict]]] = {}
  for c in rep:
    means.setdefault((c['model'], c['correlation']), {}).setdefault(
        c['data_seed'], []).append(c)
  spreads, res = {}, []
  for col in cols:
    spread = {}
    for m in dict.fromkeys(c['model'] for c in rep):
      a, b = means.get((m, corrs[0]), {}), means.get((m, corrs[-1]), {})
      spread[m] = {d: float(np.mean([c[col] for c in a[d]]) - np.mean([c[col] for c in b[d]]))
                   for d in sorted(set(a) & set(b))}
    spreads[col] = {m: float(np.mean(list(v.values()))) for m, v in spread.items() if v}
    if 'mmoe' in spread:
      res += [{'metric': col, 'other': o, 'seed': stats.seed_diff(spread['mmoe'], spread[o])}
              for o in ('omoe', 'shared_bottom') if o in spread]
  rej, lv = stats.holm([r['seed']['p'] for r in res])
  for r, j, level in zip(res, rej, lv):
    r.update(resolved=j, seed_interval=stats.t_interval(r['seed'], level))
  return spreads, res


def _spread(cells) -> list[str]:
  """Finding 2 on the final test MSE."""
  corrs = sorted({c['correlation'] for c in _report(cells)})
  spreads, res = spread_tests(cells, [METRIC])
  if not res:
    return []
  sp = '; '.join(f'{LABELS.get(m, m)} {v:+.4f}' for m, v in spreads[METRIC].items())
  return [f'2. **MMoE\'s spread across correlations is smaller than the others\': '
          f'{_verdict(res, want_negative=True)}** (spread = MSE({corrs[0]}) - MSE({corrs[-1]}): '
          f'{sp}; MMoE minus ' + '; '.join(f'{LABELS.get(r["other"], r["other"])} = {_fmt(r)}'
                                           for r in res) + ', must be < 0; seed intervals)']


def findings(cells, results: dict | None = None) -> list[str]:
  """The paper's three findings (Sec. 5.1) on the final test MSE, each with its verdict and
  deciding numbers. results: report.compare of `families` by name (if None: computed here
  without a bootstrap, so findings 1 and 3 resolve nothing)."""
  if results is None:
    results = {f.name: report.compare(cells, f, []) for f in families(cells)}
  out = []
  f1 = results['resolved_correlation']
  lines = []
  for m in dict.fromkeys(r['row'].split(' @ ')[0] for r in f1):
    mine = [r for r in f1 if r['row'].startswith(f'{m} @ ')]
    lines.append(f'  - {LABELS.get(m, m)}: ' + '; '.join(
        f'MSE({r["row"].split(" @ ")[1]}) - MSE({r["baseline"].split(" @ ")[1]}) = {_fmt(r)}'
        for r in mine) + f' -> {_verdict(mine, want_negative=False)}')
  out.append(f'1. **Every model is better at higher correlation: '
             f'{_verdict(f1, want_negative=False)}** (each lower-correlation MSE minus '
             'the next higher one must be > 0)\n' + '\n'.join(lines))
  out += _spread(cells)
  f3 = results['resolved_moe']
  if f3:
    lines = []
    for moe in dict.fromkeys(r['row'].split(' @ ')[0] for r in f3):
      mine = [r for r in f3 if r['row'].startswith(f'{moe} @ ')]
      lines.append(f'  - {LABELS[moe]} - Shared-Bottom (113): ' + '; '.join(
          f'{r["row"].split(" @ ")[1]}: {_fmt(r)}' for r in mine)
          + f' -> {_verdict(mine, True)}')
    out.append(f'3. **Both MoE models beat Shared-Bottom at every correlation: '
               f'{_verdict(f3, want_negative=True)}** (MoE MSE minus Shared-Bottom '
               'MSE must be < 0)\n' + '\n'.join(lines))
  return out


def _short(lbl: str) -> str:
  m, c = lbl.split(' @ ')
  return f'{LABELS.get(m, m)} @ {c}'


def curve_findings(cells, results: dict) -> tuple[list[str], list[dict]]:
  """Findings 1-3 at every curve step: a Markdown table (one line per comparison, one column
  per step: Δ, * = resolved by its Holm-corrected seed interval) with each finding's verdict
  per step, and its CSV rows. results: report.compare of `curve_families` by name."""
  cols = curve_columns(_report(cells))
  steps = [step_of(c) for c in cols]
  head = ['finding', 'comparison'] + [str(s) for s in steps]
  md = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  csv_rows = []

  def add(finding, name, by_col, want_negative):
    md.append(f'| {finding} | {name} | ' + ' | '.join(
        f'{by_col[c]["seed"]["mean"]:+.4f}' + ('*' if by_col[c]['seed_resolved'] else '')
        for c in cols) + ' |')
    for c in cols:
      r = by_col[c]
      csv_rows.append({'finding': finding, 'comparison': name, 'step': step_of(c),
                       'mean': r['seed']['mean'], 'lo': r['seed_interval'][0],
                       'hi': r['seed_interval'][1], 'p': r['seed']['p'],
                       'resolved': bool(r['seed_resolved']), 'want_negative': want_negative})

  def verdicts(finding, res, want_negative):
    md.append(f'| {finding} | **verdict** | ' + ' | '.join(
        _verdict([r for r in res if r['metric'] == c], want_negative, 'seed_resolved')
        for c in cols) + ' |')

  for name, finding, want_negative in (('curve_correlation', '1', False),
                                       ('curve_moe', '3', True)):
    res = results.get(name, [])
    if finding == '3':
      spreads, sp = spread_tests(cells, cols)
      for r in sp:
        r['seed_resolved'] = r['resolved']
      for o in dict.fromkeys(r['other'] for r in sp):
        add('2', f'spread MMoE - {LABELS.get(o, o)}',
            {r['metric']: r for r in sp if r['other'] == o}, True)
      if sp:
        verdicts('2', sp, True)
    for row, base in dict.fromkeys((r['row'], r['baseline']) for r in res):
      add(finding, f'{_short(row)} - {_short(base)}',
          {r['metric']: r for r in res if (r['row'], r['baseline']) == (row, base)},
          want_negative)
    if res:
      verdicts(finding, res, want_negative)
  return md, csv_rows


def write_select(cells, outdir: str, ctx: dict | None = None) -> None:
  """select.md/.csv: the second table, the valid MSE of every rate the selection phase tried
  per (model, correlation) and the rate chosen (ctx: meta.json, for the phase's size)."""
  sel = selection(cells)
  lines = []
  for (m, c), d in sel.items():
    for lr in sorted(d['rates']):
      v = np.asarray(d['rates'][lr], np.float64)
      lines.append({'model': m, 'correlation': c, 'lr': lr, 'runs': len(v),
                    'valid MSE mean': float(np.mean(v)),
                    'valid MSE std': float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                    'chosen': d['lr'] == lr, 'edge': d['edge'] if d['lr'] == lr else ''})
  report.write_csv(lines, os.path.join(outdir, 'select.csv'))
  head = ['model', 'correlation', 'lr', 'runs', 'valid MSE mean', 'valid MSE std', 'chosen']
  md = ['### Second table: the learning rate selected on valid (valid MSE, mean of the two '
        'tasks)', '',
        '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  md += [f'| {r["model"]} | {r["correlation"]} | {r["lr"]:g} | {r["runs"]} | '
         f'{r["valid MSE mean"]:.4f} | {r["valid MSE std"]:.4f} | '
         + ('**yes**' + (f' (at the {r["edge"]} edge)' if r['edge'] else '') if r['chosen']
            else '') + ' |' for r in lines]
  edges = sorted({(r['model'], r['correlation']) for r in lines if r['edge']})
  md += ['', 'The grid of a (model, correlation) whose choice lands on an edge is extended one '
         'step (x10) that way and rerun, up to the cap (mmoe_paper.Protocol.lr_extensions; '
         'experiments/stats.py, select_on_grids). ' + (
             f'Still at an edge: {len(edges)} of {len(sel)}.' if edges else
             'No choice is left at an edge.')]
  if ctx and 'select_seeds' in ctx:
    md += ['', f'Selection runs: {ctx["select_data_seeds"]} dataset(s) x {ctx["select_seeds"]} '
           'init seeds per rate, datasets and seeds apart from the reported runs; valid MSE of '
           f'the final state after {ctx["steps"]} steps. Only these selection runs were made at '
           f'the selected rates: the reported runs (table.md, curve.md) all use lr '
           f'{ctx["lr"]:g}, the paper\'s Adam default.']
  with open(os.path.join(outdir, 'select.md'), 'w') as f:
    f.write('\n'.join(md) + '\n')


HEADER = ['model', 'correlation', 'label Pearson', 'params', 'runs', 'lr', 'test MSE mean',
          'std', '95% CI', 'median']


def _rows_seen(ctx: dict) -> str:
  seen = ctx['steps'] * ctx['batch_size']
  return (f'one pass over {ctx["num_train"]:,} rows' if seen + ctx['batch_size'] > ctx['num_train']
          else f'{seen:,} of {ctx["num_train"]:,} train rows, each once')


def _note_runs(ctx: dict) -> str:
  return (f'Runs = {ctx["data_seeds"]} data seeds x {ctx["seeds"]} init seeds per (model, '
          'correlation); 95% CI: t-interval over the data seeds\' means (each the mean of its '
          'runs)')


def write_curve(cells, outdir: str, ctx: dict) -> list[str]:
  """curve.md/.csv: test MSE per (model, correlation, step), mean ± the 95% CI's half-width;
  curve_findings.md/.csv and the two Holm families' files (curve_correlation, curve_moe)."""
  table = curve_rows(cells)
  if not table:
    return []
  report.write_csv(table, os.path.join(outdir, 'curve.csv'))
  steps = sorted({r['step'] for r in table})
  models = list(dict.fromkeys(c['model'] for c in _report(cells)))
  head = ['model', 'correlation'] + [f'step {s}' for s in steps]
  md = ['### Test MSE along training (mean ± 95% CI half-width over data seeds)', '',
        '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  by = {(r['model'], r['correlation'], r['step']): r for r in table}
  for m in models:
    for corr in sorted({r['correlation'] for r in table}, reverse=True):
      if (m, corr, steps[0]) in by:
        md.append(f'| {LABELS.get(m, m)} | {corr} | ' + ' | '.join(
            f'{by[m, corr, s]["test_mse_mean"]:.4f} ± '
            f'{(by[m, corr, s]["ci95_hi"] - by[m, corr, s]["ci95_lo"]) / 2:.4f}'
            for s in steps) + ' |')
  collapsed = sum(r['collapsed_runs'] for r in table)
  md += ['', f'Test MSE (mean of the two tasks, {ctx["num_test"]:,} test rows) of the reported '
         f'runs (Adam, lr {ctx["lr"]:g}, batch {ctx["batch_size"]}) after each step; the last '
         'column is the final state of table.md. ' + _note_runs(ctx) + '. Collapsed '
         f'(stats.modes, left out) run-steps: {collapsed}; non-finite: '
         f'{sum(r["nonfinite_runs"] for r in table)}. Per-run values: cells.csv columns '
         '`test@<step>/mean/mse`; per step: curve.csv.']
  with open(os.path.join(outdir, 'curve.md'), 'w') as f:
    f.write('\n'.join(md) + '\n')
  names = ['curve.md', 'curve.csv']
  results = {}
  note = ('Seed intervals only: the runs save test predictions of their final state alone, so '
          'no step has a test-set bootstrap here (the final step\'s is in resolved_*.md); '
          'curve_findings.md reads "resolved" as the Holm-corrected seed interval excluding 0.')
  for fam in curve_families(cells):
    results[fam.name] = report.compare(cells, fam, [])
    report.write_comparisons(results[fam.name], fam, outdir, notes=note)
    names += [f'{fam.name}.md', f'{fam.name}.csv']
  lines, csv_rows = curve_findings(cells, results)
  report.write_csv(csv_rows, os.path.join(outdir, 'curve_findings.csv'))
  md = ['### The paper\'s findings along the curve (Δ of test MSE per step; * = the '
        'Holm-corrected seed interval excludes 0)', ''] + lines + [
        '', 'Finding 1: MSE at a correlation minus MSE at the next higher one (> 0 wanted); '
        '2: MMoE\'s spread MSE(lowest corr.) - MSE(highest) minus the other model\'s (< 0 '
        'wanted); 3: the mixture\'s MSE minus Shared-Bottom (113)\'s (< 0 wanted). Holm '
        'families: finding 1 over its comparisons x steps (curve_correlation.md), finding 3 '
        'likewise (curve_moe.md), finding 2 over its 2 comparisons x steps. A verdict holds at '
        'a step when every comparison of the finding is resolved on the wanted side there, '
        'does not hold when one is resolved on the other side, and is unsettled otherwise. '
        + note]
  with open(os.path.join(outdir, 'curve_findings.md'), 'w') as f:
    f.write('\n'.join(md) + '\n')
  return names + ['curve_findings.md', 'curve_findings.csv']


def tables(cells, results, outdir: str, ctx: dict) -> list[str]:
  """table.md/.csv (the final test MSE, then the findings), the curve tables (write_curve) and
  select.md/.csv; ctx: meta.json (protocol and timing)."""
  models = list(dict.fromkeys(c['model'] for c in _report(cells)))
  table = sorted(rows(cells), key=lambda r: (models.index(r['model']), -r['correlation']))
  report.write_csv(table, os.path.join(outdir, 'table.csv'))
  md = ['### MMoE paper synthetic experiment: final test MSE per (model, correlation), Adam '
        f'lr {ctx["lr"]:g}', '',
        '| ' + ' | '.join(HEADER) + ' |', '|' + '---|' * len(HEADER)]
  md += [f'| {LABELS.get(r["model"], r["model"])} | {r["correlation"]} | '
         f'{r["label_pearson"]:.3f} | {r["params"]:,} | {r["runs"]}'
         + (f' ({r["collapsed_runs"]} collapsed)' if r['collapsed_runs'] else '')
         + f' | {r["lr"]:g} | {r["test_mse_mean"]:.4f} | {r["test_mse_std"]:.4f} | '
         f'[{r["ci95_lo"]:.4f}, {r["ci95_hi"]:.4f}] | {r["test_mse_median"]:.4f} |'
         for r in table]
  p = ctx
  md += ['', f'Test MSE is the mean of the two tasks\' MSE on {p["num_test"]:,} test rows '
         f'(label variance ~1.30, noise variance {mmoe_synthetic.DEFAULTS["noise_std"] ** 2:g}) '
         f'of the final state after {p["steps"]} Adam steps at lr {p["lr"]:g} (the paper\'s '
         f'Adam default) and batch {p["batch_size"]} ({_rows_seen(p)}). '
         + _note_runs(p) + '. The learning rate selected on valid per cell is a separate '
         'table (select.md). Label Pearson: population correlation of y1, y2 (quadrature). '
         f'Gates without bias (eq. 8). Non-finite runs: '
         f'{sum(r["nonfinite_runs"] for r in table)}; collapsed runs (stats.modes, left out of '
         f'means and intervals): {sum(r["collapsed_runs"] for r in table)}. The test MSE along '
         'training: curve.md; the findings at every step: curve_findings.md.', '',
         '**The paper\'s findings on the final state** (paired by data seed; mean difference '
         '[Holm-corrected 95% CI], * = resolved: the seed and the test-set bootstrap intervals '
         'both exclude 0, resolved_correlation.md and resolved_moe.md):', '']
  md += findings(cells, results)
  if 'wall' in p:
    md += ['', f'Wall time {p["wall"] / 60:.1f} min (reported runs {p["report_wall"] / 60:.1f}, '
           f'selection {p["select_wall"] / 60:.1f}; finished cells are skipped on a rerun) '
           f'with --runs_per_group={p["runs_per_group"]} on this 2-core CPU shared with other '
           f'jobs (1-min load average {p["load_start"]:.1f} at the start, {p["load_end"]:.1f} '
           'at the end). Command: `bash launch.sh mmoe_paper`; per-cell values: cells.csv.']
  with open(os.path.join(outdir, 'table.md'), 'w') as f:
    f.write('\n'.join(md) + '\n')
  names = ['table.md', 'table.csv'] + write_curve(cells, outdir, ctx)
  if any(c['phase'] == 'select' for c in cells):
    write_select(cells, outdir, ctx)
    names += ['select.md', 'select.csv']
  return names


def _curve(ax, steps, rs, name, color):
  mean = np.array([r['test_mse_mean'] for r in rs])
  lo, hi = np.array([r['ci95_lo'] for r in rs]), np.array([r['ci95_hi'] for r in rs])
  ax.plot(steps, mean, 'o-', ms=3, label=name, color=color)
  if np.isfinite(lo).all():
    ax.fill_between(steps, lo, hi, color=color, alpha=0.2)


def _curve_panels(plt, crv, models, corrs, colors, path):
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.6), sharey=True,
                           squeeze=False)
  for ax, m in zip(axes[0], models):
    for c in sorted(corrs, reverse=True):
      rs = sorted((r for r in crv if (r['model'], r['correlation']) == (m, c)),
                  key=lambda r: r['step'])
      if rs:
        _curve(ax, [r['step'] for r in rs], rs, f'correlation {c}', colors[c])
    ax.set(yscale='log', xlabel='step', title=LABELS.get(m, m))
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter('%g'))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
  axes[0][0].set_ylabel('test MSE (mean, 95% CI over data seeds)')
  axes[0][-1].legend(fontsize=8)
  report.save_figure(fig, path)


def figures(cells, records, outdir: str) -> list[str]:
  """Figures 3-5 of the paper from the reported runs' cells.csv rows: test-MSE curves (Fig. 3:
  both Shared-Bottoms; Fig. 4: Shared-Bottom (113), OMoE, MMoE) per correlation with 95% CI
  bands, and histograms of the final test MSE (Fig. 5)."""
  del records
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  crv = curve_rows(cells)
  corrs = sorted({r['correlation'] for r in rows(cells)})
  colors = dict(zip(sorted(corrs, reverse=True), ('tab:blue', 'tab:orange', 'tab:green',
                                                  'tab:red', 'tab:purple', 'tab:brown')))
  have = {r['model'] for r in crv}
  names = []
  for name, models in (('fig3_shared_bottom.png', ('shared_bottom_16', 'shared_bottom')),
                       ('fig4_test_curves.png', FIG4_MODELS)):
    models = [m for m in models if m in have]
    if models:
      _curve_panels(plt, crv, models, corrs, colors, os.path.join(outdir, name))
      names.append(name)
  # Fig. 5: histograms of the final test MSE over runs, per correlation.
  rep = _report(cells)
  fig, axes = plt.subplots(1, len(corrs), figsize=(3.6 * len(corrs), 3.2), squeeze=False)
  allv = np.array([c[METRIC] for c in rep], np.float64)
  allv = allv[np.isfinite(allv) & (allv > 0)]
  bins = np.geomspace(allv.min(), allv.max(), 40) if len(allv) else 10
  for ax, corr in zip(axes[0], corrs):
    for m in FIG4_MODELS:
      v = np.array([c[METRIC] for c in rep if (c['model'], c['correlation']) == (m, corr)])
      if len(v):
        ax.hist(v[np.isfinite(v)], bins=bins, histtype='step', lw=1.5, label=LABELS[m])
    ax.set(xscale='log', xlabel='final test MSE', title=f'correlation {corr}')
    ax.xaxis.set_minor_formatter(plt.NullFormatter())   # log axis over a narrow range
  axes[0][0].set_ylabel('runs')
  axes[0][-1].legend(fontsize=8)
  report.save_figure(fig, os.path.join(outdir, 'fig5_final_loss.png'))
  return names + ['fig5_final_loss.png']
