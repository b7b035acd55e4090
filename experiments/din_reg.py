"""Regularisation study (DIN paper Sec. 4.3.1, Table 4 and Fig. 4): BaseModel and DIN, each with
no regularisation, id dropout, an item frequency filter, plain L2 and mini-batch aware (MBA)
regularisation, on MovieLens latest-small and on synthetic data with a large item vocabulary.

  bash launch.sh din_reg                          # both datasets, 3 seeds (resumable)
  python -m experiments.din_reg --seeds=8         # resumes: adds seeds 3-7 (the published run)
  python -m experiments.din_reg --dataset=synthetic --seeds=5
  python -m experiments.din_reg --num_steps=200 --outdir=/tmp/din_reg   # smoke run
  bash launch.sh din_reg --dataset=movielens --override=data.movielens.path=/data/ml-20m.zip \\
      --override=train.eval_every=2000              # another MovieLens release (any --override)

Protocol: experiments/din_table.py's Adam protocol (Adam 3e-3, cosine, batch 256, d=16, MLP
200-80, PReLU; attention 80-40 for DIN), model selection on valid GAUC, test reported. The
regularisers (tests/test_regularisation.py):
  dropout  model.embed_dropout=0.5: each looked-up id vector zeroed with prob. 0.5 (the paper
           drops 50% of feature ids per sample)
  filter   data.item_top_k=k: only the k items in most training samples keep their id, the rest
           read as OOV 0 (the paper keeps the top 20M goods ids)
  L2       optim.weight_decay=lambda: (lambda / 2) ||theta||^2 on every parameter, each step
           (dense: every embedding row moves every step)
  MBA      model.mba_lambda=lambda: eq. 6, rows of ids present in the batch only, weighted 1/n_j
The strength of filter, L2 and MBA is chosen on valid GAUC from GRIDS with seed 0 (tuning
cells); the chosen value is then run with every seed (seed 0's run is the tuning cell itself).
MBA's n_j are the training-split counts stored with the prepared dataset (movielens) or counted
from the generated train split (synthetic): data/id_counts.py.
Cells run one at a time (--runs_per_group=1 here): grouping seeds into one multi-run program
was measured not to pay for DIN on this CPU (docs/din_reg.md, "Budget").
Outputs (--outdir, default runs/din_reg; a study spec, experiments/study.py): per dataset
<dataset>/cells.csv, bootstrap.csv, table.md/.csv (test GAUC / AUC / logloss, mean ± std; a
strength still on its grid's edge marked), resolved.md (each regulariser vs none),
resolved_vs_mba.md, resolved_din_vs_base.md (one Holm family each: seed t-interval and test-set
bootstrap, users for GAUC, rows for AUC and logloss), grid.md (valid GAUC per tuning value),
fig4.png (train and valid logloss vs step, with and without MBA: the paper's Fig. 4), and
report.md (every dataset's tables and the wall time); a default run copies them to
docs/results/din_reg/ (docs/din_reg.md; `python -m experiments.recheck din_reg`).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import time

from absl import app, flags, logging
import numpy as np

from experiments import din_table, publish, report, stats, study, sweep
from seqrec_jax import xla_cpu
from seqrec_jax.configs import define_override_flag, study_overrides

FLAGS = flags.FLAGS


def define_flags():
  """Defined only when run as a script (see sweep.define_study_flags)."""
  flags.DEFINE_list('dataset', ['movielens', 'synthetic'], 'Datasets, one table each '
                    '(<outdir>/<dataset>): ' + ', '.join(f'{k} ({v})' for k, v in
                                                          din_table.FITS.items())
                    + '; a dataset without its own GRIDS entry uses movielens\'s grid.')
  define_override_flag()
  sweep.define_study_flags(3, 'Seeds per row (the tuning cells use seed 0). 3 took 40.9 min '
                           'at load ~9 on the shared 2-core CPU, each further seed ~6 min.',
                           'runs/din_reg', 'Unused (one preset).', 'the preset: 3 epochs on '
                           'movielens, 4 on synthetic')
  flags.FLAGS.set_default('runs_per_group', 1)   # grouping measured slower for DIN here
  flags.DEFINE_bool('report_only', False, 'Rebuild tables and plots from finished cells without '
                    'training or checking their configs against today\'s defaults.')
  flags.adopt_module_key_flags(sweep)


MODELS = (
    ('BaseModel', {'model.name': 'base', 'model.pooling': 'sum', 'model.activation': 'prelu'}),
    ('DIN', {'model.name': 'din', 'model.activation': 'prelu'}),
)
REGS = ('none', 'dropout', 'filter', 'L2', 'MBA')
KEYS = {'dropout': 'model.embed_dropout', 'filter': 'data.item_top_k',
        'L2': 'optim.weight_decay', 'MBA': 'model.mba_lambda'}
# Strengths. n_j (training samples holding item j) has median ~105 on movielens (10%-90%:
# 51-1039) and ~40 on synthetic (5-91), so MBA's per-step pull lambda * w_j / n_j on a present row
# meets the data gradient (~1e-3 per row at batch 256) around lambda ~ 1. Dense L2 pulls every row
# every step; under Adam rows absent for long shrink at a rate ~ lr * lambda / sqrt(v).
# The grids of the 3-seed run (L2 1e-4..1e-2, MBA 0.1..10) chose a value at an edge for L2
# (1e-4 everywhere), MBA on movielens (0.1) and MBA for DIN on synthetic (10). L2 and movielens
# MBA move a decade past that edge and lose the value that was worst everywhere (L2 1e-2: -0.09
# valid GAUC; MBA 10 on movielens); synthetic MBA spans 0.3-30, around both old choices (1 for
# BaseModel, 10 for DIN). Dropout (0.5) and the filter stay at the paper's setting.
GRIDS = {
    'movielens': {'dropout': (0.5,), 'filter': (2000,), 'L2': (1e-5, 1e-4, 1e-3),
                  'MBA': (0.01, 0.1, 1.0)},
    'synthetic': {'dropout': (0.5,), 'filter': (5000,), 'L2': (1e-5, 1e-4, 1e-3),
                  'MBA': (0.3, 3.0, 30.0)},
}
# din_table's generator with a 20x larger item vocabulary (1000 users' worth of rare items).
SYNTHETIC_VOCAB = {'data.synthetic.num_items': 20000, 'data.synthetic.num_cates': 100}
METRICS = ('eval/test/gauc', 'eval/test/auc', 'eval/test/logloss', 'eval/valid/gauc',
           'best_step')
SCALED = ('L2', 'MBA')            # strengths on a log grid: an edge choice extends it
EXTENSIONS = 1                    # at most this many extra steps past an edge
RESOLVE = ('eval/test/gauc', 'eval/test/auc', 'eval/test/logloss')


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
  """extra: the --override values (extra_overrides), applied last."""
  ov = {**base_overrides(dataset, num_steps), **dict(MODELS)[model]}
  if reg != 'none':
    ov[KEYS[reg]] = value
  ov.update(extra or {})
  return sweep.Cell({'model': model, 'reg': reg, 'value': value}, ov, seed)


# Run order: no regularisation and MBA first (tuning, then every seed), then the other rows, so
# a study cut short by its time budget has the paper's main comparison (and Fig. 4) complete.
PHASES = (('none', 'MBA'), ('dropout', 'filter', 'L2'))


def tuning_cells(dataset: str, num_steps: int = -1, regs=REGS, extra=None
                 ) -> list[sweep.Cell]:
  out = []
  for model, _ in MODELS:
    if 'none' in regs:
      out.append(cell(dataset, model, 'none', None, 0, num_steps, extra))
    for reg in REGS[1:]:
      if reg in regs:
        out += [cell(dataset, model, reg, v, 0, num_steps, extra)
                for v in grids(dataset)[reg]]
  return out


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


def tune(dataset: str, run, num_steps: int = -1, regs=REGS, extra=None) -> list[dict]:
  """The tuning cells of `regs` (seed 0): every grid value; a strength (L2, MBA) chosen on the
  edge of its grid extends it x (the grid's ratio) that way, up to EXTENSIONS times
  (stats.select_on_grids). run(cells) -> records. Returns every tuning record."""
  records = run(tuning_cells(dataset, num_steps, regs, extra))
  grids_ = {(m, reg): grids(dataset)[reg] for m, _ in MODELS for reg in regs
            if reg in SCALED and len(grids(dataset)[reg]) > 1}

  def score(todo):
    new = {k: v for k, v in todo.items() if not set(v) <= set(grids_[k])}
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

  if grids_:
    stats.select_on_grids(grids_, score, higher_better=True, cap=EXTENSIONS)
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
  without regularisation and with each MBA strength of the grid (the tuning runs)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(MODELS), figsize=(5.6 * len(MODELS), 4.0))
  for ax, (model, _) in zip(np.atleast_1d(axes), MODELS):
    runs = {(r['group']['reg'], r['group']['value']): r for r in records
            if r['seed'] == 0 and r['group']['model'] == model
            and r['group']['reg'] in ('none', 'MBA')}
    mba = sorted(v for reg, v in runs if reg == 'MBA')
    blues = plt.cm.Blues(np.linspace(0.45, 0.95, max(len(mba), 1)))
    styles = [(('none', None), 'no reg.', 'tab:red')] + [
        (('MBA', v), f'MBA λ={v:g}', blues[i]) for i, v in enumerate(mba)]
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
    if chosen.get(key) == c['value'] and c['value'] is not None:
      mark = 'yes' + (f' (at the {edge[key]} edge)' if edge.get(key) else '')
    lines.append(f"| {c['model']} | {c['reg']} | {value} | {c['eval/valid/gauc']:.4f} | "
                 f"{c['eval/test/gauc']:.4f} | {c['best_step']:.0f} | {mark} |")
  left = sorted(k for k, v in edge.items() if v)
  lines += ['', f'A strength chosen on the edge of its grid extends the grid one step that way '
            f'(x the grid ratio) and reruns, up to {EXTENSIONS} times (stats.select_on_grids). '
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
  del results
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
  notes += ('Comparisons: resolved.md (each regulariser vs none), resolved_vs_mba.md, '
            'resolved_din_vs_base.md; tuning: grid.md; per-cell values: cells.csv.')
  report.write_table(
      rows, [('Model / regulariser (value)', 'row'), ('seeds', 'n_seeds'),
             ('test GAUC', 'eval/test/gauc'), ('test AUC', 'eval/test/auc'),
             ('test logloss', 'eval/test/logloss'), ('valid GAUC', 'eval/valid/gauc'),
             ('best step', 'best_step'), ('s/run', 'wall_seconds')],
      outdir, title=f'{dataset}: test metrics (mean ± std over {seeds} seeds)', notes=notes)
  grid_table(cells, outdir, dataset)
  return ['table.md', 'table.csv', 'grid.md']


def families(cells, dataset: str) -> list[report.Family]:
  """Three tables, one Holm family each: every regulariser vs none, the others vs MBA (per
  model), DIN vs BaseModel without regularisation."""
  del dataset
  final = _final(cells)
  label = {(c['model'], c['reg']): row_label(c) for c in final}
  vs_none, vs_mba = [], []
  for model, _ in MODELS:
    none, mba = label.get((model, 'none')), label.get((model, 'MBA'))
    vs_none += [(label[(model, r)], none) for r in REGS[1:] if none and (model, r) in label]
    vs_mba += [(label[(model, r)], mba) for r in REGS[1:-1] if mba and (model, r) in label]
  base = [(label[('DIN', 'none')], label[('BaseModel', 'none')])] if {
      ('DIN', 'none'), ('BaseModel', 'none')} <= set(label) else []
  # Only the chosen values' cells carry a row label the pairs name; the others are tuning.
  lab = lambda c: row_label(c) if (c['model'], c['reg']) in label else ''
  return [report.Family('resolved', 'Each regulariser vs none (same model)', vs_none, RESOLVE,
                        lab),
          report.Family('resolved_vs_mba', 'The other regularisers vs MBA (same model)', vs_mba,
                        RESOLVE, lab),
          report.Family('resolved_din_vs_base', 'DIN vs BaseModel, no regularisation', base,
                        RESOLVE, lab)]


def figures(cells, records, outdir: str) -> list[str]:
  del cells
  plot_fig4(records, outdir, os.path.basename(os.path.normpath(outdir)))
  return ['fig4.png']


STUDY = study.Study('din_reg', METRICS + ('oracle/test/oracle_gauc', 'oracle/test/oracle_auc'),
                    tables, families, (), figures)


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
  extra = {d: extra_overrides(d, FLAGS.override) for d in FLAGS.dataset}  # checked up front
  t0, load0 = time.time(), load()
  tuning_all = {d: [] for d in FLAGS.dataset}
  records_all = {d: [] for d in FLAGS.dataset}
  # Phase-major over the datasets: a run cut short has the main comparison on both.
  for regs in PHASES:
    for dataset in FLAGS.dataset:
      outdir = os.path.join(root, dataset)
      run = lambda cells, dataset=dataset, outdir=outdir: _run(cells, dataset, outdir)
      tuning_all[dataset] += tune(dataset, run, FLAGS.num_steps, regs, extra[dataset])
      records_all[dataset] += _run(final_cells(dataset, choose(tuning_all[dataset]),
                                               FLAGS.seeds, FLAGS.num_steps, regs,
                                               extra[dataset]), dataset, outdir)
  publishes = (sweep.publishes() and set(FLAGS.dataset) == {'movielens', 'synthetic'}
               and not FLAGS.override)
  parts = []
  for dataset in FLAGS.dataset:
    outdir = os.path.join(root, dataset)
    records = list({r['id']: r for r in tuning_all[dataset] + records_all[dataset]}.values())
    names = study.study_main(STUDY, records, outdir, dataset,
                             f'din_reg/{dataset}' if publishes else None)
    for n in names:
      if n.endswith('.md'):
        with open(os.path.join(outdir, n)) as f:
          parts.append(f.read())
  when = ('tables rebuilt from finished cells (--report_only)' if FLAGS.report_only
          else f'this invocation: {(time.time() - t0) / 60:.1f} min wall')
  parts.append(f'Wall time, {when}. Load before: `{load0}`; after: `{load()}` (2 CPU cores '
               'shared with other jobs).\n')
  # report.md: every dataset's tables and the timing (docs/din_reg.md shows it; its tables are
  # rechecked in their dataset folders, the timing is not recomputable).
  with open(os.path.join(root, 'report.md'), 'w') as f:
    f.write('\n'.join(parts))
  print(parts[-1])
  if publishes:
    print('copied to', publish.publish(root, 'din_reg', ['report.md']))


if __name__ == '__main__':
  define_flags()
  app.run(main)
