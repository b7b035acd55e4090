"""DNN vs DCN vs DCN-V2 (full rank, low rank r = d/4, mixture of low-rank experts).

  python -m experiments.dcn_table                       # census (income) + MovieLens, 10 seeds
  python -m experiments.dcn_table --dataset=census --seeds=5
  bash launch.sh dcn --dataset=criteo --override=data.criteo.path=/data/dac/train.txt \\
      --override=data.criteo.max_rows=2000000          # any config override, repeatable
  bash launch.sh dcn [flags...]

--dataset: census, movielens, criteo, synthetic (FITS; each has a preset in configs/dcn.py);
--override=key=value reaches every cell (typed by the config, recorded in each cell's
overrides, config and command); --set (old name) and --criteo_path=... (= --dataset=criteo
--override=data.criteo.path=...) still work.

Per dataset: one row per model, test logloss and AUC mean ± std over seeds (model selection on
valid logloss), parameters, training examples/s; a study spec (experiments/study.py):
outdir/<dataset>/ cells.csv, bootstrap.csv, meta.json, table.md/.csv, resolved.md/.csv (every
row vs DNN and the DCN-V2 paper's pairs: seed and test-row bootstrap intervals, Holm over the
table), auc.png, logloss.png; a default run also copies them to
docs/results/dcn_table/<dataset>/ (`python -m experiments.recheck dcn_table` recomputes the
tables from them).
Cells are resumable (experiments/sweep.py): rerunning skips finished cells.
"""
from __future__ import annotations

import os
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from experiments import report, study, sweep
from seqrec_jax import models, xla_cpu
from seqrec_jax.configs import OVERRIDE_HELP, load_config, study_overrides
from seqrec_jax.data import load_dataset

# Datasets with a preset in configs/dcn.py (fields a cross network takes: categorical ids and
# numbers, or a target item with its pooled history).
FITS = {'census': 'UCI Adult, income task; packaged', 'movielens': 'target + mean-pooled '
        'history; latest-small offline, any release via data.movielens.path',
        'criteo': '13 numbers + 26 categorical fields; needs data.criteo.path',
        'synthetic': 'planted-interest clicks'}
NEEDS = 'a binary click/label task and a preset in configs/dcn.py'
_DATASET = flags.DEFINE_string('dataset', 'census,movielens',
                               'comma list, one table each (outdir/<dataset>): '
                               + ', '.join(f'{k} ({v})' for k, v in FITS.items()))
_SEEDS = flags.DEFINE_integer('seeds', 10, 'seeds per row (>= 3 for mean ± std; 10 for '
                             'paired CIs)')
_OUTDIR = flags.DEFINE_string('outdir', 'runs/dcn_table', 'tables go to outdir/<dataset>/')
_CRITEO = flags.DEFINE_string('criteo_path', '', 'Criteo files (sets data.criteo.path); '
                              'adds criteo to --dataset')
_QUICK = flags.DEFINE_bool('quick', False, 'a quarter of the epochs (smoke run)')
_FULL = flags.DEFINE_bool('full', False, 'twice the epochs of the default')
_MODELS = flags.DEFINE_list('rows', [], 'subset of row names (default: all)')
_OVERRIDE = flags.DEFINE_multi_string('override', [], OVERRIDE_HELP)
flags.DEFINE_alias('set', 'override')     # the old name
_RUNS_PER_GROUP = sweep.define_runs_per_group_flag()
flags.adopt_module_key_flags(sweep)     # list --runs_per_group under this script's --help
_DOCS = flags.DEFINE_bool('docs', True, 'after a default run (no flag but --dataset/--seeds) copy '
                          'tables and plots to docs/results/dcn_table/<dataset>/')

# (row label, overrides). r = d/4 via cross_rank=0.25 (d = width of the embedding layer x0).
ROWS = (
    ('DNN', {'model.name': 'dnn'}),
    ('DCN (parallel)', {'model.name': 'dcn', 'model.structure': 'parallel'}),
    ('DCN-V2 full (stacked)', {'model.name': 'dcnv2', 'model.cross_type': 'full',
                               'model.structure': 'stacked'}),
    ('DCN-V2 full (parallel)', {'model.name': 'dcnv2', 'model.cross_type': 'full',
                                'model.structure': 'parallel'}),
    ('DCN-V2 r=d/4 (stacked)', {'model.name': 'dcnv2', 'model.cross_type': 'lowrank',
                                'model.cross_rank': 0.25, 'model.structure': 'stacked'}),
    ('DCN-Mix 4x r=d/4 (stacked)', {'model.name': 'dcnv2', 'model.cross_type': 'mix',
                                    'model.cross_rank': 0.25, 'model.cross_experts': 4,
                                    'model.structure': 'stacked'}),
)
METRICS = ('eval/test/logloss', 'eval/test/auc', 'eval/valid/logloss', 'eval/valid/auc',
           'params', 'examples_per_sec')
