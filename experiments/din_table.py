"""The DIN paper's Table 3 (Zhou et al., KDD 2018): LR, BaseModel, Wide&Deep, PNN, DeepFM, DIN
and DIN with Dice trained on the same data, embeddings and MLP, compared on test GAUC.

  bash launch.sh din_table            # default: movielens (latest-small) + synthetic, 10 seeds,
                                      # --protocol=both (adam, then paper); copies the tables to
                                      # docs/results/din_table/ (adam) and .../din_table/paper/
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
--protocol=paper (PAPER_PROTOCOL, one epoch) adds BaseModel with its lr chosen on valid
(BASE_LR_GRID; our deviation). A run whose training loss turns non-finite is recorded as diverged
(its summary says so: run_cells) and counted per row, never averaged in. docs/din_table.md has
both tables.
"""
from __future__ import annotations

import csv
import math
import os
import time

from absl import app, flags, logging
import numpy as np

from experiments import publish, resolved, sweep
from seqrec_jax import metrics, multirun, xla_cpu
from seqrec_jax.configs import define_override_flag, study_overrides

FLAGS = flags.FLAGS


def define_flags():
  """Flags are defined only when run as a script, so tests can import this module next to
  other experiments that define flags of the same names (absl flags are global)."""
  flags.DEFINE_list('dataset', ['movielens', 'synthetic'], 'Datasets, one table each (outdir/'
                    '<dataset>): ' + ', '.join(f'{k} ({v})' for k, v in FITS.items()) + '.')
  flags.DEFINE_enum('protocol', 'both', ['both', *PROTOCOLS], 'Optimiser protocol of every '
                    'row: adam (Adam 3e-3, cosine, batch 256), paper (the DIN paper: SGD lr 1.0, '
                    'exponential decay rate 0.1, batch 32, clip 5; one epoch; writes to '
                    '<outdir>_paper) or both, one after the other (each timed).')
  flags.DEFINE_integer('seeds', SEEDS, 'Seeds per model.')
  flags.DEFINE_list('models', [], 'Subset of rows by key (lr, base, wide_deep, pnn, deepfm, din, '
                    'din_dice); default all.')
  flags.DEFINE_string('outdir', 'runs/din_table', 'Output root; one subdirectory per dataset.')
  flags.DEFINE_bool('full', False, 'Synthetic data with 40k users (not the 30-minute budget).')
  define_override_flag()
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
           'eval/valid/gauc', 'peak_train_loss', 'best_step', 'params', 'examples_per_sec',
           'wall_seconds')


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
SEEDS = 10
# Epochs under the paper's protocol: one, where Adam trains 3 (MovieLens) and 4 (synthetic). A
# batch-32 step costs about what a batch-256 step costs on this CPU, so an epoch costs ~8x;
# one epoch (2528 / 1250 SGD steps, 2.7x / 2x Adam's step count) keeps 10 seeds in the budget.
PAPER_EPOCHS = 1.0
# Our deviation, labelled as such: BaseModel with the paper's SGD, decay, batch and clip but its
# learning rate chosen on valid GAUC (mean over seeds) from this grid; 1.0 is the literal row.
BASE_LR_GRID = (1.0, 0.3, 0.1)
BASE_TUNED = 'BaseModel (lr on valid)'
# Runs per multi-run group for each protocol, measured (docs/din_table.md, "Execution"): under
# Adam (batch 256) a group was slower per run than cells one by one for BaseModel and DIN, so
# every cell runs alone; at batch 32 a step is dispatch-bound and a group of 10 was 3-10x
# faster per run (BaseModel, DIN, DIN with Dice). --runs_per_group, when given, wins.
RUNS_PER_GROUP = {'adam': 1, 'paper': 30}
# Planted-interest generator (data/synthetic.py), every parameter pinned.
SYNTHETIC = dict(num_users=5000, num_items=1000, num_cates=20, max_len=30, min_len=3,
                 impressions_per_user=10, max_interests=5, latent_dim=8, item_noise=0.2,
                 noise_behaviour_prob=0.1, target_interest_prob=0.5, alpha=5.0, beta=-2.5,
                 item_bias_std=0.1, valid_frac=0.1, test_frac=0.1, seed=0)


# Datasets with DIN's inputs (a target item and category plus the user's behaviour sequence).
FITS = {'movielens': 'ratings as clicks; latest-small offline, any release via '
                     'data.movielens.path', 'synthetic': 'planted interests, with an oracle',
        'amazon': 'reviews 5-core + meta, needs data.amazon.path'}
