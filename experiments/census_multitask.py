"""The MMoE paper's census experiment: income (main task) and never-married, every model.

  bash launch.sh mmoe                             # the synthetic study, then this table
  python -m experiments.census_multitask          # 6 rows x 10 seeds, 10 epochs each
  python -m experiments.census_multitask --full --seeds=5   # 30 epochs, expert-dropout sweep

Data: `census` (data/census.py: UCI Adult, 48,842 rows, 70/10/20 split; NOT the larger
KDD census-income file of the paper, see docs/multitask.md). Rows: single_task (two separate
networks), shared_bottom, omoe, mmoe, ple, and mmoe with expert dropout (whole experts dropped
in the gates during training, the polarisation remedy). Model selection on valid income AUC (the
main task, as in the paper); the table shows per-task test AUC mean ± std over seeds and, as
the paper's "best" column, the test AUCs of the seed with the best valid income AUC, plus
the gate diagnostics of the last training log (mean over seeds): the largest mean gate weight
of one expert (1 = polarised) and the gate entropy (log E = uniform).
Writes table.md/.csv, census_income_auc.png, census_never_married_auc.png to --outdir
(default runs/census_multitask); a default run also copies them to
docs/results/census_multitask/ (shown by docs/multitask.md).
"""
from __future__ import annotations

import os

from absl import app, flags
import numpy as np

from experiments import publish, resolved, sweep
from seqrec_jax import xla_cpu

FLAGS = flags.FLAGS


def define_flags():
  """Defined only when run as a script (see sweep.define_study_flags)."""
  sweep.define_study_flags(10, 'Seeds per model (>= 3 for mean ± std; 10 for paired CIs).',
                           'runs/census_multitask',
                           '30 epochs and expert dropout 0.1 / 0.25 / 0.5.', '10 epochs')
  flags.adopt_module_key_flags(sweep)     # list them under this script's --help


MODELS = ('single_task', 'shared_bottom', 'omoe', 'mmoe', 'ple')
CONFIG = 'seqrec_jax/configs/multitask.py:census'
TASKS = ('income', 'never_married')
RESOLVE = tuple(f'eval/test/{t}/auc' for t in TASKS)   # vs shared_bottom, paired by seed
METRICS = tuple(f'eval/{s}/{t}/auc' for s in ('test', 'valid') for t in TASKS) + (
    'params', 'gate_max_util', 'gate_entropy')


