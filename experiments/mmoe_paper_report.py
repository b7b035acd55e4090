"""Table, findings and figures of experiments/mmoe_paper.py (kept apart so the study file stays
short). Every interval is a 95% t-interval over data seeds (metrics.mean_ci /
metrics.paired_diff_ci): runs that share a dataset are not independent, so each data seed's
runs are averaged first and the data seeds are the units; differences pair the data seeds."""
from __future__ import annotations

import csv
import os

import numpy as np

from experiments import sweep
from seqrec_jax.data import mmoe_synthetic
from seqrec_jax.metrics import mean_ci, paired_diff_ci

METRIC = 'eval/test/mean/mse'
LABELS = {'shared_bottom_16': 'Shared-Bottom (16)', 'shared_bottom': 'Shared-Bottom (113)',
          'omoe': 'OMoE', 'mmoe': 'MMoE'}
FIG4_MODELS = ('shared_bottom', 'omoe', 'mmoe')     # the paper's Fig. 4 / Fig. 5 models


def _data_seed(rec) -> int:
  return int(rec['overrides']['data.mmoe_synthetic.seed'])


def by_cell(records) -> dict[tuple, dict[int, list[float]]]:
  """(model, correlation) -> data seed -> final test MSE of its runs."""
  out: dict[tuple, dict[int, list[float]]] = {}
  for r in records:
    g = r['group']
    out.setdefault((g['model'], g['correlation']), {}).setdefault(_data_seed(r), []).append(
        float(r['summary'].get(METRIC, float('nan'))))
  return out


def cluster_means(cell: dict[int, list[float]]) -> dict[int, float]:
  return {d: float(np.mean(v)) for d, v in cell.items()}


def rows(records, lrs) -> list[dict]:
  cells = by_cell(records)
  params = {}
  for r in records:
    params[(r['group']['model'], r['group']['correlation'])] = r['summary'].get('params')
  out = []
  for (m, c), cell in cells.items():
    v = np.concatenate([np.asarray(x, np.float64) for x in cell.values()])
    mean, lo, hi = mean_ci(list(cluster_means(cell).values()))
    out.append({'model': m, 'correlation': c,
                'label_pearson': mmoe_synthetic.expected_label_pearson(c),
                'params': params[(m, c)], 'runs': len(v), 'data_seeds': len(cell),
                'lr': lrs[(m, c)], 'mean': mean, 'std': float(np.std(v, ddof=1)) if len(v) > 1
                else 0.0, 'ci_lo': lo, 'ci_hi': hi, 'median': float(np.median(v)),
                'nonfinite': int((~np.isfinite(v)).sum())})
  return out


def _diff(a, b) -> dict:
  return paired_diff_ci(cluster_means(a), cluster_means(b))


def _fmt(d: dict) -> str:
  return f'{d["mean"]:+.4f} [{d["lo"]:+.4f}, {d["hi"]:+.4f}]'


def _verdict(diffs: list[dict], want_negative: bool) -> str:
  """holds: every interval on the wanted side of 0; does not hold: any on the other side;
  unsettled otherwise."""
  good = [d['resolved'] and (d['hi'] < 0 if want_negative else d['lo'] > 0) for d in diffs]
  bad = [d['resolved'] and not g for d, g in zip(diffs, good)]
  return 'holds' if all(good) else 'does not hold' if any(bad) else 'unsettled'