# DCN-V2 paper (Wang et al., WWW'21), Criteo, DCN-V2: logloss 0.4406, AUC 0.8115.
PAPER = {'criteo': {'paper DCN-V2 AUC': 0.8115}}
RESOLVE = ('eval/test/logloss', 'eval/test/auc')   # each row vs DNN, paired by seed


def extra_overrides(dataset: str, override_flags=(), criteo_path: str = '') -> dict:
  """--override values for one dataset's cells: typed by configs/dcn.py:<dataset>, data.<other
  dataset>.* dropped; criteo_path (--criteo_path) sets data.criteo.path. Fails on a dataset
  without a preset (FITS)."""
  out = study_overrides('dcn_table', dataset, override_flags,
                        f'seqrec_jax/configs/dcn.py:{dataset}', FITS, NEEDS)
  if dataset == 'criteo' and criteo_path:
    out['data.criteo.path'] = criteo_path
  return out


def common_overrides(dataset: str, scale: float = 1.0, extra=None) -> dict:
  """What every cell of a dataset sets: the config's epochs x scale, then extra."""
  base = load_config(f'seqrec_jax/configs/dcn.py:{dataset}')
  return {'train.num_epochs': base.train.num_epochs * scale,
          'train.save_predictions': True,       # test predictions: the bootstrap over rows
          **(extra or {})}


def make_cells(dataset: str, seeds: int, scale: float = 1.0, rows=(), extra=None
               ) -> list[sweep.Cell]:
  """Every row (or those named in rows) x seeds; the config's epochs x scale, then extra (the
  --override values, extra_overrides) in every cell."""
  common = common_overrides(dataset, scale, extra)
  unknown = sorted(set(rows) - {label for label, _ in ROWS})
  if unknown:
    raise ValueError(f'--rows: unknown {unknown}; choose from {[label for label, _ in ROWS]}')
  return [sweep.Cell({'model': label}, dict(common, **ov), seed)
          for seed in range(seeds) for label, ov in ROWS if not rows or label in rows]


def cross_width(spec: str, overrides: dict) -> str:
  """'d=.., r=..' of the low-rank row: x0 width and the resolved rank (from parameter shapes)."""
  cfg = load_config(spec, dict(overrides, **{'model.name': 'dcnv2',
                                             'model.cross_type': 'lowrank'}))
  ds = load_dataset(cfg.data)
  model = models.build_model(cfg.model, ds.spec)
  batch = ds.splits['train'].__getitems__(np.arange(2))
  p = jax.eval_shape(lambda: model.init(jax.random.key(0), batch, train=False))['params']
  d, r = p['backbone']['cross']['layer_0']['v']['kernel'].shape
  return f'd={d}, r={r}'


def command(dataset: str) -> str:
  """The command line that reproduces this invocation's cells of one dataset."""
  return (f'python -m experiments.dcn_table --dataset={dataset} --seeds={_SEEDS.value}'
          + (' --quick' if _QUICK.value else '') + (' --full' if _FULL.value else '')
          + (f" --rows='{','.join(_MODELS.value)}'" if _MODELS.value else '')
          + (f' --criteo_path={_CRITEO.value}' if dataset == 'criteo' and _CRITEO.value else '')
          + ''.join(f' --override={kv}' for kv in _OVERRIDE.value))


def meta(records, dataset: str) -> dict:
  """The shared settings the notes print (from the first cell's config) and the command."""
  spec = f'seqrec_jax/configs/dcn.py:{dataset}'
  common = {k: v for k, v in records[0]['overrides'].items()
            if not k.startswith('model.') and k != 'seed'}
  base = load_config(spec, common)
  return {'x0': cross_width(spec, common),
          'tasks': ','.join(base.data.tasks) if base.data.tasks else 'all tasks',
          'setup': f'{base.model.cross_layers} cross layers, deep {tuple(base.model.hidden)} '
                   f'ReLU, embed {base.model.embed_dim}, batch {base.data.batch_size}, '
                   f'{base.train.num_epochs:g} epochs, Adam {base.optim.learning_rate:g}',
          'command': command(dataset)}


COLUMNS = [('model', 'model'), ('test logloss', 'eval/test/logloss'),
           ('test AUC', 'eval/test/auc'), ('valid AUC', 'eval/valid/auc'),
           ('params', 'params'), ('examples/s', 'examples_per_sec'), ('s/run', 'wall'),
           ('seeds', 'n_seeds')]


