"""Tables, findings and figures of experiments/mmoe_paper.py, rendered from cells.csv (kept
apart so the study file stays short).

Runs that share a dataset are not independent, so the units of every interval are the data
seeds: each data seed's runs are averaged first (report.Family unit='data_seed'), differences
pair the data seeds, and each family of comparisons is Holm-corrected (experiments/stats.py);
the test-set bootstrap resamples each data seed's test rows (both correlations' test sets
apart when a comparison crosses correlations). Runs that split into a collapsed and a trained
mode (stats.modes) are counted and left out of the means and intervals.
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


def enrich(records, outdir: str = '') -> None:
  """summary['data_seed'] and summary['lr']: the cell's dataset and learning rate."""
  del outdir
  for r in records:
    r['summary']['data_seed'] = int(r['overrides']['data.mmoe_synthetic.seed'])
    r['summary']['lr'] = float(r['overrides']['optim.learning_rate'])


def cells_of(records) -> list[dict]:
  """cells.csv rows of sweep records (as study_main writes them)."""
  enrich(records)
  return report.cell_rows(records, METRICS)


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


def rows(cells) -> list[dict]:
  """One row per (model, correlation) of the reported runs."""
  sel = selection(cells)
  groups: dict[tuple, list[dict]] = {}
  for c in _report(cells):
    groups.setdefault((c['model'], c['correlation']), []).append(c)
  out = []
  for (m, corr), cs in groups.items():
    v = np.array([c[METRIC] for c in cs], np.float64)
    lost, kept = stats.modes(v, higher_better=False)
    by_seed: dict[int, list[float]] = {}
    for i in kept:
      by_seed.setdefault(cs[i]['data_seed'], []).append(v[i])
    mean, lo, hi = metrics.mean_ci([np.mean(x) for x in by_seed.values()])
    kv = v[kept]
    out.append({'model': m, 'correlation': corr,
                'label_pearson': mmoe_synthetic.expected_label_pearson(corr),
                'params': int(cs[0]['params']), 'runs': len(v), 'data_seeds': len(by_seed),
                'lr': cs[0]['lr'], 'lr_edge': sel.get((m, corr), {}).get('edge', ''),
                'test_mse_mean': mean,
                'test_mse_std': float(np.std(kv, ddof=1)) if len(kv) > 1 else 0.0,
                'ci95_lo': lo, 'ci95_hi': hi, 'test_mse_median': float(np.median(kv)),
                'nonfinite_runs': int((~np.isfinite(v)).sum()), 'collapsed_runs': len(lost)})
  return out


def families(cells, dataset: str = '') -> list[report.Family]:
  """Findings 1 and 3 as Holm families: every model at each correlation vs the next higher
  one; OMoE and MMoE vs Shared-Bottom (113) at every correlation."""
  del dataset
  have = {(c['model'], c['correlation']) for c in _report(cells)}
  models = list(dict.fromkeys(c['model'] for c in _report(cells)))
  corrs = sorted({c for _, c in have})
  f1 = [(f'{m} @ {a}', f'{m} @ {b}') for m in models for a, b in zip(corrs, corrs[1:])
        if (m, a) in have and (m, b) in have]
  f3 = [(f'{moe} @ {c}', f'shared_bottom @ {c}') for moe in ('omoe', 'mmoe') for c in corrs
        if (moe, c) in have and ('shared_bottom', c) in have]
  return [report.Family('resolved_correlation', 'Finding 1: each model at a correlation vs the '
                        'next higher one (test MSE; Δ > 0 = worse at the lower correlation)',
                        f1, (METRIC,), label, unit='data_seed'),
          report.Family('resolved_moe', 'Finding 3: OMoE and MMoE vs Shared-Bottom (113) '
                        '(test MSE; Δ < 0 = the mixture is better)', f3, (METRIC,), label,
                        unit='data_seed')]


def _fmt(r: dict) -> str:
  lo, hi = r['seed_interval']
  return f'{r["seed"]["mean"]:+.4f} [{lo:+.4f}, {hi:+.4f}]' + ('*' if r['resolved'] else '')


def _verdict(results: list[dict], want_negative: bool) -> str:
  """holds: every comparison resolved on the wanted side of 0; does not hold: any resolved on
  the other side; unsettled otherwise."""
  good = [r['resolved'] and (r['seed']['mean'] < 0) == want_negative for r in results]
  bad = [r['resolved'] and not g for r, g in zip(results, good)]
  return 'holds' if all(good) else 'does not hold' if any(bad) else 'unsettled'