def findings(records) -> list[str]:
  """The paper's three findings (Sec. 5.1), each with its verdict and deciding numbers."""
  cells = by_cell(records)
  models = list(dict.fromkeys(m for m, _ in cells))
  corrs = sorted({c for _, c in cells})
  lo_c, hi_c = corrs[0], corrs[-1]
  out = []
  # (1) Every model is better (lower MSE) at higher correlation: consecutive pairs.
  lines, all_diffs = [], []
  for m in models:
    ds = [(a, b, _diff(cells[(m, a)], cells[(m, b)])) for a, b in zip(corrs, corrs[1:])]
    all_diffs += [d for _, _, d in ds]
    verdict = _verdict([d for _, _, d in ds], want_negative=False)
    lines.append(f'  - {LABELS.get(m, m)}: ' + '; '.join(
        f'MSE({a}) - MSE({b}) = {_fmt(d)}' for a, b, d in ds) + f' -> {verdict}')
  out.append(f'1. **Every model is better at higher correlation: '
             f'{_verdict(all_diffs, want_negative=False)}** (each lower-correlation MSE minus '
             'the next higher one must be > 0)\n' + '\n'.join(lines))
  # (2) MMoE's spread across correlations is smaller than the others'.
  spread = {m: {d: cluster_means(cells[(m, lo_c)])[d] - cluster_means(cells[(m, hi_c)])[d]
                for d in cells[(m, lo_c)]} for m in models}
  if 'mmoe' in spread:
    others = [m for m in ('omoe', 'shared_bottom') if m in spread]
    ds = [(o, paired_diff_ci(spread['mmoe'], spread[o])) for o in others]
    sp = '; '.join(f'{LABELS.get(m, m)} {mean_ci(list(s.values()))[0]:+.4f}'
                   for m, s in spread.items())
    out.append(f'2. **MMoE\'s spread across correlations is smaller than the others\': '
               f'{_verdict([d for _, d in ds], want_negative=True)}** (spread = MSE({lo_c}) - '
               f'MSE({hi_c}): {sp}; MMoE minus ' + '; '.join(
                   f'{LABELS.get(o, o)} = {_fmt(d)}' for o, d in ds) + ', must be < 0)')
  # (3) Both MoE models beat Shared-Bottom (113, parameter-matched) at every correlation.
  if 'shared_bottom' in models:
    lines, all_diffs = [], []
    for moe in ('omoe', 'mmoe'):
      if moe not in models:
        continue
      ds = [(c, _diff(cells[(moe, c)], cells[('shared_bottom', c)])) for c in corrs]
      all_diffs += [d for _, d in ds]
      lines.append(f'  - {LABELS[moe]} - Shared-Bottom (113): ' + '; '.join(
          f'{c}: {_fmt(d)}' for c, d in ds) + f' -> {_verdict([d for _, d in ds], True)}')
    out.append(f'3. **Both MoE models beat Shared-Bottom at every correlation: '
               f'{_verdict(all_diffs, want_negative=True)}** (MoE MSE minus Shared-Bottom '
               'MSE must be < 0)\n' + '\n'.join(lines))
  return out


def curves(records, outdir: str) -> dict[tuple, tuple]:
  """(model, correlation) -> (steps, mean, lo, hi) of the training loss (mean of the two
  tasks' MSE) over data seeds, each data seed the mean of its runs."""
  raw: dict[tuple, dict[int, list[dict]]] = {}
  for r in records:
    pts = {m['step']: m['train/loss'] / 2.0 for m in sweep.cell_metrics(r, outdir)
           if 'train/loss' in m}
    if pts:
      g = r['group']
      raw.setdefault((g['model'], g['correlation']), {}).setdefault(_data_seed(r), []).append(pts)
  out = {}
  for key, seeds in raw.items():
    steps = sorted(set.intersection(*[set(p) for runs in seeds.values() for p in runs]))
    per_seed = np.array([np.mean([[p[s] for s in steps] for p in runs], 0)
                         for runs in seeds.values()])                  # [data seeds, steps]
    ci = np.array([mean_ci(per_seed[:, j]) for j in range(len(steps))])
    out[key] = (np.array(steps), ci[:, 0], ci[:, 1], ci[:, 2])
  return out


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _curve(ax, crv, label, color):
  steps, mean, lo, hi = crv
  ax.plot(steps, mean, label=label, color=color)
  if np.isfinite(lo).all():
    ax.fill_between(steps, lo, hi, color=color, alpha=0.2)


def plot(records, table, outdir: str) -> None:
  plt = _plt()
  crv = curves(records, outdir)
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
      b.errorbar([r['correlation'] for r in rs], [r['mean'] for r in rs],
                 yerr=[[r['mean'] - r['ci_lo'] for r in rs], [r['ci_hi'] - r['mean'] for r in rs]],
                 fmt=style, capsize=3, label=LABELS[m])
  b.set(xlabel='task correlation cos(w1, w2)', ylabel='test MSE (mean ± 95% CI)',
        title='Shared-Bottom: final test MSE')
  b.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(outdir, 'fig3_shared_bottom.png'), dpi=110)
  plt.close(fig)
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
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, 'fig4_loss_curves.png'), dpi=110)
    plt.close(fig)
  # Fig. 5: histograms of the final test MSE over runs, per correlation.
  cells = by_cell(records)
  fig, axes = plt.subplots(1, len(corrs), figsize=(3.6 * len(corrs), 3.2), squeeze=False)
  allv = np.concatenate([np.concatenate([np.asarray(v) for v in c.values()])
                         for c in cells.values()])
  allv = allv[np.isfinite(allv) & (allv > 0)]
  bins = np.geomspace(allv.min(), allv.max(), 40) if len(allv) else 10
  for ax, c in zip(axes[0], corrs):
    for m in FIG4_MODELS:
      if (m, c) in cells:
        v = np.concatenate([np.asarray(x) for x in cells[(m, c)].values()])
        ax.hist(v[np.isfinite(v)], bins=bins, histtype='step', lw=1.5, label=LABELS[m])
    ax.set(xscale='log', xlabel='final test MSE', title=f'correlation {c}')
    ax.xaxis.set_minor_formatter(plt.NullFormatter())   # log axis over a narrow range
  axes[0][0].set_ylabel('runs')
  axes[0][-1].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(outdir, 'fig5_final_loss.png'), dpi=110)
  plt.close(fig)


