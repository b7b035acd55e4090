"""The DIN paper's Table 3 (Zhou et al., KDD 2018): LR, BaseModel, Wide&Deep, PNN, DeepFM, DIN
and DIN with Dice trained on the same data, embeddings and MLP, compared on test GAUC.

  bash launch.sh din_table            # default: movielens (latest-small) + synthetic, 5 seeds,
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
--protocol=paper (PAPER_PROTOCOL, one epoch; every row with an MLP normalises its input,
PAPER_INPUT_BN, as the released DIN code) adds BaseModel with its lr chosen on valid
(BASE_LR_GRID, extended past an edge up to LR_EXTENSIONS times; our deviation) and NO_BN
(BaseModel without the input BatchNorm: what it changes). A run whose training loss turns
non-finite is recorded as diverged (its summary says so: run_cells) and counted per row, never
averaged in. docs/din_table.md has both tables.
"""
from __future__ import annotations

import csv
import math
import os
import time

from absl import app, flags, logging
import numpy as np

from experiments import publish, report, stats, study, sweep
from seqrec_jax import metrics, models as models_lib, multirun, xla_cpu
from seqrec_jax.configs import define_override_flag, study_overrides

FLAGS = flags.FLAGS


def define_flags():
  """Flags are defined only when run as a script, so tests can import this module next to
  other experiments that define flags of the same names (absl flags are global)."""
  flags.DEFINE_list('dataset', ['movielens', 'synthetic'], 'Datasets, one table each (outdir/'
                    '<dataset>): ' + ', '.join(f'{k} ({v})' for k, v in FITS.items()) + '.')
  flags.DEFINE_enum('protocol', 'both', ['both', *PROTOCOLS], 'Optimiser protocol of every '
                    'row: adam (Adam 3e-3, cosine, batch 256), paper (the DIN paper: SGD lr 1.0, '
                    'exponential decay rate 0.1, batch 32, clip 5, input BatchNorm; one epoch; '
                    'writes to '
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
CELL_METRICS = ('eval/test/gauc', 'rela_impr', 'eval/test/auc', 'eval/test/logloss',
                'eval/valid/gauc', 'peak_train_loss', 'best_step', 'params', 'examples_per_sec')
METRICS = CELL_METRICS + ('wall_seconds',)      # the table's (wall_seconds: cells.csv's own)


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
# The released DIN code normalises the MLP input (a BatchNorm before the first layer): under the
# paper protocol every row with an MLP has it (model.input_bn; LR has no MLP).
PAPER_INPUT_BN = {'model.input_bn': True}
# The paper protocol's BaseModel without that BatchNorm (lr 1.0, the previous publication's
# literal row): BaseModel - this row is what the input BatchNorm changes.
NO_BN = 'BaseModel without input BN'
# Seeds per row: 5, for the 45-minute budget (10 seeds took ~37 min (paper) + ~61 min (Adam)
# under load; the 5-seed timings: docs/din_table.md); --seeds=10 resumes these 5.
SEEDS = 5
# Epochs under the paper's protocol: one, where Adam trains 3 (MovieLens) and 4 (synthetic). A
# batch-32 step costs about what a batch-256 step costs on this CPU, so an epoch costs ~8x;
# one epoch (2528 / 1250 SGD steps, 2.7x / 2x Adam's step count) keeps 10 seeds in the budget.
PAPER_EPOCHS = 1.0
# Our deviation, labelled as such: BaseModel with the paper's SGD, decay, batch and clip but its
# learning rate chosen on valid GAUC (mean over seeds) from this grid; 1.0 is the literal row.
BASE_LR_GRID = (1.0, 0.3, 0.1)
LR_EXTENSIONS = 3                 # a choice on the grid's edge: at most this many steps past it
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
               protocol: str = 'adam', base_lrs=BASE_LR_GRID[1:], literal: bool = True
               ) -> list[sweep.Cell]:
  """Every row x seed; under the paper protocol every row with an MLP has PAPER_INPUT_BN, and
  BaseModel adds its lr candidates (base_lrs) and NO_BN (literal=False: the candidates only)."""
  keys = [r[0] for r in ROWS]
  unknown = sorted(set(models) - set(keys))
  if unknown:
    raise ValueError(f'--models: unknown rows {unknown}; choose from {keys}')
  size = size_overrides(dataset, full, protocol)

  def cells_of(label, ov, n):
    return [sweep.Cell({'model': label}, {**size, **ov, **(extra or {})}, seed)
            for seed in range(n)]

  cells = []
  for key, label, ov in ROWS:
    if models and key not in models:
      continue
    ov = row_overrides(ov, protocol)
    cells += cells_of(label, ov, seeds if literal else 0)
    if key == 'base' and protocol == 'paper':   # the lr candidates of BASE_TUNED (not 1.0)
      for lr in base_lrs:
        cells += cells_of(_candidate(lr), {**ov, 'optim.learning_rate': lr}, seeds)
      cells += cells_of(NO_BN, {**ov, 'model.input_bn': False}, seeds if literal else 0)
  return cells