NEEDS = 'behaviour sequences (history item and category ids) and a click label'


def cell_overrides(dataset: str, override_flags) -> dict:
  """--override values for one dataset's cells: typed by its config (din.py:<dataset>),
  data.<other dataset>.* dropped; fails on a dataset without DIN's inputs."""
  return study_overrides('din_table', dataset, override_flags,
                         f'seqrec_jax/configs/din.py:{dataset}', FITS, NEEDS)


def size_overrides(dataset: str, full: bool, protocol: str = 'adam') -> dict:
  """PROTOCOL (+ PAPER_PROTOCOL) + per-dataset sizes; --override flags are applied after."""
  if protocol not in PROTOCOLS:
    raise ValueError(f'--protocol={protocol!r}: choose from {sorted(PROTOCOLS)}')
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
  if protocol == 'paper' and dataset in ('synthetic', 'movielens') and not full:
    o['train.num_epochs'] = PAPER_EPOCHS
  return o


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
    if key == 'base' and protocol == 'paper':   # the lr candidates of BASE_TUNED (not 1.0)
      for lr in BASE_LR_GRID[1:]:
        for seed in range(seeds):
          cells.append(sweep.Cell({'model': _candidate(lr)},
                                  {**size_overrides(dataset, full, protocol), **ov,
                                   'optim.learning_rate': lr, **(extra or {})}, seed))
  return cells


def _candidate(lr: float) -> str:
  return f'{BASE} lr={lr:g}'


def run_cells(config_spec: str, cells: list[sweep.Cell], outdir: str, runs_per_group: int,
              train_fn=None, log=print) -> list[dict]:
  """sweep.run_sweep, where a run whose training loss turns non-finite is a diverged record:
  a group's diverged run is in its summary (`diverged`, `diverged_step`: the engine masks it
  and trains the others on); a single run, or a group whose every run diverged, stops with the
  engine's FloatingPointError, recorded as {'diverged': True, 'error': message} for each of
  its cells. Rerunning skips diverged cells like finished ones. Records in `cells`' order."""
  return sweep.run_sweep(config_spec, cells, outdir, train_fn=_diverged_as_summary(train_fn),
                         log=log, runs_per_group=runs_per_group)


def _diverged_as_summary(train_fn):
  """train_fn (default train_and_evaluate), but the engine's FloatingPointError returns
  summaries marked diverged (one per run of a group) instead of stopping the sweep."""
  if train_fn is None:
    from seqrec_jax.train import train_and_evaluate as train_fn  # pylint: disable=g-import-not-at-top

  def fn(cfg, workdir):
    try:
      return train_fn(cfg, workdir)
    except FloatingPointError as e:
      failed = {'diverged': True, 'error': str(e)}
      if not multirun.is_group(cfg):
        return failed
      return {'runs': [dict(failed, seed=r.seed, hparams=r.hparams)
                       for r in multirun.group_runs(cfg)]}
  return fn


def is_diverged(rec: dict) -> bool:
  return bool(rec['summary'].get('diverged'))


def diverged_reason(rec: dict) -> str:
  s = rec['summary']
  return s.get('error') or (f'non-finite training loss at step {s["diverged_step"]}; '
                            f'reported: its best-valid state (step {s["best_step"]})')


def select_base_lr(records: list[dict]) -> tuple[float | None, list[dict]]:
  """BASE_TUNED: among the lr candidates (BaseModel is lr 1.0) with no diverged seed, the one of
  highest mean valid GAUC; its records relabelled BASE_TUNED. (None, []) without candidates."""
  cands = {1.0: BASE, **{lr: _candidate(lr) for lr in BASE_LR_GRID[1:]}}
  if not any(r['group']['model'] in list(cands.values())[1:] for r in records):
    return None, []                  # no lr candidates were run (the adam protocol)
  best, best_val = None, -math.inf
  for lr, label in cands.items():
    recs = [r for r in records if r['group']['model'] == label]
    if not recs or any(is_diverged(r) for r in recs):
      continue
    val = float(np.mean([r['summary']['eval/valid/gauc'] for r in recs]))
    if val > best_val:
      best, best_val = lr, val
  if best is None:
    return None, []
  return best, [dict(r, group={'model': BASE_TUNED}) for r in records
                if r['group']['model'] == cands[best]]


