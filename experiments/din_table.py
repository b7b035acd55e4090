"""The DIN paper's Table 3 (Zhou et al., KDD 2018): LR, BaseModel, Wide&Deep, PNN, DeepFM, DIN
and DIN with Dice trained on the same data, embeddings and MLP, compared on test GAUC.

  bash launch.sh din_table            # quick default: movielens (latest-small) + synthetic,
                                      # 5 seeds; copies the tables to docs/results/din_table/
  python -m experiments.din_table --full               # synthetic with 40k users (8x)
  python -m experiments.din_table --dataset=movielens \\
      --override=data.movielens.path=/data/ml-20m.zip --override=train.eval_every=5000
  python -m experiments.din_table --dataset=amazon --override=data.amazon.path=/data/amazon

Protocol. Every cell is one full run of `seqrec_jax.train.train_and_evaluate` from
`seqrec_jax/configs/din.py:<dataset>` plus PROTOCOL (Adam 3e-3 with cosine decay, batch 256, d=16,
MLP 200-80, attention 80-40, no regularisation; pinned below) and the row's overrides: the state
with the best **valid** GAUC (evaluated every train.eval_every steps) is reported on **test** (the
paper and its code report the best test value). Metrics: test GAUC (user-weighted AUC, DIN eq.
10), AUC, logloss, and RelaImpr = ((GAUC - 0.5) / (GAUC_base - 0.5) - 1) x 100% on GAUC as in the
paper, computed per seed against BaseModel of the same seed; mean ± std over seeds. Rows: PReLU in
every deep model's MLP (the paper's baselines), DIN with PReLU in the main and attention MLP, DIN
with Dice in both. Finished cells are skipped on rerun (resumable); every cell's overrides, full
config and reproducing command are in <outdir>/<dataset>/cells/*.json and listed in commands.md.
"""
from __future__ import annotations

import ast
import csv
import math
import os
import time

from absl import app, flags, logging
import numpy as np

from experiments import publish, resolved, sweep
from seqrec_jax import metrics, xla_cpu

FLAGS = flags.FLAGS


def define_flags():
  """Flags are defined only when run as a script, so tests can import this module next to
  other experiments that define flags of the same names (absl flags are global)."""
  flags.DEFINE_list('dataset', ['movielens', 'synthetic'], 'Registered dataset names.')
  flags.DEFINE_enum('protocol', 'adam', list(PROTOCOLS), 'Optimiser protocol of every row: adam '
                    '(Adam 3e-3, cosine, batch 256) or paper (the DIN paper: SGD lr 1.0, '
                    'exponential decay rate 0.1, batch 32); paper writes to <outdir>_paper.')
  flags.DEFINE_integer('seeds', 5, 'Seeds per model.')
  flags.DEFINE_list('models', [], 'Subset of rows by key (lr, base, wide_deep, pnn, deepfm, din, '
                    'din_dice); default all.')
  flags.DEFINE_string('outdir', 'runs/din_table', 'Output root; one subdirectory per dataset.')
  flags.DEFINE_bool('full', False, 'Synthetic data with 40k users (not the 30-minute budget).')
  flags.DEFINE_multi_string('override', [], 'Extra config override key=value for every cell, '
                            'e.g. data.movielens.path=/data/ml-20m.zip (applied last).')
  sweep.define_runs_per_group_flag()
  flags.adopt_module_key_flags(sweep)     # list --runs_per_group under this script's --help
  flags.DEFINE_bool('docs', True, 'After a default run (default datasets, --outdir, all models, '
                    'no --override) copy tables and plots to docs/results/din_table[_full]/ '
                    '(experiments/publish.py; shown by docs/din_table.md).')