def row_overrides(ov: dict, protocol: str) -> dict:
  """A row's overrides under the protocol: paper adds PAPER_INPUT_BN to rows with an MLP."""
  if protocol == 'paper' and ov['model.name'] in models_lib.INPUT_BN:
    return {**ov, **PAPER_INPUT_BN}
  return dict(ov)


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


def _lr_of(label: str) -> float | None:
  """The learning rate of BaseModel's rows under the paper protocol (BASE: 1.0)."""
  if label == BASE:
    return 1.0
  return float(label.split('=', 1)[1]) if label.startswith(f'{BASE} lr=') else None


def select_base_lr(cells: list[dict]) -> tuple[float | None, str | None, str]:
  """BASE_TUNED: among BaseModel's learning rates (BASE is lr 1.0, the candidates BASE lr=x)
  with no diverged seed, the one of highest mean valid GAUC (ties: the smaller). Returns (lr,
  its row label, 'low'/'high' when it is the smallest/largest rate tried, else ''); (None,
  None, '') without candidates (the adam protocol) or without an undiverged one."""
  rates: dict[float, list[dict]] = {}
  for c in cells:
    lr = _lr_of(c['model'])
    if lr is not None:
      rates.setdefault(lr, []).append(c)
  if len(rates) < 2:
    return None, None, ''
  best, best_val = None, -math.inf
  for lr in sorted(rates):
    cs = rates[lr]
    if any(c['diverged'] for c in cs):
      continue
    val = float(np.mean([c['eval/valid/gauc'] for c in cs]))
    if val > best_val:
      best, best_val = lr, val
  if best is None:
    return None, None, ''
  edge = 'low' if best == min(rates) else 'high' if best == max(rates) else ''
  return best, rates[best][0]['model'], edge


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


def add_peak_loss(records: list[dict], outdir: str) -> None:
  """peak_train_loss: the largest logged training loss of each finished run (its
  metrics.jsonl): a finite blow-up (e.g. ~100 at lr 1.0) that the engine does not stop."""
  for r in records:
    if not is_diverged(r):
      losses = [m['train/loss'] for m in sweep.cell_metrics(r, outdir) if 'train/loss' in m]
      r['summary']['peak_train_loss'] = max(losses) if losses else float('nan')


def enrich(records: list[dict], outdir: str) -> None:
  add_peak_loss(records, outdir)
  add_rela_impr(records)


def row_labels(have) -> list[str]:
  """Table rows in the paper's order; BASE_TUNED, the lr candidates and NO_BN after
  BaseModel."""
  cands = sorted((x for x in have if x != BASE and _lr_of(x) is not None), key=_lr_of,
                 reverse=True)
  out = []
  for _, label, _ in ROWS:
    out.append(label)
    if label == BASE:
      out += [BASE_TUNED] + cands + [NO_BN]
  return [x for x in out if x in have]


