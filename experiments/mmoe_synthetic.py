"""The MMoE paper's synthetic study: how task correlation affects Shared-Bottom, OMoE, MMoE
(and PLE) on two regression tasks (Ma et al., KDD'18, Sec. 3 and 5.2).

  bash launch.sh mmoe                                  # this study, then the census table
  python -m experiments.mmoe_synthetic                 # correlations 1.0, 0.9, 0.5; 3 seeds
  python -m experiments.mmoe_synthetic --full --seeds=5   # + 0.7, 0.3, 0.0, single_task

A fast smoke study on 10k rows; the paper's own protocol (200k rows, >= 100 runs per cell,
learning rate chosen on valid, CIs and the paper's findings) is experiments/mmoe_paper.py.

Data (data/mmoe_synthetic.py): d = 100 Gaussian inputs, labels y_k = w_k.x + sum of 10
sinusoids of w_k.x + noise, cos(w1, w2) = the correlation. Every seed draws a new dataset
(new u1, u2, x and noise; the sinusoids' alpha_i, beta_i are pinned constants, the same for
every seed) and a new initialisation, so the spread covers both. Models have
~15k parameters each (8 experts of 16 ReLU units, towers of 8; the shared bottom is 128
wide). Each cell trains 30 epochs of 10k rows with Adam; the state with the lowest mean
validation MSE is reported on test. A study spec (experiments/study.py): writes cells.csv,
bootstrap.csv, table.md/.csv, resolved.md/.csv (each model vs shared_bottom and MMoE vs OMoE
per correlation: seed and test-row bootstrap intervals, Holm over the table),
mse_vs_correlation.png and train_loss.png (mean training loss over seeds vs step, one panel
per correlation, as the paper's Figure 4) to --outdir (default runs/mmoe_synthetic); a
default run also copies them to docs/results/mmoe_synthetic/ (shown by docs/multitask.md;
`python -m experiments.recheck mmoe_synthetic` recomputes them).
"""
from __future__ import annotations

import os

from absl import app, flags
import numpy as np

from experiments import report, study, sweep
from seqrec_jax import xla_cpu
from seqrec_jax.data import mmoe_synthetic

FLAGS = flags.FLAGS


def define_flags():
  """Defined only when run as a script (see sweep.define_study_flags)."""
  sweep.define_study_flags(3, 'Seeds (datasets x initialisations) per cell.',
                           'runs/mmoe_synthetic', 'More correlations and the single_task baseline.',
                           '30 epochs')
  flags.adopt_module_key_flags(sweep)     # list them under this script's --help


MODELS = ('shared_bottom', 'omoe', 'mmoe', 'ple')
CORRELATIONS = (1.0, 0.9, 0.5)
FULL_CORRELATIONS = (1.0, 0.9, 0.7, 0.5, 0.3, 0.0)
METRICS = ('eval/test/mean/mse', 'eval/test/y1/mse', 'eval/test/y2/mse', 'params')
TASKS = ('y1', 'y2')
CONFIG = 'seqrec_jax/configs/multitask.py:mmoe_synthetic'