def add_rela_impr(records: list[dict]) -> None:
  """rela_impr (GAUC, %) of each finished record against BaseModel with the same seed (NaN if
  none or if that BaseModel run diverged); diverged records are left as they are."""
  base = {r['seed']: r['summary']['eval/test/gauc'] for r in records
          if r['group']['model'] == BASE and not is_diverged(r)}
  for r in records:
    if is_diverged(r):
      continue
    b = base.get(r['seed'])
    r['summary']['rela_impr'] = (metrics.rela_impr(r['summary']['eval/test/gauc'], b)
                                 if b is not None else float('nan'))
    r['summary']['wall_seconds'] = r.get('wall_seconds', float('nan'))


def add_peak_loss(records: list[dict], outdir: str) -> None:
  """peak_train_loss: the largest logged training loss of each finished run (its
  metrics.jsonl): a finite blow-up (e.g. ~100 at lr 1.0) that the engine does not stop."""
  for r in records:
    if not is_diverged(r):
      losses = [m['train/loss'] for m in sweep.cell_metrics(r, outdir) if 'train/loss' in m]
      r['summary']['peak_train_loss'] = max(losses) if losses else float('nan')


def row_labels(records: list[dict]) -> list[str]:
  """Table rows in the paper's order; BASE_TUNED and the lr candidates after BaseModel."""
  have = {r['group']['model'] for r in records}
  out = []
  for _, label, _ in ROWS:
    out.append(label)
    if label == BASE:
      out += [BASE_TUNED] + [_candidate(lr) for lr in BASE_LR_GRID[1:]]
  return [x for x in out if x in have]


def aggregate(records: list[dict]) -> list[dict]:
  """sweep.aggregate over the finished runs of each row, plus 'n_diverged': the row's runs whose
  training loss turned non-finite (never averaged in; a row with none finished shows n/a)."""
  finished = sweep.aggregate([r for r in records if not is_diverged(r)], METRICS)
  by = {r['model']: r for r in finished}
  rows = []
  for label in row_labels(records):
    row = by.get(label) or {'model': label, 'n_seeds': 0, 'ids': [],
                            **{k: float('nan') for m in METRICS for k in (m, m + '_std')}}
    row['n_diverged'] = sum(1 for r in records if r['group']['model'] == label
                            and is_diverged(r))
    rows.append(row)
  return rows


def _seeds(row) -> str:
  d = row.get('n_diverged', 0)
  return f'{row["n_seeds"]}' + (f' (+{d} diverged)' if d else '')


def _num(v, spec: str) -> str:
  return 'n/a' if v is None or not math.isfinite(v) else format(v, spec)


def _pm(row, key, digits=4, pct=False):
  m, s = row.get(key, float('nan')), row.get(key + '_std', 0.0)
  if m is None or (isinstance(m, float) and math.isnan(m)):
    return 'n/a'
  return f'{m:+.2f} ± {s:.2f} %' if pct else f'{m:.{digits}f} ± {s:.{digits}f}'