def rows_of(cells: list[dict]) -> list[dict]:
  """report.aggregate_cells over the finished runs of each row (BASE_TUNED: the chosen
  candidate's runs), plus 'n_diverged': the row's runs whose training loss turned non-finite
  (never averaged in; a row with none finished shows n/a)."""
  done = [c for c in cells if not c['diverged']]
  best_lr, cand, edge = select_base_lr(cells)
  if cand:
    done += [dict(c, model=BASE_TUNED) for c in done if c['model'] == cand]
  by = {r['model']: r for r in report.aggregate_cells(done, ('model',), METRICS, modal=RESOLVE)}
  rows = []
  for label in row_labels({c['model'] for c in cells} | ({BASE_TUNED} if cand else set())):
    row = by.get(label) or {'model': label, 'n_seeds': 0, 'ids': [],
                            **{k: float('nan') for m in METRICS for k in (m, m + '_std')}}
    row['n_diverged'] = sum(1 for c in cells if c['model'] == label and c['diverged'])
    if label == BASE_TUNED:
      row['chosen_lr'], row['edge'] = best_lr, edge
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
  text = f'{m:+.2f} ± {s:.2f} %' if pct else f'{m:.{digits}f} ± {s:.{digits}f}'
  return text + (f' ({row[key + "_collapsed"]} collapsed)' if key + '_collapsed' in row else '')


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
  labels = [x for x in [r[1] for r in ROWS[:2]] + [BASE_TUNED, NO_BN] + [r[1] for r in ROWS[2:]]
            if x not in (BASE_TUNED, NO_BN)
            or any(r['model'] == x for rows in per_ds.values() for r in rows)]
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
      cells += ([_pm(r, 'eval/test/gauc') + div + _chosen(r), _pm(r, 'rela_impr', pct=True)]
                if r else ['—', '—'])
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


def _chosen(row) -> str:
  """' (lr x)' for BASE_TUNED's row, ', still at the low/high edge' when it is."""
  if row.get('chosen_lr') is None:
    return ''
  return f' (lr {row["chosen_lr"]:g}' + (f', at the {row["edge"]} edge' if row['edge']
                                           else '') + ')'


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
  report.save_figure(fig, path)


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
  each dataset's cells, tables, plot and commands."""
  per_ds = ('cells.csv', 'bootstrap.csv', 'table.md', 'table.csv', 'resolved.md',
            'resolved.csv', 'gauc.png', 'commands.md')
  return (['report.md', 'table.md', 'table.csv', 'rela_impr.png']
          + [f'{d}/{name}' for d in datasets for name in per_ds])


def runs_per_group(protocol: str) -> int:
  return FLAGS.runs_per_group if FLAGS['runs_per_group'].present else RUNS_PER_GROUP[protocol]


def tables(cells, results, outdir: str, ctx: dict) -> list[str]:
  """table.md/.csv of one dataset from its cells.csv."""
  del results
  dataset = ctx['dataset']
  rows = rows_of(cells)
  done = [c for c in cells if not c['diverged']]
  info = {k.split('/', 1)[1]: done[0][k] for k in ORACLE
          if done and isinstance(done[0].get(k), float) and math.isfinite(done[0][k])}
  dataset_table(rows, dataset, info, outdir)
  best_lr, cand, edge = select_base_lr(cells)
  notes = []
  if best_lr is not None:
    tried = sorted({_lr_of(c['model']) for c in cells} - {None}, reverse=True)
    notes.append(f'{BASE_TUNED} (our deviation from the paper): BaseModel with the paper\'s '
                 f'SGD, decay, batch, clip and input BN, its learning rate chosen on mean valid '
                 f'GAUC from {[float(f"{x:g}") for x in tried]} (rows {BASE} = lr 1.0 and '
                 f'{BASE} lr=x; a choice on the grid\'s edge extends it one step, up to '
                 f'{LR_EXTENSIONS} time(s)): lr {best_lr:g}'
                 + (f', still at the {edge} edge' if edge else '') + '.')
  if any(c['model'] == NO_BN for c in cells):
    notes.append(f'Every row with an MLP has a BatchNorm of the MLP input (model.input_bn, as '
                 f'in the released DIN code; LR has no MLP) except {NO_BN}: BaseModel at lr '
                 '1.0 without it (the protocol before the input BN).')
  n_div = sum(bool(c['diverged']) for c in cells)
  notes.append(f'Diverged runs (non-finite training loss; never averaged in, their seeds drop '
               f'out of the paired comparisons): {n_div}. Comparisons: resolved.md; per-cell '
               'values: cells.csv; commands: commands.md.')
  with open(os.path.join(outdir, 'table.md'), 'a') as f:
    f.write('\n' + '\n\n'.join(notes) + '\n')
  return ['table.md', 'table.csv']


