"""Regularisation study (DIN paper Sec. 4.3.1 / 6.5, Table 4 and Fig. 4): BaseModel and DIN, each
without regularisation, without goods_ids, and with id dropout, an item frequency filter, plain
L2, DiFacto's frequency-adaptive L2 and mini-batch aware (MBA) regularisation (at the strength
chosen on valid and at the paper's lambda = 0.01), on synthetic data with a large item
vocabulary (the default) and on MovieLens latest-small.

  bash launch.sh din_reg                          # synthetic, 5 seeds (resumable; published)
  python -m experiments.din_reg --dataset=movielens            # MovieLens, its own folder
  python -m experiments.din_reg --num_steps=40 --seeds=2 --outdir=/tmp/din_reg   # smoke run
  python -m experiments.din_reg --report_only     # tables and plots from the finished cells
  bash launch.sh din_reg --dataset=movielens --override=data.movielens.path=/data/ml-20m.zip \\
      --override=train.eval_every=2000              # another MovieLens release (any --override)

Protocol: experiments/din_table.py's Adam protocol (Adam 3e-3, cosine, batch 256, d=16, MLP
200-80, PReLU; attention 80-40 for DIN; Table 4 used Adam too), model selection on valid GAUC,
test reported. The rows (tests/test_regularisation.py, tests/test_din_reg.py):
  none         no regularisation
  no goods_ids data.item_top_k=-1: every item id reads as OOV 0, categories kept (Table 4's
               "without goods_ids" reference row)
  dropout      model.embed_dropout=p: each looked-up id vector zeroed with prob. p (the paper
               drops 50% of feature ids per sample)
  filter       data.item_top_k=k: only the k items in most training samples keep their id, the
               rest read as OOV 0 (the paper keeps the top 20M goods ids)
  L2           optim.weight_decay=lambda: (lambda / 2) ||theta||^2 on every parameter, each step
               (dense: every embedding row moves every step; not a row of the paper's Table 4)
  DiFacto      model.mba_lambda=lambda, model.frequency_reg=difacto: L2 on the rows present in
               the batch, weight 1 each (over an epoch it grows with the id's frequency)
  MBA          model.mba_lambda=lambda: eq. 6, rows of ids present in the batch, weighted 1/n_j
  MBA-paper    MBA at lambda = 0.01, the value the paper states (not tuned)
The strength of every tuned row (dropout, filter, L2, DiFacto, MBA: GRIDS, 3 values each, the
same budget) is chosen on valid GAUC with seed 0 (tuning cells), a choice on a grid's edge
extending it (stats.select_on_grids, EXTENSIONS); the chosen value then runs with every seed
(seed 0's run is the tuning cell itself). MBA's n_j are the training-split counts stored with
the prepared dataset (movielens) or counted from the generated train split (synthetic):
data/id_counts.py. Cells run one at a time (--runs_per_group=1 here): grouping seeds into one
multi-run program was measured not to pay for DIN on this CPU (docs/din_reg.md, "Budget").
Outputs (--outdir, default runs/din_reg; a study spec, experiments/study.py): per dataset
<dataset>/cells.csv, bootstrap.csv, table.md/.csv (test GAUC / AUC / logloss, mean ± std; a
value still on its grid's edge marked), resolved_{base,din}.md (each row vs none),
resolved_vs_mba_{base,din}.md (the other regularisers vs MBA), resolved_din_vs_base.md (one
Holm family each: seed t-interval and test-set bootstrap, users for GAUC, rows for AUC and
logloss), power.md (seeds needed to resolve each vs-MBA difference, the difference detectable
at the seeds run), grid.md (valid GAUC per tuning value), fig4.png (train and valid logloss vs
step, with and without MBA: the paper's Fig. 4) and report.md (the tables and the wall time);
a default run copies them to docs/results/din_reg/<dataset>/ (docs/din_reg.md;
`python -m experiments.recheck din_reg`).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import time

from absl import app, flags, logging
import numpy as np
from scipy import optimize, stats as sp_stats

from experiments import din_table, publish, report, stats, study, sweep
from seqrec_jax import xla_cpu
from seqrec_jax.configs import define_override_flag, study_overrides

FLAGS = flags.FLAGS


def define_flags():
  """Defined only when run as a script (see sweep.define_study_flags)."""
  flags.DEFINE_list('dataset', ['synthetic'], 'Datasets, one table each '
                    '(<outdir>/<dataset>): ' + ', '.join(f'{k} ({v})' for k, v in
                                                          din_table.FITS.items())
                    + '; a dataset without its own GRIDS entry uses movielens\'s grid. The '
                    'default (synthetic) fits the 45-minute budget; movielens is a second '
                    'invocation (docs/din_reg.md, Budget).')
  define_override_flag()
  sweep.define_study_flags(5, 'Seeds per row (the tuning cells use seed 0); '
                           'docs/din_reg.md, Budget, has the measured wall time.',
                           'runs/din_reg', 'Unused (one preset).', 'the preset: 3 epochs on '
                           'movielens, 4 on synthetic')
  flags.FLAGS.set_default('runs_per_group', 1)   # grouping measured slower for DIN here
  flags.DEFINE_list('models', [m for m, _ in MODELS], 'Models to run (a subset of '
                    f'{[m for m, _ in MODELS]}): a run short of time does DIN first.')
  flags.DEFINE_list('rows', list(REGS), f'Rows to run (a subset of {list(REGS)}); the tables '
                    'hold the rows run so far.')
  flags.DEFINE_bool('report_only', False, 'Rebuild tables and plots from finished cells without '
                    'training or checking their configs against today\'s defaults.')
  flags.adopt_module_key_flags(sweep)


MODELS = (
    ('BaseModel', {'model.name': 'base', 'model.pooling': 'sum', 'model.activation': 'prelu'}),
    ('DIN', {'model.name': 'din', 'model.activation': 'prelu'}),
)
# Rows, in table order. Tuned (TUNED): a strength chosen on valid from GRIDS, every grid of the
# same size (the same tuning budget). Fixed: 'none'; 'no goods_ids' (Table 4's reference row:
# every item id read as OOV 0, categories kept); 'MBA-paper' (MBA at the paper's lambda = 0.01).
REGS = ('none', 'no goods_ids', 'dropout', 'filter', 'L2', 'DiFacto', 'MBA', 'MBA-paper')
TUNED = ('dropout', 'filter', 'L2', 'DiFacto', 'MBA')
PAPER_LAMBDA = 0.01               # DIN Sec. 4.3.1 / 6.5: lambda of MBA
KEYS = {'dropout': 'model.embed_dropout', 'filter': 'data.item_top_k',
        'L2': 'optim.weight_decay', 'DiFacto': 'model.mba_lambda', 'MBA': 'model.mba_lambda',
        'MBA-paper': 'model.mba_lambda'}
FIXED = {'none': None, 'no goods_ids': None, 'MBA-paper': PAPER_LAMBDA}   # reg -> its value
# Overrides a row adds besides its strength.
ROW_OVERRIDES = {'no goods_ids': {'data.item_top_k': -1},
                 'DiFacto': {'model.frequency_reg': 'difacto'}}
# Strengths. n_j (training samples holding item j) has median ~105 on movielens (10%-90%:
# 51-1039) and ~40 on synthetic (5-91), so MBA's per-step pull lambda * w_j / n_j on a present row
# meets the data gradient (~1e-3 per row at batch 256) around lambda ~ 1. DiFacto's pull is
# lambda * w_j on every present row (c_j = 1, layers/embedding.py): its grid sits ~n_j below MBA's
# (and holds the paper's 0.01). Dense L2 pulls every row every step. The last published run
# chose MBA 3 (synthetic) and 0.01 (movielens, the low edge), L2 1e-5 / 1e-4. Dropout and the
# filter's k, fixed before (0.5; k = 2000 / 5000), now get grids of the same size: the paper's
# dropout rate 0.5 at the top, k doubling around the old value.
GRIDS = {
    'movielens': {'dropout': (0.1, 0.3, 0.5), 'filter': (1000, 2000, 4000),
                  'L2': (1e-5, 1e-4, 1e-3), 'DiFacto': (1e-4, 1e-3, 1e-2),
                  'MBA': (0.01, 0.1, 1.0)},
    'synthetic': {'dropout': (0.1, 0.3, 0.5), 'filter': (2500, 5000, 10000),
                  'L2': (1e-5, 1e-4, 1e-3), 'DiFacto': (0.01, 0.1, 1.0),
                  'MBA': (0.3, 3.0, 30.0)},
}
# How a grid extends past an edge (stats.extend): ratios, but the dropout rate in steps of its
# difference, within DROPOUT_BOUNDS (0.1's lower neighbour, -0.1, is not a rate: the 'none' row
# is dropout 0).
LINEAR = ('dropout',)
DROPOUT_BOUNDS = (0.0, 0.9)
# din_table's generator with a 20x larger item vocabulary (1000 users' worth of rare items).
SYNTHETIC_VOCAB = {'data.synthetic.num_items': 20000, 'data.synthetic.num_cates': 100}
METRICS = ('eval/test/gauc', 'eval/test/auc', 'eval/test/logloss', 'eval/valid/gauc',
           'best_step')
EXTENSIONS = 1                    # at most this many extra steps past an edge
RESOLVE = ('eval/test/gauc', 'eval/test/auc', 'eval/test/logloss')
POWER = 0.8                       # power.md: seeds needed for this power, detectable difference


def grids(dataset: str) -> dict:
  """The tuning grid of a dataset; one without its own entry (e.g. amazon) uses movielens's."""
  return GRIDS.get(dataset, GRIDS['movielens'])