def dataset_table(rows, dataset: str, info: dict, outdir: str) -> str:
  """Per-dataset detail table (markdown + csv)."""
  head = ['Model', 'seeds', 'test GAUC', 'RelaImpr (GAUC)', 'test AUC', 'test logloss',
          'valid GAUC', 'peak train loss', 'params', 'best step', 's/run']
  lines = [f'### {dataset}', '', '| ' + ' | '.join(head) + ' |',
           '|' + '---|' * len(head)]
  for r in rows:
    lines.append('| ' + ' | '.join([
        r['model'], _seeds(r), _pm(r, 'eval/test/gauc'), _pm(r, 'rela_impr', pct=True),
        _pm(r, 'eval/test/auc'), _pm(r, 'eval/test/logloss'), _pm(r, 'eval/valid/gauc'),
        _pm(r, 'peak_train_loss', 2), _num(r['params'], ',.0f'), _num(r['best_step'], '.0f'),
        _num(r['wall_seconds'], '.0f')]) + ' |')
  if 'test/oracle_gauc' in info:
    lines += ['', f'Oracle (true click probability) on this test split: GAUC '
              f'{info["test/oracle_gauc"]:.4f}, AUC {info["test/oracle_auc"]:.4f}, '
              f'logloss {info["test/oracle_logloss"]:.4f}.']
  text = '\n'.join(lines) + '\n'
  with open(os.path.join(outdir, 'table.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(outdir, 'table.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['model', 'n_seeds', 'n_diverged'] + [x for m in METRICS
                                                     for x in (m, m + '_std')])
    for r in rows:
      w.writerow([r['model'], r['n_seeds'], r.get('n_diverged', 0)]
                 + [x for m in METRICS for x in (r.get(m), r.get(m + '_std'))])
  return text


def combined_table(per_ds: dict, outdir: str) -> str:
  """The paper's layout: one GAUC + RelaImpr column pair per dataset, then the paper's."""
  labels = [x for x in [r[1] for r in ROWS[:2]] + [BASE_TUNED] + [r[1] for r in ROWS[2:]]
            if x != BASE_TUNED or any(r['model'] == x for rows in per_ds.values() for r in rows)]
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
      div = f' ({r["n_diverged"]} of {r["n_seeds"] + r["n_diverged"]} diverged)' if (
          r and r.get('n_diverged')) else ''
      cells += ([_pm(r, 'eval/test/gauc') + div, _pm(r, 'rela_impr', pct=True)] if r
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
  sweep.save_figure(fig, path)


def write_commands(records, outdir: str) -> None:
  with open(os.path.join(outdir, 'commands.md'), 'w') as f:
    f.write('| model | seed | test GAUC | command (full config: cells/<id>.json) |\n'
            '|---|---|---|---|\n')
    for r in records:
      if is_diverged(r):
        f.write(f'| {r["group"]["model"]} | {r["seed"]} | diverged | {diverged_reason(r)} |\n')
        continue
      f.write(f'| {r["group"]["model"]} | {r["seed"]} | '
              f'{r["summary"]["eval/test/gauc"]:.4f} | `{r["command"]}` |\n')


def result_files(datasets) -> list[str]:
  """What a run leaves in --outdir for the docs: the report, the combined table and plot, and
  each dataset's table, plot and commands."""
  per_ds = ('table.md', 'table.csv', 'gauc.png', 'commands.md', 'resolved.md')
  return (['report.md', 'table.md', 'table.csv', 'rela_impr.png']
          + [f'{d}/{name}' for d in datasets for name in per_ds])


def runs_per_group(protocol: str) -> int:
  return FLAGS.runs_per_group if FLAGS['runs_per_group'].present else RUNS_PER_GROUP[protocol]


def tables(records: list[dict], dataset: str, seeds: int, outdir: str) -> tuple[list[dict], str]:
  """Tables, resolved marks, plot and commands of one dataset's records (run or loaded)."""
  add_peak_loss(records, outdir)
  best_lr, tuned = select_base_lr(records)
  records = records + tuned
  add_rela_impr(records)
  rows = aggregate(records)
  done = [r for r in records if not is_diverged(r)]
  info = {k.split('/', 1)[1]: v for k, v in (done[0]['summary'] if done else {}).items()
          if k.startswith('oracle/')}
  text = dataset_table(rows, dataset, info, outdir)
  if best_lr is not None:
    text += (f'\n{BASE_TUNED} (our deviation from the paper): BaseModel with the paper\'s SGD, '
             f'decay, batch and clip, its learning rate chosen on mean valid GAUC from '
             f'{list(BASE_LR_GRID)} (rows {BASE} = lr 1.0 and {BASE} lr=x): lr {best_lr:g}.\n')
  n_div = sum(is_diverged(r) for r in records)
  text += (f'\nDiverged runs (non-finite training loss; never averaged in, their seeds drop out '
           f'of the paired comparisons): {n_div}.\n')
  order = [r[1] for r in ROWS]
  res = ''
  # Every row against BaseModel (and BASE_TUNED), and Dice against PReLU (the paper's Sec. 6.6).
  pairs = [(BASE, order)] + ([(BASE_TUNED, order)] if best_lr is not None else []) + [
      ('DIN', ['DIN with Dice'])]
  for base, rows_vs in pairs:
    comp = resolved.compare(done, lambda r: r['group']['model'], base, outdir, RESOLVE,
                            rows=[x for x in rows_vs if x != base])
    if not comp:
      continue
    res += resolved.markdown(comp, RESOLVE, f'#### {dataset}: which differences from {base} '
                             'are resolved') + '\n'
  with open(os.path.join(outdir, 'resolved.md'), 'w') as f:
    f.write(res)
  text += '\n' + res
  ref = {'oracle': info['test/oracle_gauc']} if 'test/oracle_gauc' in info else None
  sweep.plot_bars(rows, ['model'], 'eval/test/gauc', os.path.join(outdir, 'gauc.png'),
                  title=f'{dataset}: test GAUC (mean ± std over {seeds} seeds)', reference=ref)
  write_commands(records, outdir)
  return rows, text


def run_dataset(dataset: str, seeds: int, outdir: str, protocol: str
                ) -> tuple[list[dict], str]:
  cells = make_cells(dataset, seeds, FLAGS.full, FLAGS.models,
                     cell_overrides(dataset, FLAGS.override), protocol)
  records = run_cells(f'seqrec_jax/configs/din.py:{dataset}', cells, outdir,
                      runs_per_group(protocol))
  return tables(records, dataset, seeds, outdir)


def _load() -> str:
  return ', '.join(f'{x:.1f}' for x in os.getloadavg())


def run_protocol(protocol: str) -> None:
  """One protocol's tables: every dataset, the combined table and plot, the report (with wall
  time and load average), and the docs copy after a default run."""
  seeds = FLAGS.seeds
  paper = protocol == 'paper'
  outdir = FLAGS.outdir + ('_paper' if paper else '')
  t0, c0, load0 = time.time(), time.process_time(), _load()
  start = time.strftime('%Y-%m-%d %H:%M', time.gmtime())
  per_ds, details = {}, []
  for dataset in FLAGS.dataset:
    rows, text = run_dataset(dataset, seeds, os.path.join(outdir, dataset), protocol)
    per_ds[dataset], details = rows, details + [text]
  os.makedirs(outdir, exist_ok=True)
  combined = combined_table(per_ds, outdir)
  plot_rela_impr(per_ds, os.path.join(outdir, 'rela_impr.png'))
  cell_s = sum(r['wall_seconds'] * r['n_seeds'] for rows in per_ds.values() for r in rows
               if r['model'] != BASE_TUNED and r['n_seeds'])
  wall, cpu = time.time() - t0, time.process_time() - c0
  what = ('Adam 3e-3, cosine, batch 256' if not paper else
          f'the paper\'s: SGD lr 1.0, exponential decay rate 0.1, batch 32, clip 5, '
          f'{PAPER_EPOCHS:g} epoch')
  report = (combined + '\n' + '\n'.join(details) + '\n'
            f'{seeds} seeds per model, protocol {protocol} ({what}); runs per group '
            f'{runs_per_group(protocol)}. This invocation ({start} UTC): {wall / 60:.1f} min '
            f'wall, {cpu / 60:.1f} min CPU (all threads), load average (1, 5, 15 min) {load0} '
            f'at the start and {_load()} at the end (`uptime`; 2 cores shared with other jobs); '
            f'the cells (run now or by an earlier, resumed invocation) took {cell_s / 60:.1f} '
            'min wall in total; s/run is a cell\'s wall time (train + evals; a group\'s time '
            f'divided by its runs). Outputs: {outdir}/ (table.md/.csv, rela_impr.png, '
            '<dataset>/table.md, resolved.md, gauc.png, commands.md, cells/*.json).\n')
  print(report)
  with open(os.path.join(outdir, 'report.md'), 'w') as f:
    f.write(report)
  default_run = (set(FLAGS.dataset) == {'movielens', 'synthetic'} and not FLAGS.models
                 and not FLAGS.override and FLAGS.outdir == FLAGS['outdir'].default)
  if FLAGS.docs and default_run:
    study = 'din_table' if not FLAGS.full else 'din_table_full'
    print('copied to', publish.publish(outdir, study + ('/paper' if paper else ''),
                                       result_files(FLAGS.dataset)))


def main(argv):
  del argv
  xla_cpu.apply_defaults()  # CPU runtime defaults, before any JAX computation
  logging.set_verbosity(logging.WARNING)    # orbax logs every save at INFO
  if FLAGS.seeds < 1:
    raise app.UsageError(f'--seeds={FLAGS.seeds} must be >= 1 (>= 3 for mean ± std)')
  for dataset in FLAGS.dataset:            # every dataset and override checked before training
    cell_overrides(dataset, FLAGS.override)
  for protocol in PROTOCOLS if FLAGS.protocol == 'both' else [FLAGS.protocol]:
    run_protocol(protocol)


if __name__ == '__main__':
  define_flags()
  app.run(main)