def tables(cells, results, outdir: str, ctx: dict) -> list[str]:
  del results
  dataset = ctx['dataset']
  for c in cells:
    c['wall'] = c['wall_seconds']
  agg = report.aggregate_cells(cells, ('model',), METRICS + ('wall',), modal=RESOLVE)
  seeds = sorted({c['seed'] for c in cells})
  notes = (f'{dataset} ({ctx["tasks"]}); x0 {ctx["x0"]}; {ctx["setup"]}; selection on valid '
           f'logloss; test metrics, mean ± std over {len(seeds)} seeds; examples/s = '
           f'training-loop throughput (incl. periodic validation and checkpoints) on this '
           f'shared 2-core machine; s/run = wall seconds per run incl. compile and evals (sum '
           f'over the {len(cells)} runs: {sum(c["wall"] for c in cells):.0f} s). Comparisons: '
           f'resolved.md; per-cell values: cells.csv. Command: {ctx["command"]}')
  for r in agg:                       # counts and rates: mean only, as plain numbers
    for k, f in (('params', '{:,.0f}'), ('examples_per_sec', '{:,.0f}'), ('wall', '{:.0f}')):
      r[k] = f.format(r[k])
      r.pop(k + '_std', None)
  report.write_table(agg, COLUMNS, outdir, title=f'DNN vs DCN vs DCN-V2 on {dataset}',
                     notes=notes)
  return ['table.md', 'table.csv']


def figures(cells, records, outdir: str) -> list[str]:
  del records
  dataset = os.path.basename(os.path.normpath(outdir))
  agg = report.aggregate_cells(cells, ('model',), RESOLVE, modal=RESOLVE)
  report.plot_bars(agg, ['model'], 'eval/test/auc', os.path.join(outdir, 'auc.png'),
                   title=f'{dataset}: test AUC (mean ± std)', reference=PAPER.get(dataset))
  report.plot_bars(agg, ['model'], 'eval/test/logloss', os.path.join(outdir, 'logloss.png'),
                   title=f'{dataset}: test logloss (mean ± std)')
  return ['auc.png', 'logloss.png']


# The DCN-V2 paper's own comparisons: the new cross layer vs DCN's, low rank and the mixture vs
# full rank (same structure).
PAPER_PAIRS = (('DCN-V2 full (stacked)', 'DCN (parallel)'),
               ('DCN-V2 full (parallel)', 'DCN (parallel)'),
               ('DCN-V2 r=d/4 (stacked)', 'DCN-V2 full (stacked)'),
               ('DCN-Mix 4x r=d/4 (stacked)', 'DCN-V2 full (stacked)'))


def families(cells, dataset: str) -> list[report.Family]:
  """resolved.md: every row vs DNN, then PAPER_PAIRS; one Holm family."""
  present = {c['model'] for c in cells}
  base = ROWS[0][0]
  pairs = [(label, base) for label, _ in ROWS[1:]] + list(PAPER_PAIRS)
  return [report.Family('resolved', f"{dataset}: each row vs {base}, then the DCN-V2 paper's "
                        'comparisons', [p for p in pairs if set(p) <= present], RESOLVE,
                        lambda c: c['model'])]


STUDY = study.Study('dcn_table', METRICS, tables, families, (), figures,
                    meta=meta)


def run_dataset(dataset: str, publish_to: str | None) -> None:
  spec = f'seqrec_jax/configs/dcn.py:{dataset}'
  scale = 0.25 if _QUICK.value else (2.0 if _FULL.value else 1.0)
  extra = extra_overrides(dataset, _OVERRIDE.value, _CRITEO.value)
  cells = make_cells(dataset, _SEEDS.value, scale, _MODELS.value, extra)
  outdir = os.path.join(_OUTDIR.value, dataset)
  records = sweep.run_sweep(spec, cells, outdir, runs_per_group=_RUNS_PER_GROUP.value)
  study.study_main(STUDY, records, outdir, dataset, publish_to)


def main(argv):
  del argv
  xla_cpu.apply_defaults()  # CPU runtime defaults, before any JAX computation
  logging.set_verbosity(logging.WARNING)     # orbax logs every checkpoint write at INFO
  datasets = [d for d in _DATASET.value.split(',') if d]
  if _CRITEO.value and 'criteo' not in datasets:
    datasets.append('criteo')
  default = not (_CRITEO.value or _QUICK.value or _FULL.value or _MODELS.value
                 or _OVERRIDE.value or _OUTDIR.value != _OUTDIR.default)
  for d in datasets:                # every dataset and override checked before training
    extra_overrides(d, _OVERRIDE.value, _CRITEO.value)
  t0 = time.time()
  for d in datasets:
    run_dataset(d, f'dcn_table/{d}' if _DOCS.value and default and d in ('census', 'movielens')
                else None)
  print(f'total wall time {time.time() - t0:.0f} s', flush=True)


if __name__ == '__main__':
  app.run(main)