def extra_overrides(dataset: str, override_flags) -> dict:
  """--override values for one dataset's cells (typed by din.py:<dataset>, data.<other
  dataset>.* dropped); fails on a dataset without DIN's inputs (din_table.FITS)."""
  return study_overrides('din_reg', dataset, override_flags,
                         f'seqrec_jax/configs/din.py:{dataset}', din_table.FITS, din_table.NEEDS)


def base_overrides(dataset: str, num_steps: int = -1) -> dict:
  o = din_table.size_overrides(dataset, False)
  if dataset == 'synthetic':
    o.update(SYNTHETIC_VOCAB)
  # ~10 evaluations per run and a train-loss point every 25 steps: the curves of Fig. 4
  # (other datasets: their config's eval_every; --override=train.eval_every=... sets it).
  o['train.log_every'] = 25
  if dataset in ('movielens', 'synthetic'):
    o['train.eval_every'] = 100 if dataset == 'movielens' else 60
  if num_steps > 0:
    o.update({'train.num_steps': num_steps, 'train.eval_every': max(num_steps // 4, 1)})
  return o


def cell(dataset, model, reg, value, seed, num_steps=-1, extra=None) -> sweep.Cell:
  """extra: the --override values (extra_overrides), applied last. A filter's k is an int."""
  if reg == 'filter':
    value = int(round(value))
  ov = {**base_overrides(dataset, num_steps), **dict(MODELS)[model],
        **ROW_OVERRIDES.get(reg, {})}
  if reg in KEYS:
    ov[KEYS[reg]] = value
  ov.update(extra or {})
  return sweep.Cell({'model': model, 'reg': reg, 'value': value}, ov, seed)


# Run order: no regularisation, MBA and the filter first (tuning, then every seed), then the
# other rows, so a study cut short by its time budget has the paper's main comparison, the
# unsettled MBA vs filter one and Fig. 4 complete.
PHASES = (('none', 'MBA', 'filter', 'MBA-paper'), ('no goods_ids', 'DiFacto', 'dropout', 'L2'))


def tuning_cells(dataset: str, num_steps: int = -1, regs=REGS, extra=None, models=None
                 ) -> list[sweep.Cell]:
  """Seed 0 of every row of `regs` for `models` (None: all): the fixed rows once, the tuned
  ones at each grid value."""
  out = []
  for model in _models(models):
    for reg in REGS:
      if reg in regs:
        values = grids(dataset)[reg] if reg in TUNED else (FIXED[reg],)
        out += [cell(dataset, model, reg, v, 0, num_steps, extra) for v in values]
  return out


def _models(models=None) -> list[str]:
  return [m for m, _ in MODELS if models is None or m in models]


def choose(cells: list[dict]) -> dict[tuple[str, str], object]:
  """(model, reg) -> the tried value with the best valid GAUC on seed 0 (ties: the smallest);
  cells: records or cells.csv rows."""
  best: dict[tuple[str, str], tuple[float, object]] = {}
  for c in cells:
    g = c.get('group', c)
    if c['seed'] != 0:
      continue
    v = c['summary'].get('eval/valid/gauc', -math.inf) if 'summary' in c else c['eval/valid/gauc']
    key = (g['model'], g['reg'])
    if key not in best or v > best[key][0] or (v == best[key][0] and g['value'] is not None
                                               and g['value'] < best[key][1]):
      best[key] = (v, g['value'])
  return {k: v for k, (_, v) in best.items()}


def edges(cells: list[dict]) -> dict[tuple[str, str], str]:
  """(model, reg) -> 'low'/'high' when its chosen value is the smallest/largest of a grid of
  several values it tried (the grid was extended up to EXTENSIONS times and still ends there)."""
  chosen, tried = choose(cells), {}
  for c in cells:
    g = c.get('group', c)
    if c['seed'] == 0 and g['value'] is not None:
      tried.setdefault((g['model'], g['reg']), set()).add(g['value'])
  return {k: ('low' if chosen[k] == min(v) else 'high' if chosen[k] == max(v) else '')
          for k, v in tried.items() if len(v) > 1}


def tune(dataset: str, run, num_steps: int = -1, regs=REGS, extra=None, models=None
         ) -> list[dict]:
  """The tuning cells of `regs` (seed 0): every grid value; a choice on the edge of its grid
  extends it one step that way (x the grid's ratio; dropout: + its step, within
  DROPOUT_BOUNDS), up to EXTENSIONS times (stats.select_on_grids). run(cells) -> records.
  Returns every tuning record."""
  records = run(tuning_cells(dataset, num_steps, regs, extra, models))
  tuned = {(m, reg): grids(dataset)[reg] for m in _models(models) for reg in TUNED
           if reg in regs}

  def score(todo):
    new = {k: v for k, v in todo.items() if not set(v) <= set(tuned[k])}
    if new:
      records.extend(run([cell(dataset, m, reg, v, 0, num_steps, extra)
                          for (m, reg), vs in new.items() for v in vs]))
    got = {}
    for r in records:
      g = r['group']
      if (g['model'], g['reg']) in todo:
        got.setdefault((g['model'], g['reg']), {})[g['value']] = r['summary'].get(
            'eval/valid/gauc', -math.inf)
    return {k: {v: got[k][v] for v in vs} for k, vs in todo.items()}

  for linear in (False, True):
    part = {k: v for k, v in tuned.items() if (k[1] in LINEAR) == linear}
    if part:
      stats.select_on_grids(part, score, higher_better=True, cap=EXTENSIONS,
                            scale='linear' if linear else 'log',
                            bounds=DROPOUT_BOUNDS if linear else (-math.inf, math.inf))
  return records


def final_cells(dataset: str, chosen: dict, seeds: int, num_steps: int = -1,
                regs=REGS, extra=None) -> list[sweep.Cell]:
  return [cell(dataset, model, reg, chosen[(model, reg)], s, num_steps, extra)
          for model, _ in MODELS for reg in REGS for s in range(seeds)
          if (model, reg) in chosen and reg in regs]


def row_label(c) -> str:
  g = c.get('group', c)
  return f"{g['model']} / {g['reg']}" + ('' if g['value'] is None else f" ({g['value']:g})")


def curves(rec: dict, outdir: str) -> dict[str, np.ndarray]:
  """Train data loss (loss - reg_loss) per log step and valid logloss per eval of one cell."""
  workdir, run = report.cell_workdir(rec, outdir)
  tr, va = [], []
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      x = json.loads(line)
      if x.get('run') != run or 'summary' in x:
        continue
      if 'train/loss' in x:
        tr.append((x['step'], x['train/loss'] - x.get('train/reg_loss', 0.0)))
      if 'eval/valid/logloss' in x:
        va.append((x['step'], x['eval/valid/logloss']))
  return {'train': np.array(tr), 'valid': np.array(va)}


def _smooth(y: np.ndarray, alpha: float = 0.3) -> np.ndarray:
  out, acc = np.empty_like(y), y[0]
  for i, v in enumerate(y):
    acc = alpha * v + (1 - alpha) * acc
    out[i] = acc
  return out


def plot_fig4(records: list[dict], outdir: str, dataset: str) -> None:
  """Per model: train (per-batch data loss, smoothed) and valid logloss vs step for seed 0
  without regularisation, with each MBA strength of the grid (the tuning runs) and with the
  paper's lambda."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  models = [m for m, _ in MODELS if any(r['group']['model'] == m for r in records)]
  fig, axes = plt.subplots(1, len(models), figsize=(5.6 * len(models), 4.0))
  for ax, model in zip(np.atleast_1d(axes), models):
    runs = {(r['group']['reg'], r['group']['value']): r for r in records
            if r['seed'] == 0 and r['group']['model'] == model
            and r['group']['reg'] in ('none', 'MBA', 'MBA-paper')}
    mba = sorted(v for reg, v in runs if reg == 'MBA')
    blues = plt.cm.Blues(np.linspace(0.45, 0.95, max(len(mba), 1)))
    styles = [(('none', None), 'no reg.', 'tab:red')] + [
        (('MBA', v), f'MBA λ={v:g}', blues[i]) for i, v in enumerate(mba)] + [
        (('MBA-paper', PAPER_LAMBDA), f'MBA λ={PAPER_LAMBDA:g} (paper)', 'tab:green')]
    for key, name, color in styles:
      if key not in runs:
        continue
      c = curves(runs[key], outdir)
      if len(c['train']):
        ax.plot(c['train'][:, 0], _smooth(c['train'][:, 1]), ls='--', color=color, alpha=0.8)
      if len(c['valid']):
        ax.plot(c['valid'][:, 0], c['valid'][:, 1], color=color, marker='.', label=name)
    ax.set_title(f'{dataset}: {model} (seed 0)', fontsize=10)
    ax.set_xlabel('step')
    ax.set_ylabel('logloss (data term)')
    ax.legend(fontsize=7, title='solid: valid; dashed: train (batch, EMA 0.3)',
              title_fontsize=7)
  report.save_figure(fig, os.path.join(outdir, 'fig4.png'))


def grid_table(cells: list[dict], outdir: str, dataset: str) -> str:
  """grid.md: every tuning cell (seed 0), its valid GAUC; the chosen value marked, and any
  still on the edge of its (extended) grid."""
  chosen, edge = choose(cells), edges(cells)
  lines = [f'#### {dataset}: tuning cells (seed 0), valid GAUC per value', '',
           '| Model | regulariser | value | valid GAUC | test GAUC | best step | chosen |',
           '|---|---|---|---|---|---|---|']
  for c in sorted((c for c in cells if c['seed'] == 0), key=_table_order):
    key = (c['model'], c['reg'])
    value = '-' if c['value'] is None else f"{c['value']:g}"
    mark = ''
    if c['reg'] in FIXED:
      mark = 'fixed'
    elif chosen.get(key) == c['value']:
      mark = 'yes' + (f' (at the {edge[key]} edge)' if edge.get(key) else '')
    lines.append(f"| {c['model']} | {c['reg']} | {value} | {c['eval/valid/gauc']:.4f} | "
                 f"{c['eval/test/gauc']:.4f} | {c['best_step']:.0f} | {mark} |")
  left = sorted(k for k, v in edge.items() if v)
  lines += ['', f'Every tuned row has a grid of {len(grids(dataset)["MBA"])} values. A value '
            'chosen on the edge of its grid extends the grid one step that way (x the grid '
            'ratio; the dropout rate by its step, within '
            f'[{DROPOUT_BOUNDS[0]:g}, {DROPOUT_BOUNDS[1]:g}]) and reruns, up to {EXTENSIONS} '
            'time(s) (stats.select_on_grids). '
            + (f'Still at an edge: {", ".join(f"{m} {r}" for m, r in left)}.' if left else
               'No choice is left at an edge.')]
  text = '\n'.join(lines) + '\n'
  with open(os.path.join(outdir, 'grid.md'), 'w') as f:
    f.write(text)
  return text


def _final(cells: list[dict]) -> list[dict]:
  """The cells of the chosen value of every (model, reg): the table's runs."""
  chosen = choose(cells)
  return sorted((c for c in cells if chosen.get((c['model'], c['reg']), 0) == c['value']),
                key=_table_order)


def tables(cells, results, outdir: str, ctx: dict) -> list[str]:
  dataset = ctx['dataset']
  final = _final(cells)
  seeds = max(c['seed'] for c in final) + 1
  for c in final:
    c['row'] = row_label(c)
  rows = report.aggregate_cells(final, ('row',), METRICS + ('wall_seconds',), modal=RESOLVE)
  for r in rows:               # step and seconds: the mean only
    r.pop('best_step_std', None)
    r.pop('wall_seconds_std', None)
  edge = edges(cells)
  for r, c in zip(rows, [next(c for c in final if c['row'] == r['row']) for r in rows]):
    if edge.get((c['model'], c['reg'])):
      r['row'] += f' (edge: {edge[(c["model"], c["reg"])]})'
  oracle = final[0].get('oracle/test/oracle_gauc')
  notes = '' if not (isinstance(oracle, float) and oracle == oracle) else (
      f'Oracle (true click probability) on this test split: GAUC {oracle:.4f}, AUC '
      f"{final[0]['oracle/test/oracle_auc']:.4f}. ")
  notes += ('Comparisons (one Holm family each): resolved_base.md / resolved_din.md (each row '
            'vs none), resolved_vs_mba_base.md / resolved_vs_mba_din.md (the other '
            'regularisers vs MBA), resolved_din_vs_base.md; power of the vs-MBA comparisons: '
            'power.md; tuning: grid.md; per-cell values: cells.csv. no goods_ids: every item '
            'id read as OOV 0 (categories kept); MBA-paper: MBA at the paper\'s λ = '
            f'{PAPER_LAMBDA:g}.')
  report.write_table(
      rows, [('Model / regulariser (value)', 'row'), ('seeds', 'n_seeds'),
             ('test GAUC', 'eval/test/gauc'), ('test AUC', 'eval/test/auc'),
             ('test logloss', 'eval/test/logloss'), ('valid GAUC', 'eval/valid/gauc'),
             ('best step', 'best_step'), ('s/run', 'wall_seconds')],
      outdir, title=f'{dataset}: test metrics (mean ± std over {seeds} seeds)', notes=notes)
  grid_table(cells, outdir, dataset)
  power_table(results, outdir, dataset)
  return ['table.md', 'table.csv', 'grid.md', 'power.md', 'power.csv']


def families(cells, dataset: str) -> list[report.Family]:
  """One Holm family (and table) per model and question: every row vs none
  (resolved_<model>), the other regularisers vs MBA at its chosen strength
  (resolved_vs_mba_<model>), and DIN vs BaseModel without regularisation."""
  del dataset
  final = _final(cells)
  label = {(c['model'], c['reg']): row_label(c) for c in final}
  out = []
  for model, _ in MODELS:
    none, mba = label.get((model, 'none')), label.get((model, 'MBA'))
    vs_none = [(label[(model, r)], none) for r in REGS[1:] if none and (model, r) in label]
    vs_mba = [(label[(model, r)], mba) for r in REGS if r not in ('none', 'no goods_ids', 'MBA')
              and mba and (model, r) in label and label[(model, r)] != mba]
    out += [report.Family(f'resolved_{_slug(model)}', f'{model}: each row vs none', vs_none,
                          RESOLVE, _lab(label)),
            report.Family(f'resolved_vs_mba_{_slug(model)}',
                          f'{model}: the other regularisers vs MBA', vs_mba, RESOLVE,
                          _lab(label))]
  base = [(label[('DIN', 'none')], label[('BaseModel', 'none')])] if {
      ('DIN', 'none'), ('BaseModel', 'none')} <= set(label) else []
  return out + [report.Family('resolved_din_vs_base', 'DIN vs BaseModel, no regularisation',
                              base, RESOLVE, _lab(label))]


def _slug(model: str) -> str:
  return {'BaseModel': 'base', 'DIN': 'din'}[model]


def _lab(label: dict):
  """A cells.csv row -> its table row label; '' for a tuning cell (not a chosen value)."""
  chosen = set(label.values())
  return lambda c: row_label(c) if row_label(c) in chosen else ''


# ---- Power of a paired seed comparison (power.md). ----

def paired_power(diff: float, sd: float, n: int, alpha: float) -> float:
  """Power of the two-sided paired t-test at level alpha with n pairs when the true mean
  difference is diff and the per-pair differences have standard deviation sd: P(|T| >
  t_{1 - alpha/2, n-1}), T noncentral t with n - 1 degrees of freedom and noncentrality
  diff sqrt(n) / sd."""
  if n < 2 or not sd > 0:
    return math.nan
  crit = sp_stats.t.ppf(1 - alpha / 2, n - 1)
  nc = abs(diff) * math.sqrt(n) / sd
  near = sp_stats.nct.sf(crit, n - 1, nc)
  # The wrong-sign tail is below ~1e-10 wherever scipy's nct.cdf returns NaN for it.
  far = sp_stats.nct.cdf(-crit, n - 1, nc)
  return float(near + (far if np.isfinite(far) else 0.0))


def seeds_needed(diff: float, sd: float, alpha: float, power: float = POWER,
                 cap: int = 10_000) -> int | float:
  """The fewest pairs (>= 2) at which paired_power reaches `power`; inf past cap."""
  if not sd > 0 or diff == 0:
    return math.inf if diff == 0 else 2
  n = 2
  while paired_power(diff, sd, n, alpha) < power:
    n += 1
    if n > cap:
      return math.inf
  return n


def detectable(sd: float, n: int, alpha: float, power: float = POWER) -> float:
  """The smallest |difference| the paired t-test detects with `power` at n pairs."""
  if n < 2 or not sd > 0:
    return math.nan
  hi = sd
  while paired_power(hi, sd, n, alpha) < power:
    hi *= 2
  return float(optimize.brentq(lambda d: paired_power(d, sd, n, alpha) - power, 0.0, hi,
                               xtol=1e-12))


def power_rows(results: dict) -> list[dict]:
  """One row per test of the vs-MBA families: the paired per-seed differences' SD, the Holm
  level the test had, the power at the observed difference, the seeds needed for POWER there
  (at that Holm alpha and at Bonferroni's alpha / m) and the difference detectable with POWER
  at the seeds run."""
  rows = []
  for name, res in results.items():
    if not name.startswith('resolved_vs_mba_'):
      continue
    for r in res:
      s = r['seed']
      sd = s['se'] * math.sqrt(s['n']) if s['n'] > 1 else math.nan
      alpha = 1 - r['seed_level']
      bonf = stats.ALPHA / r['family_size']
      rows.append({'row': r['row'], 'vs': r['baseline'], 'metric': report.metric_name(
          r['metric']), 'seeds': s['n'], 'diff': s['mean'], 'sd': sd, 'alpha': alpha,
          'resolved': 'yes' if r['resolved'] else 'no',
          'power': paired_power(s['mean'], sd, s['n'], alpha),
          'needed': seeds_needed(s['mean'], sd, alpha),
          'needed_bonf': seeds_needed(s['mean'], sd, bonf),
          'detectable': detectable(sd, s['n'], alpha)})
  return rows


def power_table(results: dict, outdir: str, dataset: str) -> None:
  """power.md / power.csv from power_rows."""
  rows = power_rows(results)
  for r in rows:
    for k in ('needed', 'needed_bonf'):
      r[k] = 'inf' if r[k] == math.inf else int(r[k])
  cols = [('row', 'row'), ('vs', 'vs'), ('metric', 'metric'), ('seeds', 'seeds'),
          ('Δ (seed mean)', 'diff'), ('SD of paired Δ', 'sd'), ('Holm α', 'alpha'),
          ('resolved', 'resolved'), ('power at Δ, these seeds', 'power'),
          (f'seeds for {POWER:.0%} power (Holm α)', 'needed'),
          (f'seeds for {POWER:.0%} power (α/m)', 'needed_bonf'),
          (f'detectable Δ at {POWER:.0%}, these seeds (Holm α)', 'detectable')]
  shown = [dict(r, diff=f"{r['diff']:+.4f}", sd=f"{r['sd']:.4f}", alpha=f"{r['alpha']:.4f}",
                power=f"{r['power']:.2f}", detectable=f"{r['detectable']:.4f}") for r in rows]
  report.write_table(
      shown, cols, outdir, basename='power',
      title=f'{dataset}: power of the seed comparisons vs MBA',
      notes=('Paired t-test over seeds, two-sided, power from the noncentral t (scipy; '
             'experiments/din_reg.py, paired_power). SD: of the per-seed differences row − '
             'vs. Holm α: '
             'the level Holm tested this comparison at in its family (1 − its interval level); '
             'α/m: Bonferroni over the family, the strictest level Holm can ask. "seeds for '
             f'{POWER:.0%} power": the seeds at which a true difference equal to the observed '
             'mean would be resolved by the seed interval with that probability, if the SD '
             'stays as observed (the bootstrap interval must resolve it too). "detectable Δ": '
             f'the true difference resolved with {POWER:.0%} probability at the seeds run.'))


def figures(cells, records, outdir: str) -> list[str]:
  del cells
  plot_fig4(records, outdir, os.path.basename(os.path.normpath(outdir)))
  return ['fig4.png']


STUDY = study.Study('din_reg', METRICS + ('oracle/test/oracle_gauc', 'oracle/test/oracle_auc'),
                    tables, families, (), figures, from_records=('report.md',))


def load() -> str:
  return subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()


def _table_order(rec) -> tuple:
  g = rec.get('group', rec)
  return ([m for m, _ in MODELS].index(g['model']), REGS.index(g['reg']), rec['seed'])


def finished(cells: list[sweep.Cell], outdir: str) -> list[dict]:
  """The stored records of the cells that finished (--report_only)."""
  out = []
  for c in cells:
    path = os.path.join(outdir, 'cells', f'{c.id}.json')
    if os.path.exists(path):
      with open(path) as f:
        out.append(json.load(f))
  return out


def _run(cells: list[sweep.Cell], dataset: str, outdir: str) -> list[dict]:
  if FLAGS.report_only:
    return finished(cells, outdir)
  return sweep.run_study(f'seqrec_jax/configs/din.py:{dataset}', cells, outdir, FLAGS.seeds,
                         FLAGS.runs_per_group)[0]


def main(argv):
  del argv
  xla_cpu.apply_defaults()
  logging.set_verbosity(logging.WARNING)
  root = FLAGS.outdir or 'runs/din_reg'
  for name, got, known in (('models', FLAGS.models, _models()), ('rows', FLAGS.rows, REGS)):
    if not set(got) <= set(known):
      raise app.UsageError(f'--{name}: unknown {sorted(set(got) - set(known))}; choose from '
                           f'{list(known)}')
  extra = {d: extra_overrides(d, FLAGS.override) for d in FLAGS.dataset}  # checked up front
  t0, load0 = time.time(), load()
  tuning_all = {d: [] for d in FLAGS.dataset}
  records_all = {d: [] for d in FLAGS.dataset}
  # Phase-major over the datasets: a run cut short has the main comparison on both.
  for phase in PHASES:
    regs = tuple(r for r in phase if r in FLAGS.rows)
    for dataset in FLAGS.dataset if regs else ():
      outdir = os.path.join(root, dataset)
      run = lambda cells, dataset=dataset, outdir=outdir: _run(cells, dataset, outdir)
      tuning_all[dataset] += tune(dataset, run, FLAGS.num_steps, regs, extra[dataset],
                                  FLAGS.models)
      records_all[dataset] += _run(final_cells(dataset, choose(tuning_all[dataset]),
                                               FLAGS.seeds, FLAGS.num_steps, regs,
                                               extra[dataset]), dataset, outdir)
  # A default run publishes each dataset of GRIDS it ran into docs/results/din_reg/<dataset>/.
  publishes = sweep.publishes() and not FLAGS.override
  reports = {}
  for dataset in FLAGS.dataset:
    outdir = os.path.join(root, dataset)
    records = list({r['id']: r for r in tuning_all[dataset] + records_all[dataset]}.values())
    names = study.study_main(STUDY, records, outdir, dataset)
    parts = []
    for n in sorted(names, key=lambda n: (n != 'table.md', n == 'grid.md')):   # table first
      if n.endswith('.md'):
        with open(os.path.join(outdir, n)) as f:
          parts.append(f.read())
    reports[dataset] = (outdir, names, parts)
  when = ('tables rebuilt from finished cells (--report_only)' if FLAGS.report_only
          else f'this invocation ({", ".join(FLAGS.dataset)}, --seeds={FLAGS.seeds}): '
          f'{(time.time() - t0) / 60:.1f} min wall')
  timing = (f'Wall time, {when}. Load before: `{load0}`; after: `{load()}` (2 CPU cores '
            'shared with other jobs).\n')
  print(timing)
  for dataset, (outdir, names, parts) in reports.items():
    # report.md: the dataset's tables and the timing (docs/din_reg.md shows it; the tables are
    # rechecked one by one, the timing is not recomputable: STUDY.from_records).
    with open(os.path.join(outdir, 'report.md'), 'w') as f:
      f.write('\n'.join(parts + [timing]))
    if publishes and dataset in GRIDS:
      print('copied to', publish.publish(outdir, f'din_reg/{dataset}', names + ['report.md']))


if __name__ == '__main__':
  define_flags()
  app.run(main)