# (key, label in the paper, overrides). The order is the paper's.
ROWS = (
    ('lr', 'LR', {'model.name': 'lr'}),
    ('base', 'BaseModel', {'model.name': 'base', 'model.pooling': 'sum',
                           'model.activation': 'prelu'}),
    ('wide_deep', 'Wide&Deep', {'model.name': 'wide_deep', 'model.activation': 'prelu'}),
    ('pnn', 'PNN', {'model.name': 'pnn', 'model.activation': 'prelu'}),
    ('deepfm', 'DeepFM', {'model.name': 'deepfm', 'model.activation': 'prelu'}),
    ('din', 'DIN', {'model.name': 'din', 'model.activation': 'prelu'}),
    ('din_dice', 'DIN with Dice', {'model.name': 'din', 'model.activation': 'dice'}),
)
BASE = 'BaseModel'
# DIN paper Table 3, user-weighted AUC (mean of 5 runs), as quoted in docs/design.md.
PAPER = {
    'MovieLens-20M': {'LR': 0.7263, 'BaseModel': 0.7300, 'Wide&Deep': 0.7304, 'PNN': 0.7321,
                      'DeepFM': 0.7324, 'DIN': 0.7337, 'DIN with Dice': 0.7348},
    'Amazon Electronics': {'LR': 0.7742, 'BaseModel': 0.8624, 'Wide&Deep': 0.8637,
                           'PNN': 0.8679, 'DeepFM': 0.8683, 'DIN': 0.8818,
                           'DIN with Dice': 0.8871},
}
RESOLVE = ('eval/test/gauc', 'eval/test/auc', 'eval/test/logloss')   # vs BaseModel, per seed
METRICS = ('eval/test/gauc', 'rela_impr', 'eval/test/auc', 'eval/test/logloss',
           'eval/valid/gauc', 'best_step', 'params', 'examples_per_sec', 'wall_seconds')


# The comparison's protocol, pinned here (not inherited from shared defaults that other
# studies tune), so a cell id - a hash of its overrides - always means the same experiment.
PROTOCOL = {
    'train.progress': False, 'train.select_metric': 'gauc', 'train.patience': -1,
    'train.checkpoint_every': 1_000_000,   # the best-on-valid state is saved at each eval
    'data.batch_size': 256, 'optim.name': 'adam', 'optim.learning_rate': 3e-3,
    'optim.schedule': 'cosine', 'optim.warmup_steps': 0, 'optim.clip_norm': 0.0,
    'model.embed_dim': 16, 'model.hidden': (200, 80), 'model.dropout': 0.0,
    'model.use_user_embedding': False, 'model.wide_cross_buckets': 1 << 20,
    'model.attention.name': 'din', 'model.attention.inputs': ('q', 'k', 'q-k', 'q*k'),
    'model.attention.hidden': (80, 40), 'model.attention.activation': 'same',
    'model.attention.normalizer': 'none',
    'train.save_predictions': True,        # test predictions for the bootstrap over users
}
# The DIN paper's protocol (Sec. 6.2-6.3; its released code: SGD, lr 1.0 -> 0.1, batch 32,
# gradients clipped to global norm 5). The paper's "exponential decay, decay rate 0.1" is mapped
# to lr(step) = 1.0 * 0.1 ** (step / total_steps): smooth, reaching 0.1 at the last step (the
# released code drops 1.0 -> 0.1 once, at step 336000 of 50 epochs).
PAPER_PROTOCOL = {
    'data.batch_size': 32, 'optim.name': 'sgd', 'optim.learning_rate': 1.0,
    'optim.schedule': 'exponential', 'optim.decay_rate': 0.1, 'optim.decay_steps': 0,
    'optim.staircase': False, 'optim.clip_norm': 5.0,
}
PROTOCOLS = {'adam': {}, 'paper': PAPER_PROTOCOL}
# Planted-interest generator (data/synthetic.py), every parameter pinned.
SYNTHETIC = dict(num_users=5000, num_items=1000, num_cates=20, max_len=30, min_len=3,
                 impressions_per_user=10, max_interests=5, latent_dim=8, item_noise=0.2,
                 noise_behaviour_prob=0.1, target_interest_prob=0.5, alpha=5.0, beta=-2.5,
                 item_bias_std=0.1, valid_frac=0.1, test_frac=0.1, seed=0)