HEADER = ['model', 'correlation', 'label Pearson', 'params', 'runs', 'lr', 'test MSE mean',
          'std', '95% CI', 'median']


def write(records, select_records, lrs, p, outdir: str, timing: dict) -> str:
  """Writes table.md/.csv and the figures; returns table.md's text."""
  table = sorted(rows(records, lrs), key=lambda r: (list(p.models).index(r['model']),
                                                   -r['correlation']))
  with open(os.path.join(outdir, 'table.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['model', 'correlation', 'label_pearson', 'params', 'runs', 'data_seeds', 'lr',
                'test_mse_mean', 'test_mse_std', 'ci95_lo', 'ci95_hi', 'test_mse_median',
                'nonfinite_runs'])
    for r in table:
      w.writerow([r[k] for k in ('model', 'correlation', 'label_pearson', 'params', 'runs',
                                 'data_seeds', 'lr', 'mean', 'std', 'ci_lo', 'ci_hi', 'median',
                                 'nonfinite')])
  md = ['### MMoE paper synthetic experiment: test MSE per (model, correlation)', '',
        '| ' + ' | '.join(HEADER) + ' |', '|' + '---|' * len(HEADER)]
  md += [f'| {LABELS.get(r["model"], r["model"])} | {r["correlation"]} | '
         f'{r["label_pearson"]:.3f} | {r["params"]:,} | {r["runs"]} | {r["lr"]:g} | '
         f'{r["mean"]:.4f} | {r["std"]:.4f} | [{r["ci_lo"]:.4f}, {r["ci_hi"]:.4f}] | '
         f'{r["median"]:.4f} |' for r in table]
  n_sel = len(select_records) // max(len({(r['group']['model'], r['group']['correlation'])
                                          for r in select_records}), 1)
  md += ['', f'Test MSE is the mean of the two tasks\' MSE on {p.num_test:,} test rows (label '
         f'variance ~1.30, noise variance {mmoe_synthetic.DEFAULTS["noise_std"] ** 2:g}) after '
         f'{p.steps} Adam steps at batch {p.batch_size} (one pass over {p.num_train:,} rows). '
         f'Runs = {p.data_seeds} data seeds x {p.seeds} init seeds; 95% CI: t-interval over the '
         f'data seeds\' means. lr: chosen on valid MSE from {list(p.lrs)} with {n_sel} '
         f'selection runs per cell (select.md). Label Pearson: population correlation of y1, y2 '
         f'(quadrature). Gates without bias (eq. 8). Non-finite runs: '
         f'{sum(r["nonfinite"] for r in table)}.', '',
         '**The paper\'s findings** (paired by data seed; mean difference [95% CI]):', '']
  md += findings(records)
  md += ['', f'Wall time {timing["wall"] / 60:.1f} min (selection {timing["select_wall"] / 60:.1f}'
         f', reported runs {timing["report_wall"] / 60:.1f}; finished cells are skipped on a '
         f'rerun) with --runs_per_group={timing["runs_per_group"]} on this 2-core CPU shared '
         f'with other jobs (1-min load average {timing["load_start"]:.1f} at the start, '
         f'{timing["load_end"]:.1f} at the end).{timing.get("note", "")} Command: '
         '`bash launch.sh mmoe_paper`; every cell\'s config and command: `cells/*.json`.']
  text = '\n'.join(md) + '\n'
  with open(os.path.join(outdir, 'table.md'), 'w') as f:
    f.write(text)
  plot(records, table, outdir)
  return text