def families(cells, dataset: str) -> list[report.Family]:
  """One Holm family: every row (NO_BN included: the input BatchNorm's effect) vs BaseModel
  (and vs the lr-tuned BaseModel, when one was chosen), and DIN with Dice vs DIN (the paper's
  Sec. 6.6). Diverged runs never pair."""
  have = {c['model'] for c in cells if not c['diverged']}
  _, cand, _ = select_base_lr(cells)
  order = [r[1] for r in ROWS[:2]] + [NO_BN] + [r[1] for r in ROWS[2:]]
  pairs = [(x, BASE) for x in order if x != BASE and {x, BASE} <= have]
  if cand and cand != BASE:
    pairs += [(x, cand) for x in order if x != cand and {x, cand} <= have]
  if {'DIN', 'DIN with Dice'} <= have:
    pairs.append(('DIN with Dice', 'DIN'))
  title = f'{dataset}: every row vs {BASE}' + (f' and vs {cand} (= {BASE_TUNED})'
                                               if cand and cand != BASE else '') + \
      ', DIN with Dice vs DIN'
  return [report.Family('resolved', title, pairs, RESOLVE,
                        lambda c: c['model'] + (' (diverged)' if c['diverged'] else ''))]


def figures(cells, records, outdir: str) -> list[str]:
  """gauc.png and commands.md (each cell's command, from its record)."""
  rows = rows_of(cells)
  done = [c for c in cells if not c['diverged']]
  oracle = done[0].get('oracle/test/oracle_gauc') if done else None
  ref = {'oracle': oracle} if isinstance(oracle, float) and math.isfinite(oracle) else None
  seeds = len({c['seed'] for c in cells})
  report.plot_bars(rows, ['model'], 'eval/test/gauc', os.path.join(outdir, 'gauc.png'),
                   title=f'{os.path.basename(outdir)}: test GAUC (mean ± std over {seeds} '
                   'seeds)', reference=ref)
  write_commands(records, outdir)
  return ['gauc.png', 'commands.md']


def combined(per_ds: dict, outdir: str) -> list[str]:
  """The root table (the paper's layout) and rela_impr.png from every dataset's cells."""
  rows = {d: rows_of(cells) for d, cells in per_ds.items()}
  combined_table(rows, outdir)
  return ['table.md', 'table.csv']


ORACLE = ('oracle/test/oracle_gauc', 'oracle/test/oracle_auc', 'oracle/test/oracle_logloss')
STUDY = study.Study('din_table', CELL_METRICS + ORACLE, tables, families, (), figures, enrich,
                    combined=combined, from_records=('commands.md',))


def extend_base_lr(config_spec: str, dataset: str, seeds: int, outdir: str, rpg: int,
                   records: list[dict], extra=None, full: bool = False, train_fn=None,
                   log=print) -> list[dict]:
  """The paper protocol's BaseModel learning rate: a choice on the edge of the tried grid
  extends it one step that way (x the grid ratio) and reruns every seed, up to LR_EXTENSIONS
  times (stats.select_on_grids). Returns the records with the new candidates' runs."""
  records = list(records)

  def score(todo):
    new = [lr for lr in todo['base'] if lr not in BASE_LR_GRID]
    if new:
      records.extend(run_cells(config_spec, make_cells(
          dataset, seeds, full, ['base'], extra, 'paper', base_lrs=new, literal=False),
          outdir, rpg, train_fn=train_fn, log=log))
    out = {}
    for lr in todo['base']:
      label = BASE if lr == 1.0 else _candidate(lr)
      rs = [r for r in records if r['group']['model'] == label]
      out[lr] = (-math.inf if not rs or any(is_diverged(r) for r in rs) else
                 float(np.mean([r['summary']['eval/valid/gauc'] for r in rs])))
    return {'base': out}

  stats.select_on_grids({'base': BASE_LR_GRID}, score, cap=LR_EXTENSIONS)
  return records