def _spread(cells) -> list[str]:
  """Finding 2: MMoE's spread MSE(lowest corr.) - MSE(highest) vs the others', per data seed
  (a difference of differences: seed interval only, Holm over its comparisons)."""
  rep = _report(cells)
  corrs = sorted({c['correlation'] for c in rep})
  lo_c, hi_c = corrs[0], corrs[-1]
  means: dict[tuple, dict[int, list[float]]] = {}
  for c in rep:
    means.setdefault((c['model'], c['correlation']), {}).setdefault(
        c['data_seed'], []).append(c[METRIC])
  spread = {}
  for m in dict.fromkeys(c['model'] for c in rep):
    a, b = means.get((m, lo_c), {}), means.get((m, hi_c), {})
    spread[m] = {d: float(np.mean(a[d]) - np.mean(b[d])) for d in sorted(set(a) & set(b))}
  if 'mmoe' not in spread:
    return []
  others = [m for m in ('omoe', 'shared_bottom') if m in spread]
  res = [{'seed': stats.seed_diff(spread['mmoe'], spread[o])} for o in others]
  rej, lv = stats.holm([r['seed']['p'] for r in res])
  for r, j, level in zip(res, rej, lv):
    r.update(resolved=j, seed_interval=stats.t_interval(r['seed'], level))
  sp = '; '.join(f'{LABELS.get(m, m)} {np.mean(list(s.values())):+.4f}'
                 for m, s in spread.items())
  return [f'2. **MMoE\'s spread across correlations is smaller than the others\': '
          f'{_verdict(res, want_negative=True)}** (spread = MSE({lo_c}) - MSE({hi_c}): {sp}; '
          'MMoE minus ' + '; '.join(f'{LABELS.get(o, o)} = {_fmt(r)}'
                                    for o, r in zip(others, res)) + ', must be < 0)']


def findings(cells, results: dict | None = None) -> list[str]:
  """The paper's three findings (Sec. 5.1), each with its verdict and deciding numbers.
  results: report.compare of `families` by name (if None: computed here without a bootstrap,
  so findings 1 and 3 resolve nothing)."""
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