def make_cells(seeds: int, full: bool, num_steps: int = -1) -> list[sweep.Cell]:
  base = {'train.progress': False}
  if full:
    base['train.num_epochs'] = 30.0
  if num_steps > 0:
    base.update({'train.num_steps': num_steps, 'train.eval_every': max(num_steps // 4, 1),
                 'train.log_every': max(num_steps // 4, 1)})
  rows = [(m, {'model.name': m}) for m in MODELS]
  for p in ((0.1, 0.25, 0.5) if full else (0.25,)):
    rows.append((f'mmoe + expert dropout {p}', {'model.name': 'mmoe',
                                                'model.expert_dropout': p}))
  return [sweep.Cell(group={'model': label}, overrides={**base, **o}, seed=s)
          for label, o in rows for s in range(seeds)]


def add_gate_stats(records, outdir: str) -> None:
  """summary['gate_max_util' / 'gate_entropy']: the income gate (OMoE: the shared gate) in the
  last training log of the cell; NaN for models without gates."""
  for r in records:
    r['summary']['gate_max_util'] = r['summary']['gate_entropy'] = float('nan')
    last = None
    for rec in sweep.cell_metrics(r, outdir):
      if 'train/loss' in rec:
        last = rec
    for gate in ('income', 'all'):
      if last and f'train/gates/{gate}/entropy' in last:
        r['summary']['gate_max_util'] = last[f'train/gates/{gate}/max_util']
        r['summary']['gate_entropy'] = last[f'train/gates/{gate}/entropy']
        break


def add_best_run(rows, records) -> None:
  """Per row: test AUCs of the seed with the best valid income AUC (the paper's 'best')."""
  by_id = {r['id']: r for r in records}
  for row in rows:
    best = max((by_id[i] for i in row['ids']),
               key=lambda r: r['summary']['eval/valid/income/auc'])
    row['best_seed'] = best['seed']
    for t in TASKS:
      row[f'best/{t}'] = best['summary'][f'eval/test/{t}/auc']


COLUMNS = [('model', 'model'), ('income test AUC', 'eval/test/income/auc'),
           ('never-married test AUC', 'eval/test/never_married/auc'),
           ('best run: income', 'best/income'), ('best run: never-married', 'best/never_married'),
           ('income valid AUC', 'eval/valid/income/auc'),
           ('gate max weight (income)', 'gate_max_util'), ('gate entropy (income)', 'gate_entropy'),
           ('params', 'params'), ('seeds', 'n_seeds')]


def report(records, outdir: str, wall: float) -> str:
  add_gate_stats(records, outdir)
  rows = sweep.aggregate(records, METRICS)
  add_best_run(rows, records)
  for r in rows:
    for k in ('params', 'gate_max_util', 'gate_entropy'):
      r.pop(k + '_std', None)
    r['params'] = int(r['params'])
    for k in ('gate_max_util', 'gate_entropy'):
      if not np.isfinite(r[k]):
        r[k] = 'n/a'
  s0 = records[0]['summary']
  cell_wall = sum(r.get('wall_seconds', 0.0) for r in records)
  notes = (f'Dataset `census` (UCI Adult); mean ± std over seeds '
           f'{sorted({r["seed"] for r in records})}; every cell selects its state on valid '
           f'income AUC and reports test. "best run" = the seed with the best valid income AUC. '
           f'Gate columns: income gate (OMoE: its single gate) in the last training log; '
           f'n/a = no gate. Steps per cell: {s0["steps"]}. Cells: {len(records)}; summed cell '
           f'wall time {cell_wall / 60:.1f} min; this invocation {wall / 60:.1f} min (finished '
           f'cells are skipped). Config and command of every cell: `{outdir}/cells/*.json`.')
  text = sweep.write_table(rows, COLUMNS, outdir, title='Census multi-task (income, '
                           'never-married): test AUC', notes=notes)
  for t in TASKS:
    sweep.plot_bars(rows, ['model'], f'eval/test/{t}/auc',
                    os.path.join(outdir, f'census_{t}_auc.png'),
                    title=f'census: {t} test AUC (mean ± std over seeds)')
  comp = resolved.compare(records, lambda r: r['group']['model'], 'shared_bottom', outdir,
                          RESOLVE)
  res = resolved.markdown(comp, RESOLVE, '#### census: each model vs shared_bottom')
  # The MMoE paper's own claims: MMoE vs OMoE (per-task gates vs one gate), and expert
  # dropout vs the MMoE it regularises.
  labels = list(dict.fromkeys(r['group']['model'] for r in records))
  for row, base in (('mmoe', 'omoe'), *((m, 'mmoe') for m in labels if 'expert dropout' in m)):
    comp = resolved.compare(records, lambda r: r['group']['model'], base, outdir, RESOLVE,
                            rows=[row])
    res += '\n' + resolved.markdown(comp, RESOLVE, f'#### census: {row} vs {base}')
  with open(os.path.join(outdir, 'resolved.md'), 'w') as f:
    f.write(res)
  return text + '\n' + res


def main(argv):
  del argv
  xla_cpu.apply_defaults()  # CPU runtime defaults, before any JAX computation
  outdir = FLAGS.outdir or os.path.join('runs', 'census_multitask')
  records, wall = sweep.run_study(CONFIG, make_cells(FLAGS.seeds, FLAGS.full, FLAGS.num_steps),
                                  outdir, FLAGS.seeds, FLAGS.runs_per_group)
  print(report(records, outdir, wall))
  print(f'wrote {outdir}/table.md, table.csv, census_*_auc.png in {wall / 60:.1f} min')
  if sweep.publishes():
    print('copied to', publish.publish(outdir, 'census_multitask', (
        'table.md', 'table.csv', 'resolved.md', *(f'census_{t}_auc.png' for t in TASKS))))


if __name__ == '__main__':
  define_flags()
  app.run(main)