def run_dataset(dataset: str, seeds: int, outdir: str, protocol: str) -> list[dict]:
  """Runs (or loads) one dataset's cells and reports them; returns its cells.csv rows."""
  spec = f'seqrec_jax/configs/din.py:{dataset}'
  extra = cell_overrides(dataset, FLAGS.override)
  cells = make_cells(dataset, seeds, FLAGS.full, FLAGS.models, extra, protocol)
  records = run_cells(spec, cells, outdir, runs_per_group(protocol))
  if protocol == 'paper' and (not FLAGS.models or 'base' in FLAGS.models):
    records = extend_base_lr(spec, dataset, seeds, outdir, runs_per_group(protocol), records,
                             extra, FLAGS.full)
  study.study_main(STUDY, records, outdir, dataset)
  return report.read_csv(os.path.join(outdir, 'cells.csv'))


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
  cells, details = {}, []
  for dataset in FLAGS.dataset:
    cells[dataset] = run_dataset(dataset, seeds, os.path.join(outdir, dataset), protocol)
    for name in ('table.md', 'resolved.md'):
      with open(os.path.join(outdir, dataset, name)) as f:
        details.append(f.read())
  os.makedirs(outdir, exist_ok=True)
  combined(cells, outdir)
  with open(os.path.join(outdir, 'table.md')) as f:
    table = f.read()
  per_ds = {d: rows_of(c) for d, c in cells.items()}
  plot_rela_impr(per_ds, os.path.join(outdir, 'rela_impr.png'))
  cell_s = sum(r['wall_seconds'] * r['n_seeds'] for rows in per_ds.values() for r in rows
               if r['model'] != BASE_TUNED and r['n_seeds'])
  wall, cpu = time.time() - t0, time.process_time() - c0
  what = ('Adam 3e-3, cosine, batch 256' if not paper else
          f'the paper\'s: SGD lr 1.0, exponential decay rate 0.1, batch 32, clip 5, '
          f'{PAPER_EPOCHS:g} epoch, BatchNorm of the MLP input')
  text = (table + '\n' + '\n'.join(details) + '\n'
            f'{seeds} seeds per model, protocol {protocol} ({what}); runs per group '
            f'{runs_per_group(protocol)}. This invocation ({start} UTC): {wall / 60:.1f} min '
            f'wall, {cpu / 60:.1f} min CPU (all threads), load average (1, 5, 15 min) {load0} '
            f'at the start and {_load()} at the end (`uptime`; 2 cores shared with other jobs); '
            f'the cells (run now or by an earlier, resumed invocation) took {cell_s / 60:.1f} '
            'min wall in total; s/run is a cell\'s wall time (train + evals; a group\'s time '
            f'divided by its runs). Outputs: {outdir}/ (table.md/.csv, rela_impr.png, '
            '<dataset>/table.md, resolved.md, gauc.png, commands.md, cells.csv, '
            'cells/*.json).\n')
  print(text)
  with open(os.path.join(outdir, 'report.md'), 'w') as f:
    f.write(text)
  default_run = (set(FLAGS.dataset) == {'movielens', 'synthetic'} and not FLAGS.models
                 and not FLAGS.override and FLAGS.outdir == FLAGS['outdir'].default)
  if FLAGS.docs and default_run:
    name = 'din_table' if not FLAGS.full else 'din_table_full'
    print('copied to', publish.publish(outdir, name + ('/paper' if paper else ''),
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