def size_overrides(dataset: str, full: bool, protocol: str = 'adam') -> dict:
  """PROTOCOL (+ PAPER_PROTOCOL) + per-dataset sizes; --override flags are applied after."""
  o = {**PROTOCOL, **PROTOCOLS[protocol]}
  # Batch 32 has 8x the steps of batch 256 per epoch: evaluate as often per epoch.
  every = 8 if o['data.batch_size'] == 32 else 1
  if dataset == 'synthetic':
    gen = dict(SYNTHETIC, num_users=40000) if full else SYNTHETIC
    o.update({f'data.synthetic.{k}': v for k, v in gen.items()})
    # quick: 40k train rows, 4 epochs = 624 steps of 256; full: 320k rows, 5000 steps.
    o.update({'train.num_epochs': 4.0, 'train.eval_every': (500 if full else 125) * every})
  elif dataset == 'movielens':
    # latest-small: ~81k train rows = 316 steps/epoch. For ml-20m raise eval_every.
    o.update({'train.num_epochs': 3.0, 'train.eval_every': 100 * every})
  return o


def parse_overrides(items) -> dict:
  out = {}
  for item in items:
    key, sep, raw = item.partition('=')
    if not sep:
      raise ValueError(f'--override={item!r}: expected key=value')
    try:
      out[key] = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      out[key] = raw          # a bare string such as a path
  return out


def make_cells(dataset: str, seeds: int, full: bool, models=(), extra=None,
               protocol: str = 'adam') -> list[sweep.Cell]:
  keys = [r[0] for r in ROWS]
  unknown = sorted(set(models) - set(keys))
  if unknown:
    raise ValueError(f'--models: unknown rows {unknown}; choose from {keys}')
  cells = []
  for key, label, ov in ROWS:
    if models and key not in models:
      continue
    for seed in range(seeds):
      cells.append(sweep.Cell({'model': label},
                              {**size_overrides(dataset, full, protocol), **ov, **(extra or {})},
                              seed))
  return cells


def add_rela_impr(records: list[dict]) -> None:
  """rela_impr (GAUC, %) of each record against BaseModel with the same seed (NaN if none)."""
  base = {r['seed']: r['summary']['eval/test/gauc'] for r in records
          if r['group']['model'] == BASE}
  for r in records:
    b = base.get(r['seed'])
    r['summary']['rela_impr'] = (metrics.rela_impr(r['summary']['eval/test/gauc'], b)
                                 if b is not None else float('nan'))
    r['summary']['wall_seconds'] = r.get('wall_seconds', float('nan'))


def _pm(row, key, digits=4, pct=False):
  m, s = row.get(key, float('nan')), row.get(key + '_std', 0.0)
  if m is None or (isinstance(m, float) and math.isnan(m)):
    return 'n/a'
  return f'{m:+.2f} ± {s:.2f} %' if pct else f'{m:.{digits}f} ± {s:.{digits}f}'


