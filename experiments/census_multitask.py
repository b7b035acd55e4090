"""The MMoE paper's census experiment: income (main task) and never-married, every model.

  bash launch.sh mmoe                             # the synthetic study, then this table
  python -m experiments.census_multitask          # 6 rows x 10 seeds, 10 epochs each
  python -m experiments.census_multitask --full --seeds=5   # 30 epochs, expert-dropout sweep
  python -m experiments.census_multitask --override=data.census.path=/data/adult.csv.gz

Data: `census` (data/census.py: UCI Adult, 48,842 rows, 70/10/20 split; NOT the larger
KDD census-income file of the paper, see docs/multitask.md). Rows: single_task (two separate
networks), shared_bottom, omoe, mmoe, ple, and mmoe with expert dropout (whole experts dropped
in the gates during training, the polarisation remedy). Model selection on valid income AUC (the
main task, as in the paper); the table shows per-task test AUC mean ± std over seeds and, as
the paper's "best" column, the test AUCs of the seed with the best valid income AUC, plus
the gate diagnostics of the last training log (mean over seeds): the largest mean gate weight
of one expert (1 = polarised) and the gate entropy (log E = uniform).
--dataset: census or census_kdd (FITS: the table, its selection and the gate diagnostics are
the income and never-married tasks; census_kdd = the paper's KDD census-income file, its
task_group 1, config seqrec_jax/configs/multitask.py:census_kdd, needs
--override=data.census_kdd.path=...); another UCI Adult file is read with
--override=data.census.path=... (every --override reaches every cell and is recorded in its
overrides, config and command; other multi-task data: experiments/mmoe_synthetic.py,
experiments/video.py).
A study spec (experiments/study.py): writes cells.csv, bootstrap.csv, table.md/.csv,
resolved.md/.csv (each model vs shared_bottom, MMoE vs OMoE, expert dropout vs MMoE: seed and
test-row bootstrap intervals, Holm over the table), census_income_auc.png,
census_never_married_auc.png to --outdir (default runs/census_multitask,
runs/census_multitask_<dataset> for another dataset); a default run also copies them to
docs/results/census_multitask/ (shown by docs/multitask.md; `python -m experiments.recheck
census_multitask` recomputes the tables).
"""
from __future__ import annotations

import os

from absl import app, flags
import numpy as np

from experiments import report, study, sweep
from seqrec_jax import xla_cpu
from seqrec_jax.configs import define_override_flag, study_overrides

FLAGS = flags.FLAGS


def define_flags():
  """Defined only when run as a script (see sweep.define_study_flags)."""
  flags.DEFINE_string('dataset', 'census', 'Dataset: ' + ', '.join(
      f'{k} ({v})' for k, v in FITS.items()) + f'; the study needs {NEEDS}.')
  define_override_flag()
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


# The study's table, model selection and gate statistics are the income and never-married
# tasks: only the census data (UCI Adult format, any file via data.census.path) has them.
FITS = {'census': 'UCI Adult: income + never-married; packaged, another file via '
                  'data.census.path',
        'census_kdd': 'UCI census-income (KDD), the MMoE paper\'s data, task_group 1 (income + '
                      'never-married); needs data.census_kdd.path'}
NEEDS = 'the tasks income and never_married'


def config_spec(dataset: str = 'census') -> str:
  return f'seqrec_jax/configs/multitask.py:{dataset}'


def extra_overrides(dataset: str, override_flags) -> dict:
  """--override values (typed by multitask.py:<dataset>, data.<other dataset>.* dropped); fails
  on a dataset without the income and never-married tasks. Another dataset than census also
  sets data.name in every cell: its cells never share an id with census's."""
  out = study_overrides('census_multitask', dataset, override_flags, config_spec(dataset),
                        FITS, NEEDS)
  if dataset == 'census_kdd' and out.get('data.census_kdd.task_group', 1) != 1:
    raise app.UsageError('--override=data.census_kdd.task_group: census_multitask reports '
                         'income and never_married, task group 1 (group 2 is college)')
  return out if dataset == 'census' else {'data.name': dataset, **out}