def make_cells(seeds: int, full: bool, num_steps: int = -1) -> list[sweep.Cell]:
  models = (('single_task',) if full else ()) + MODELS
  base = {'train.progress': False, 'train.save_predictions': True}   # the bootstrap's input
  if num_steps > 0:
    base.update({'train.num_steps': num_steps, 'train.eval_every': max(num_steps // 4, 1),
                 'train.log_every': max(num_steps // 20, 1)})
  cells = []
  for corr in (FULL_CORRELATIONS if full else CORRELATIONS):
    for m in models:
      for s in range(seeds):
        cells.append(sweep.Cell(
            group={'correlation': corr, 'model': m},
            overrides={**base, 'model.name': m, 'data.mmoe_synthetic.correlation': corr,
                       'data.mmoe_synthetic.seed': s}, seed=s))
  return cells


def label_stats(correlation: float, seeds: int) -> tuple[float, float]:
  """(test-label Pearson correlation, mean test-label variance), averaged over the seeds'
  datasets."""
  pearson, var = [], []
  for s in range(seeds):
    info = mmoe_synthetic.generate(
        **dict(mmoe_synthetic.DEFAULTS, correlation=correlation, seed=s)).info
    pearson.append(info['test/label_pearson'])
    var.append((info['test/y1_var'] + info['test/y2_var']) / 2)
  return float(np.mean(pearson)), float(np.mean(var))


def train_curves(records, outdir: str) -> dict:
  """(correlation, model) -> (steps, mean training loss over seeds) from metrics.jsonl."""
  curves: dict = {}
  for r in records:
    pts = {rec['step']: rec['train/loss'] / 2.0       # mean over the two tasks
           for rec in sweep.cell_metrics(r, outdir) if 'train/loss' in rec}
    if not pts:
      continue
    curves.setdefault((r['group']['correlation'], r['group']['model']), []).append(pts)
  out = {}
  for key, runs in curves.items():
    steps = sorted(set.intersection(*[set(p) for p in runs]))
    out[key] = (np.array(steps), np.array([[p[s] for s in steps] for p in runs]).mean(0))
  return out


def figures(cells, records, outdir: str) -> list[str]:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = report.aggregate_cells(cells, ('correlation', 'model'), METRICS, modal=METRICS[:3])
  models = list(dict.fromkeys(r['model'] for r in rows))
  fig, ax = plt.subplots(figsize=(6, 4))
  for m in models:
    rs = sorted((r for r in rows if r['model'] == m), key=lambda r: r['correlation'])
    ax.errorbar([r['correlation'] for r in rs], [r['eval/test/mean/mse'] for r in rs],
                yerr=[r['eval/test/mean/mse_std'] for r in rs], marker='o', capsize=3, label=m)
  ax.set_xlabel('task correlation cos(w1, w2)')
  ax.set_ylabel('test MSE (mean of the two tasks)')
  ax.set_title('MMoE synthetic study: test MSE vs correlation (mean ± std)', fontsize=10)
  ax.legend()
  report.save_figure(fig, os.path.join(outdir, 'mse_vs_correlation.png'))
  curves = train_curves(records, outdir)
  corrs = sorted({k[0] for k in curves}, reverse=True)
  if not corrs:
    return ['mse_vs_correlation.png']
  fig, axes = plt.subplots(1, len(corrs), figsize=(4 * len(corrs), 3.4), squeeze=False)
  for ax, c in zip(axes[0], corrs):
    for m in models:
      if (c, m) in curves:
        steps, loss = curves[(c, m)]
        ax.plot(steps, loss, label=m)
    ax.set_yscale('log')
    ax.set_title(f'correlation {c}', fontsize=10)
    ax.set_xlabel('step')
  axes[0][0].set_ylabel('training loss (MSE per task, mean over seeds)')
  axes[0][-1].legend(fontsize=8)
  report.save_figure(fig, os.path.join(outdir, 'train_loss.png'))
  return ['mse_vs_correlation.png', 'train_loss.png']


COLUMNS = [('correlation', 'correlation'), ('label Pearson', 'label_pearson'),
           ('model', 'model'), ('test MSE (mean)', 'eval/test/mean/mse'),
           ('test MSE y1', 'eval/test/y1/mse'), ('test MSE y2', 'eval/test/y2/mse'),
           ('params', 'params'), ('seeds', 'n_seeds')]


def families(cells, dataset: str = '') -> list[report.Family]:
  """Each model vs shared_bottom and MMoE vs OMoE (the paper's claims), per correlation, on
  the mean test MSE: one table, one Holm family."""
  del dataset
  present = {(c['correlation'], c['model']) for c in cells}
  pairs = [(f'{m} @ {corr}', f'{base} @ {corr}')
           for corr in dict.fromkeys(c['correlation'] for c in cells)
           for m, base in [(m, 'shared_bottom') for m in ('single_task', *MODELS)
                           if m != 'shared_bottom'] + [('mmoe', 'omoe')]
           if (corr, m) in present and (corr, base) in present]
  return [report.Family('resolved', 'MMoE synthetic: each model vs shared_bottom, MMoE vs OMoE '
                        '(test MSE, mean of the two tasks; Δ < 0 = the row is better)', pairs,
                        ('eval/test/mean/mse',), lambda c: f'{c["model"]} @ {c["correlation"]}')]


def tables(cells, results, outdir: str, ctx: dict) -> list[str]:
  del results, ctx
  rows = report.aggregate_cells(cells, ('correlation', 'model'), METRICS, modal=METRICS[:3])
  seeds = sorted({c['seed'] for c in cells})
  stats = {}
  for r in rows:
    r.pop('params_std', None)
    r['params'] = int(r['params'])
    c = r['correlation']
    if c not in stats:
      stats[c] = label_stats(c, len(seeds))
    r['label_pearson'] = stats[c][0]
  label_var = np.mean([v for _, v in stats.values()])
  noise_var = mmoe_synthetic.DEFAULTS['noise_std'] ** 2
  steps = sorted({int(c['steps']) for c in cells})
  notes = (f'Test MSE per task (lower is better; test label variance {label_var:.2f}, noise '
           f'variance {noise_var:g}); mean ± std over seeds {seeds}, each seed a new dataset '
           f'and initialisation; model selection on mean valid MSE. Label Pearson: '
           f'correlation of y1 and y2 on test (mean over the seeds\' datasets). Steps per '
           f'cell: {", ".join(map(str, steps))}. Cells: {len(cells)}; summed cell wall time '
           f'{sum(c["wall_seconds"] for c in cells) / 60:.1f} min. Per-cell values: '
           'cells.csv; comparisons: resolved.md.')
  report.write_table(rows, COLUMNS, outdir, title='MMoE synthetic study (2 regression '
                     'tasks, d = 100)', notes=notes)
  return ['table.md', 'table.csv']


STUDY = study.Study('mmoe_synthetic', METRICS + ('steps',), tables, families, TASKS,
                    figures)


def main(argv):
  del argv
  xla_cpu.apply_defaults()  # CPU runtime defaults, before any JAX computation
  outdir = FLAGS.outdir or os.path.join('runs', 'mmoe_synthetic')
  records, wall = sweep.run_study(CONFIG, make_cells(FLAGS.seeds, FLAGS.full, FLAGS.num_steps),
                                  outdir, FLAGS.seeds, FLAGS.runs_per_group)
  study.study_main(STUDY, records, outdir,
                   publish_to='mmoe_synthetic' if sweep.publishes() else None)
  print(f'sweep: {wall / 60:.1f} min')


if __name__ == '__main__':
  define_flags()
  app.run(main)