def write_select(cells, outdir: str) -> None:
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
  md = ['### Learning-rate selection (valid MSE, mean of the two tasks)', '',
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
  with open(os.path.join(outdir, 'select.md'), 'w') as f:
    f.write('\n'.join(md) + '\n')


HEADER = ['model', 'correlation', 'label Pearson', 'params', 'runs', 'lr', 'test MSE mean',
          'std', '95% CI', 'median']


def tables(cells, results, outdir: str, ctx: dict) -> list[str]:
  """table.md/.csv (rows, then the findings) and select.md/.csv; ctx: meta.json (protocol
  and timing)."""
  models = list(dict.fromkeys(c['model'] for c in _report(cells)))
  table = sorted(rows(cells), key=lambda r: (models.index(r['model']), -r['correlation']))
  report.write_csv(table, os.path.join(outdir, 'table.csv'))
  md = ['### MMoE paper synthetic experiment: test MSE per (model, correlation)', '',
        '| ' + ' | '.join(HEADER) + ' |', '|' + '---|' * len(HEADER)]
  md += [f'| {LABELS.get(r["model"], r["model"])} | {r["correlation"]} | '
         f'{r["label_pearson"]:.3f} | {r["params"]:,} | {r["runs"]}'
         + (f' ({r["collapsed_runs"]} collapsed)' if r['collapsed_runs'] else '')
         + f' | {r["lr"]:g}' + (f' (edge: {r["lr_edge"]})' if r['lr_edge'] else '')
         + f' | {r["test_mse_mean"]:.4f} | {r["test_mse_std"]:.4f} | '
         f'[{r["ci95_lo"]:.4f}, {r["ci95_hi"]:.4f}] | {r["test_mse_median"]:.4f} |'
         for r in table]
  p = ctx
  n_sel = sum(c['phase'] == 'select' for c in cells) // max(len(selection(cells)), 1)
  md += ['', f'Test MSE is the mean of the two tasks\' MSE on {p["num_test"]:,} test rows '
         f'(label variance ~1.30, noise variance {mmoe_synthetic.DEFAULTS["noise_std"] ** 2:g}) '
         f'after {p["steps"]} Adam steps at batch {p["batch_size"]} (one pass over '
         f'{p["num_train"]:,} rows). Runs = {p["data_seeds"]} data seeds x {p["seeds"]} init '
         f'seeds; 95% CI: t-interval over the data seeds\' means. lr: chosen on valid MSE from '
         f'{p["lrs"]}, extended past an edge up to {p["lr_extensions"]} times, {n_sel} '
         f'selection runs per cell on average (select.md; "edge" = still on one). Label '
         'Pearson: population correlation of y1, y2 (quadrature). Gates without bias (eq. 8). '
         f'Non-finite runs: {sum(r["nonfinite_runs"] for r in table)}; collapsed runs '
         f'(stats.modes, left out of means and intervals): '
         f'{sum(r["collapsed_runs"] for r in table)}.', '',
         '**The paper\'s findings** (paired by data seed; mean difference [Holm-corrected 95% '
         'CI], * = resolved: the seed and the test-set bootstrap intervals both exclude 0, '
         'resolved_correlation.md and resolved_moe.md):', '']
  md += findings(cells, results)
  if 'wall' in p:
    md += ['', f'Wall time {p["wall"] / 60:.1f} min (selection {p["select_wall"] / 60:.1f}, '
           f'reported runs {p["report_wall"] / 60:.1f}; finished cells are skipped on a rerun) '
           f'with --runs_per_group={p["runs_per_group"]} on this 2-core CPU shared with other '
           f'jobs (1-min load average {p["load_start"]:.1f} at the start, {p["load_end"]:.1f} '
           'at the end). Command: `bash launch.sh mmoe_paper`; per-cell values: cells.csv.']
  with open(os.path.join(outdir, 'table.md'), 'w') as f:
    f.write('\n'.join(md) + '\n')
  write_select(cells, outdir)
  return ['table.md', 'table.csv', 'select.md', 'select.csv']


def curves(records, outdir: str) -> dict[tuple, tuple]:
  """(model, correlation) -> (steps, mean, lo, hi) of the training loss (mean of the two
  tasks' MSE) over data seeds, each data seed the mean of its runs."""
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  raw: dict[tuple, dict[int, list[dict]]] = {}
  for r in records:
    pts = {m['step']: m['train/loss'] / 2.0 for m in sweep.cell_metrics(r, outdir)
           if 'train/loss' in m}
    if pts:
      g = r['group']
      raw.setdefault((g['model'], g['correlation']), {}).setdefault(
          int(r['overrides']['data.mmoe_synthetic.seed']), []).append(pts)
  out = {}
  for key, seeds in raw.items():
    steps = sorted(set.intersection(*[set(p) for runs in seeds.values() for p in runs]))
    per_seed = np.array([np.mean([[p[s] for s in steps] for p in runs], 0)
                         for runs in seeds.values()])                  # [data seeds, steps]
    ci = np.array([metrics.mean_ci(per_seed[:, j]) for j in range(len(steps))])
    out[key] = (np.array(steps), ci[:, 0], ci[:, 1], ci[:, 2])
  return out


def _curve(ax, crv, name, color):
  steps, mean, lo, hi = crv
  ax.plot(steps, mean, label=name, color=color)
  if np.isfinite(lo).all():
    ax.fill_between(steps, lo, hi, color=color, alpha=0.2)


def figures(cells, records, outdir: str) -> list[str]:
  """Figures 3-5 of the paper from the reported runs."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  crv = curves([r for r in records if r['group']['phase'] == 'report'], outdir)
  table = rows(cells)
  corrs = sorted({r['correlation'] for r in table})
  colors = dict(zip(sorted(corrs, reverse=True), ('tab:blue', 'tab:orange', 'tab:green',
                                                  'tab:red', 'tab:purple', 'tab:brown')))
  # Fig. 3: Shared-Bottom (16) training loss per correlation, and its final test MSE.
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
  for c in sorted(corrs, reverse=True):
    if ('shared_bottom_16', c) in crv:
      _curve(a, crv[('shared_bottom_16', c)], f'correlation {c}', colors[c])
  a.set(yscale='log', xlabel='step', ylabel='training loss (MSE per task)',
        title='Shared-Bottom (16 units): training loss')
  a.legend(fontsize=8)
  for m, style in (('shared_bottom_16', 'o-'), ('shared_bottom', 's--')):
    rs = sorted((r for r in table if r['model'] == m), key=lambda r: r['correlation'])
    if rs:
      b.errorbar([r['correlation'] for r in rs], [r['test_mse_mean'] for r in rs],
                 yerr=[[r['test_mse_mean'] - r['ci95_lo'] for r in rs],
                       [r['ci95_hi'] - r['test_mse_mean'] for r in rs]],
                 fmt=style, capsize=3, label=LABELS[m])
  b.set(xlabel='task correlation cos(w1, w2)', ylabel='test MSE (mean ± 95% CI)',
        title='Shared-Bottom: final test MSE')
  b.legend(fontsize=8)
  report.save_figure(fig, os.path.join(outdir, 'fig3_shared_bottom.png'))
  names = ['fig3_shared_bottom.png']
  # Fig. 4: mean training-loss curves per model, one line per correlation, 95% CI band.
  models = [m for m in FIG4_MODELS if any(k[0] == m for k in crv)]
  if models:
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.6), sharey=True,
                             squeeze=False)
    for ax, m in zip(axes[0], models):
      for c in sorted(corrs, reverse=True):
        if (m, c) in crv:
          _curve(ax, crv[(m, c)], f'correlation {c}', colors[c])
      ax.set(yscale='log', xlabel='step', title=LABELS[m])
    axes[0][0].set_ylabel('training loss (MSE per task; mean, 95% CI)')
    axes[0][-1].legend(fontsize=8)
    report.save_figure(fig, os.path.join(outdir, 'fig4_loss_curves.png'))
    names.append('fig4_loss_curves.png')
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