def dataset_table(rows, dataset: str, info: dict, outdir: str) -> str:
  """Per-dataset detail table (markdown + csv)."""
  head = ['Model', 'seeds', 'test GAUC', 'RelaImpr (GAUC)', 'test AUC', 'test logloss',
          'valid GAUC', 'params', 'best step', 's/run']
  lines = [f'### {dataset}', '', '| ' + ' | '.join(head) + ' |',
           '|' + '---|' * len(head)]
  for r in rows:
    lines.append('| ' + ' | '.join([
        r['model'], str(r['n_seeds']), _pm(r, 'eval/test/gauc'), _pm(r, 'rela_impr', pct=True),
        _pm(r, 'eval/test/auc'), _pm(r, 'eval/test/logloss'), _pm(r, 'eval/valid/gauc'),
        f'{r["params"]:,.0f}', f'{r["best_step"]:.0f}', f'{r["wall_seconds"]:.0f}']) + ' |')
  if 'test/oracle_gauc' in info:
    lines += ['', f'Oracle (true click probability) on this test split: GAUC '
              f'{info["test/oracle_gauc"]:.4f}, AUC {info["test/oracle_auc"]:.4f}, '
              f'logloss {info["test/oracle_logloss"]:.4f}.']
  text = '\n'.join(lines) + '\n'
  with open(os.path.join(outdir, 'table.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(outdir, 'table.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['model', 'n_seeds'] + [x for m in METRICS for x in (m, m + '_std')])
    for r in rows:
      w.writerow([r['model'], r['n_seeds']] + [x for m in METRICS
                                               for x in (r.get(m), r.get(m + '_std'))])
  return text


def combined_table(per_ds: dict, outdir: str) -> str:
  """The paper's layout: one GAUC + RelaImpr column pair per dataset, then the paper's."""
  labels = [r[1] for r in ROWS]
  head = ['Model']
  for ds in per_ds:
    head += [f'{ds} GAUC', 'RelaImpr']
  for name in PAPER:
    head += [f'paper {name} GAUC', 'RelaImpr']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  csv_rows = []
  for label in labels:
    cells, crow = [label], [label]
    for rows in per_ds.values():
      r = next((x for x in rows if x['model'] == label), None)
      cells += ([_pm(r, 'eval/test/gauc'), _pm(r, 'rela_impr', pct=True)] if r
                else ['—', '—'])
      crow += [r and r['eval/test/gauc'], r and r['eval/test/gauc_std'],
               r and r['rela_impr'], r and r['rela_impr_std']]
    for ref in PAPER.values():
      v = ref.get(label)
      ri = metrics.rela_impr(v, ref[BASE]) if v is not None else None
      cells += [f'{v:.4f}' if v else '—', f'{ri:+.2f} %' if ri is not None else '—']
      crow += [v, ri]
    lines.append('| ' + ' | '.join(cells) + ' |')
    csv_rows.append(crow)
  text = '\n'.join(lines) + '\n'
  with open(os.path.join(outdir, 'table.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(outdir, 'table.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['model'] + [f'{ds}_{m}' for ds in per_ds for m in
                            ('gauc', 'gauc_std', 'rela_impr', 'rela_impr_std')]
               + [f'paper_{n}_{m}' for n in PAPER for m in ('gauc', 'rela_impr')])
    w.writerows(csv_rows)
  return text


def plot_rela_impr(per_ds: dict, path: str) -> None:
  """Grouped bars: RelaImpr (GAUC) per model for each of our datasets and the paper's."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  labels = [r[1] for r in ROWS if r[1] != BASE]
  series = {}
  for ds, rows in per_ds.items():
    by = {r['model']: r for r in rows}
    series[f'{ds} (ours)'] = ([by[l]['rela_impr'] if l in by else np.nan for l in labels],
                              [by[l]['rela_impr_std'] if l in by else 0 for l in labels])
  for name, ref in PAPER.items():
    series[f'{name} (paper)'] = ([metrics.rela_impr(ref[l], ref[BASE]) if l in ref else np.nan
                                  for l in labels], [0] * len(labels))
  fig, ax = plt.subplots(figsize=(9, 4))
  width = 0.8 / len(series)
  for i, (name, (m, s)) in enumerate(series.items()):
    x = np.arange(len(labels)) + (i - (len(series) - 1) / 2) * width
    ax.bar(x, m, width, yerr=s, capsize=2, label=name,
           hatch='//' if 'paper' in name else None, alpha=0.85)
  ax.axhline(0, color='k', lw=0.8)
  ax.set_xticks(np.arange(len(labels)), labels, fontsize=8)
  ax.set_ylabel('RelaImpr vs BaseModel on GAUC (%)')
  ax.set_title('DIN paper Table 3: ours (mean ± std over seeds) vs published', fontsize=10)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_commands(records, outdir: str) -> None:
  with open(os.path.join(outdir, 'commands.md'), 'w') as f:
    f.write('| model | seed | test GAUC | command (full config: cells/<id>.json) |\n'
            '|---|---|---|---|\n')
    for r in records:
      f.write(f'| {r["group"]["model"]} | {r["seed"]} | '
              f'{r["summary"]["eval/test/gauc"]:.4f} | `{r["command"]}` |\n')


def result_files(datasets) -> list[str]:
  """What a run leaves in --outdir for the docs: the report, the combined table and plot, and
  each dataset's table, plot and commands."""
  per_ds = ('table.md', 'table.csv', 'gauc.png', 'commands.md', 'resolved.md')
  return (['report.md', 'table.md', 'table.csv', 'rela_impr.png']
          + [f'{d}/{name}' for d in datasets for name in per_ds])


def run_dataset(dataset: str, seeds: int, outdir: str) -> tuple[list[dict], str]:
  cells = make_cells(dataset, seeds, FLAGS.full, FLAGS.models, parse_overrides(FLAGS.override),
                     FLAGS.protocol)
  records = sweep.run_sweep(f'seqrec_jax/configs/din.py:{dataset}', cells, outdir,
                            runs_per_group=FLAGS.runs_per_group)
  add_rela_impr(records)
  rows = sweep.aggregate(records, METRICS)
  info = {k.split('/', 1)[1]: v for k, v in records[0]['summary'].items()
          if k.startswith('oracle/')}
  text = dataset_table(rows, dataset, info, outdir)
  comp = resolved.compare(records, lambda r: r['group']['model'], BASE, outdir, RESOLVE,
                          rows=[r[1] for r in ROWS])
  res = resolved.markdown(comp, RESOLVE, f'#### {dataset}: which differences from {BASE} are '
                          'resolved')
  with open(os.path.join(outdir, 'resolved.md'), 'w') as f:
    f.write(res)
  text += '\n' + res
  ref = {'oracle': info['test/oracle_gauc']} if 'test/oracle_gauc' in info else None
  sweep.plot_bars(rows, ['model'], 'eval/test/gauc', os.path.join(outdir, 'gauc.png'),
                  title=f'{dataset}: test GAUC (mean ± std over {seeds} seeds)', reference=ref)
  write_commands(records, outdir)
  return rows, text


def main(argv):
  del argv
  xla_cpu.apply_defaults()  # CPU runtime defaults, before any JAX computation
  logging.set_verbosity(logging.WARNING)    # orbax logs every save at INFO
  seeds = FLAGS.seeds
  paper = FLAGS.protocol == 'paper'
  outdir = FLAGS.outdir + ('_paper' if paper else '')
  size = 'full' if FLAGS.full else 'quick'
  t0, c0 = time.time(), time.process_time()
  per_ds, details = {}, []
  for dataset in FLAGS.dataset:
    rows, text = run_dataset(dataset, seeds, os.path.join(outdir, dataset))
    per_ds[dataset], details = rows, details + [text]
  os.makedirs(outdir, exist_ok=True)
  combined = combined_table(per_ds, outdir)
  plot_rela_impr(per_ds, os.path.join(outdir, 'rela_impr.png'))
  cell_s = sum(r['wall_seconds'] * r['n_seeds'] for rows in per_ds.values() for r in rows)
  wall, cpu = time.time() - t0, time.process_time() - c0
  report = (combined + '\n' + '\n'.join(details) + '\n'
            f'{seeds} seeds per model, protocol {FLAGS.protocol}. This invocation: '
            f'{wall / 60:.1f} min wall, '
            f'{cpu / 60:.1f} min CPU (all threads); the cells (run now or by an earlier, '
            f'resumed invocation) took {cell_s / 60:.1f} min wall in total; s/run is a cell\'s '
            'wall time (train + evals). '
            f'Outputs: {outdir}/ (table.md/.csv, rela_impr.png, <dataset>/table.md, '
            'gauc.png, commands.md, cells/*.json).\n')
  print(report)
  with open(os.path.join(outdir, 'report.md'), 'w') as f:
    f.write(report)
  default_run = (set(FLAGS.dataset) == {'movielens', 'synthetic'} and not FLAGS.models
                 and not FLAGS.override and FLAGS.outdir == FLAGS['outdir'].default)
  if FLAGS.docs and default_run:
    study = ('din_table' if size == 'quick' else 'din_table_full') + ('_paper' if paper else '')
    print('copied to', publish.publish(outdir, study, result_files(FLAGS.dataset)))


if __name__ == '__main__':
  define_flags()
  app.run(main)