def make_cells(seeds: int, full: bool, num_steps: int = -1, extra=None) -> list[sweep.Cell]:
  """extra: the --override values (extra_overrides), applied last in every cell."""
  base = {'train.progress': False, 'train.save_predictions': True}   # the bootstrap's input
  if full:
    base['train.num_epochs'] = 30.0
  if num_steps > 0:
    base.update({'train.num_steps': num_steps, 'train.eval_every': max(num_steps // 4, 1),
                 'train.log_every': max(num_steps // 4, 1)})
  rows = [(m, {'model.name': m}) for m in MODELS]
  for p in ((0.1, 0.25, 0.5) if full else (0.25,)):
    rows.append((f'mmoe + expert dropout {p}', {'model.name': 'mmoe',
                                                'model.expert_dropout': p}))
  return [sweep.Cell(group={'model': label}, overrides={**base, **o, **(extra or {})}, seed=s)
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


def add_best_run(rows, cells) -> None:
  """Per row: test AUCs of the seed with the best valid income AUC (the paper's 'best')."""
  by_id = {c['id']: c for c in cells}
  for row in rows:
    best = max((by_id[i] for i in row['ids']), key=lambda c: c['eval/valid/income/auc'])
    row['best_seed'] = best['seed']
    for t in TASKS:
      row[f'best/{t}'] = best[f'eval/test/{t}/auc']


COLUMNS = [('model', 'model'), ('income test AUC', 'eval/test/income/auc'),
           ('never-married test AUC', 'eval/test/never_married/auc'),
           ('best run: income', 'best/income'), ('best run: never-married', 'best/never_married'),
           ('income valid AUC', 'eval/valid/income/auc'),
           ('gate max weight (income)', 'gate_max_util'), ('gate entropy (income)', 'gate_entropy'),
           ('params', 'params'), ('seeds', 'n_seeds')]


def tables(cells, results, outdir: str, ctx: dict) -> list[str]:
  del results
  dataset = ctx['dataset'] or 'census'
  rows = report.aggregate_cells(cells, ('model',), METRICS, modal=RESOLVE)
  add_best_run(rows, cells)
  for r in rows:
    for k in ('params', 'gate_max_util', 'gate_entropy'):
      r.pop(k + '_std', None)
    r['params'] = int(r['params'])
    for k in ('gate_max_util', 'gate_entropy'):
      if not np.isfinite(r[k]):
        r[k] = 'n/a'
  steps = sorted({int(c['steps']) for c in cells})
  what = {'census': 'UCI Adult', 'census_kdd': 'UCI census-income KDD'}.get(dataset, dataset)
  notes = (f'Dataset `{dataset}` ({what}); mean ± std over seeds '
           f'{sorted({c["seed"] for c in cells})}; every cell selects its state on valid '
           f'income AUC and reports test. "best run" = the seed with the best valid income AUC. '
           f'Gate columns: income gate (OMoE: its single gate) in the last training log; '
           f'n/a = no gate. Steps per cell: {", ".join(map(str, steps))}. Cells: {len(cells)}; '
           f'summed cell wall time {sum(c["wall_seconds"] for c in cells) / 60:.1f} min. '
           'Comparisons: resolved.md; per-cell values: cells.csv.')
  name = 'Census' if dataset == 'census' else dataset
  report.write_table(rows, COLUMNS, outdir, title=f'{name} multi-task (income, '
                     'never-married): test AUC', notes=notes)
  return ['table.md', 'table.csv']


def figures(cells, records, outdir: str) -> list[str]:
  del records
  rows = report.aggregate_cells(cells, ('model',), RESOLVE, modal=RESOLVE)
  for t in TASKS:
    report.plot_bars(rows, ['model'], f'eval/test/{t}/auc',
                     os.path.join(outdir, f'census_{t}_auc.png'),
                     title=f'{t} test AUC (mean ± std over seeds)')
  return [f'census_{t}_auc.png' for t in TASKS]


def families(cells, dataset: str) -> list[report.Family]:
  """Each model vs shared_bottom, then the MMoE paper's own claims: MMoE vs OMoE (per-task
  gates vs one gate) and expert dropout vs the MMoE it regularises; one Holm family."""
  labels = list(dict.fromkeys(c['model'] for c in cells))
  pairs = [(m, 'shared_bottom') for m in labels if m != 'shared_bottom']
  pairs += [('mmoe', 'omoe')] + [(m, 'mmoe') for m in labels if 'expert dropout' in m]
  return [report.Family('resolved', f'{dataset or "census"}: each model vs shared_bottom, '
                        'MMoE vs OMoE, expert dropout vs MMoE',
                        [p for p in pairs if set(p) <= set(labels)], RESOLVE,
                        lambda c: c['model'])]


STUDY = study.Study('census_multitask', METRICS + ('steps',), tables, families, TASKS,
                    figures, enrich=add_gate_stats)


def main(argv):
  del argv
  xla_cpu.apply_defaults()  # CPU runtime defaults, before any JAX computation
  dataset = FLAGS.dataset
  extra = extra_overrides(dataset, FLAGS.override)
  outdir = FLAGS.outdir or os.path.join(
      'runs', 'census_multitask' + ('' if dataset == 'census' else f'_{dataset}'))
  records, wall = sweep.run_study(config_spec(dataset),
                                  make_cells(FLAGS.seeds, FLAGS.full, FLAGS.num_steps, extra),
                                  outdir, FLAGS.seeds, FLAGS.runs_per_group)
  study.study_main(STUDY, records, outdir, dataset if dataset != 'census' else '',
                   'census_multitask' if sweep.publishes() and not extra else None)
  print(f'sweep: {wall / 60:.1f} min')


if __name__ == '__main__':
  define_flags()
  app.run(main)
