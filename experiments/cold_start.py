"""The cold-start study (issue 30 item 3): warm vs new items vs new users (docs/cold_start.md).

  bash launch.sh cold_start                          # 3 seeds, both datasets -> docs/results
  python -m experiments.cold_start --seeds=2 --num_steps=40 --outdir=/tmp/c    # smoke

Per dataset (synthetic planted-interest logs, MovieLens latest-small offline):
  1. data/cold_start.cold_split: train = interactions before the time T (the 0.8 quantile),
     test = the first interactions after T; new users lose their history before T; on the
     synthetic logs 10% of the items are launched at T (module docstring). Each test request
     is in one cell: warm, new item, new user, new user and new item.
  2. candidates: the target and 99 items drawn uniformly from the catalogue at test time
     (the user's history excluded); metrics per request: HR@10, NDCG@10, AUC of the target
     among the 100 (expected over random tie-breaking: popularity ties every new item).
  3. baselines without training: popularity (train counts), popularity within category
     (P(category | user's history) P(item | category), Laplace-smoothed).
  4. rankers trained through train.train_and_evaluate (one multi-run group of --seeds runs
     each) on CTR rows of the train part (next interaction vs 2 uniform negatives) with the
     item content (category; MovieLens also genres 2-3 and decade, side='item'):
       DIN, unseen id = its untrained row   ids as they are (the naive serving path)
       DIN + unknown-id bucket              10% of train rows' item ids -> 0 (the OOV id);
                                            at test every id without train interactions -> 0
       two-tower + unknown-id bucket        the same on models/two_tower.py (BCE on the rows)
       two-tower, content only              every item id -> 0 in training and at test
Seeds are model initialisations and batch orders (data, split and candidates fixed). Every
stage is cached under <outdir>/<dataset>_<key>/ (experiments/stages.py); a rerun reads it.

Report (experiments/study.py): per dataset, <outdir>/<dataset>/ (published to
docs/results/cold_start/<dataset>/) holds cells.csv, one line per (model, seed) with
'<cell>/<metric>' = the metric's mean over that cell's requests (every cell, HR@10, NDCG@10,
AUC); meta.json (T, request counts, command, wall); bootstrap.csv; cold_start.md (HR@10 and
AUC per shown cell, mean ± std over seeds) and cold_start_diffs.md (the COMPARE pairs on HR@10
and AUC of each shown cell: one report.Family, Holm within it; seed t-interval paired by seed;
the test-set bootstrap resamples test users, a user's requests together, for the
seed-averaged per-request difference: stats kind 'mean', read from
<workdir>/per_request/<id>.npz). `python -m experiments.recheck cold_start` recomputes them.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

from absl import app, flags
import numpy as np

from experiments import funnel as FN
from experiments import publish, report, stages, study
from seqrec_jax import xla_cpu
from seqrec_jax.data import cold_start as C
from seqrec_jax.data import retrieval as D

FLAGS = flags.FLAGS
NUM_NEG = 99
K = 10
# Per dataset: cold_split arguments.
SPLITS = {'synthetic': dict(cutoff=0.8, new_user_frac=0.1, launch_frac=0.1, per_user=1),
          'movielens': dict(cutoff=0.8, new_user_frac=0.3, launch_frac=0.0, per_user=20)}
# name: (config.model.name, train id drop rate, test ids: 'raw' | 'unknown' | 'none')
MODELS = {'DIN, unseen id = its untrained row': ('din', 0.0, 'raw'),
          'DIN + unknown-id bucket': ('din', 0.1, 'unknown'),
          'two-tower + unknown-id bucket': ('two_tower', 0.1, 'unknown'),
          'two-tower, content only': ('two_tower', 1.0, 'none')}
BASELINES = ('popularity', 'popularity within category')
SHOWN_CELLS = C.CELLS[:3]            # the fourth (new user, new item) is a handful of requests
COMPARE = ([('DIN + unknown-id bucket', 'DIN, unseen id = its untrained row'),
            ('two-tower, content only', 'two-tower + unknown-id bucket')]
           + [(m, 'popularity within category') for m in MODELS])
DIFF_METRICS = (f'hr@{K}', 'auc')
# cells.csv: '<cell>/<metric>' of every cell (C.rank_metrics' keys).
METRICS = tuple(f'{c}/{m}' for c in C.CELLS for m in (f'hr@{K}', f'ndcg@{K}', 'auc'))


def define_flags():
  flags.DEFINE_integer('seeds', 3, 'Training seeds of each ranker.')
  flags.DEFINE_string('outdir', '', 'Output directory (default runs/cold_start).')
  flags.DEFINE_list('datasets', ['synthetic', 'movielens'], 'synthetic and/or movielens '
                    '(time-ordered interaction logs, data/retrieval.py).')
  flags.DEFINE_alias('dataset', 'datasets')
  flags.DEFINE_integer('num_steps', -1, '> 0: train steps per model (else --epochs).')
  flags.DEFINE_float('epochs', 1.0, 'Epochs of each ranker.')
  flags.DEFINE_integer('max_len', 30, 'History length L.')
  flags.DEFINE_integer('max_warm', 800, 'Warm test requests kept (a fixed random subset; '
                       'every cold request is kept).')
  flags.DEFINE_bool('docs', True, 'After a default run copy the tables to '
                    'docs/results/cold_start/.')


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything a dataset's results depend on besides the data (its cache key)."""
  epochs: float = 1.0
  num_steps: int = -1
  max_len: int = 30
  neg_per_pos: int = 2
  max_warm: int = 800
  split: dict = dataclasses.field(default_factory=dict)
  model_overrides: dict = dataclasses.field(default_factory=dict)
  models: tuple = tuple(MODELS)
  synthetic: dict = dataclasses.field(default_factory=dict)   # synthetic_logs overrides


def model_data(cs: C.ColdSplit, table, fields, drop: float, test_ids: str, st: Settings,
               name: str):
  """(Dataset for training, rows_fn(rows) -> the model's test rows) of one MODELS entry."""
  split = cs.split
  new = cs.new_items()
  unknown = {'raw': None, 'unknown': new, 'none': np.ones_like(new)}[test_ids]
  vq = D.queries(split, 'valid', st.max_len)
  ds = D.ctr_dataset(split, st.max_len, D.candidate_rows(split, vq, vq['target'][:, None]),
                     st.neg_per_pos, seed=0, name=name)
  spl = {k: v.all() for k, v in ds.splits.items()}
  train = C.with_content(spl['train'], table, unknown)
  splits = {'train': train if drop == 0 else C.drop_ids(train, drop, seed=1),
            'valid': C.with_content(spl['valid'], table, unknown),
            'test': C.with_content(spl['test'], table, unknown)}
  from seqrec_jax.data.pipeline import ArraySplit, Dataset  # pylint: disable=g-import-not-at-top
  spec = dataclasses.replace(ds.spec, sparse=fields)
  out = Dataset(name, spec, {k: ArraySplit(v) for k, v in splits.items()}, ds.info)
  return out, lambda rows: C.with_content(rows, table, unknown)


def run_dataset(dataset: str, seeds, outdir: str, log, st: Settings) -> dict:
  t0 = time.time()
  logs = D.synthetic_logs(**st.synthetic) if dataset == 'synthetic' else D.movielens_logs()
  cs = C.cold_split(logs, **st.split)
  split = cs.split
  settings = dataclasses.asdict(st)
  if not settings['synthetic']:     # default logs: the key runs made before the field had
    settings.pop('synthetic')
  wd = os.path.join(outdir, f'{dataset}_{stages.key([settings, logs.fingerprint()])}')
  os.makedirs(wd, exist_ok=True)
  fields, table = C.item_content(logs)
  # Every cold request, and at most st.max_warm warm ones (a fixed random subset).
  warm = np.flatnonzero(cs.cell == 0)
  skip = np.random.default_rng(0).permutation(warm)[st.max_warm:]
  keep = np.setdiff1d(np.arange(len(cs.cell)), skip)
  q = {k: v[keep] for k, v in D.queries(split, 'test', st.max_len).items()}
  cand = C.sample_candidates(cs, NUM_NEG)[keep]
  cell, users = cs.cell[keep], split.eval_users[keep]
  log(f'[{dataset}] T={cs.cutoff}; train {int(split.train.sum())} interactions; test requests '
      + ', '.join(f'{c} {int((cell == i).sum())}' for i, c in enumerate(C.CELLS))
      + f' (of {len(warm)} warm); content fields {[f.name for f in fields]}; workdir {wd}')
  scores = {'popularity': {s: split.item_count()[cand].astype(np.float64) for s in seeds},
            'popularity within category': {
                s: C.category_popularity(split, q['hist_cate'], cand) for s in seeds}}
  rows = D.candidate_rows(split, q, cand)
  E, N = cand.shape
  for name in st.models:
    model, drop, test_ids = MODELS[name]
    tag = f'{model}_drop{drop:g}_{test_ids}'
    mwd = os.path.join(wd, tag)

    def run(model=model, drop=drop, test_ids=test_ids, mwd=mwd, tag=tag, name=name):
      ds, rows_fn = model_data(cs, table, fields, drop, test_ids, st, f'cold_{dataset}_{tag}')
      FN.train_group(ds, model, mwd, seeds, st.epochs, st.num_steps, st.model_overrides, log)
      t = time.time()
      mine = rows_fn(rows)
      p = FN.score(mwd, ds.spec, [mine] * len(seeds))
      log(f'  {name}: scored {len(seeds)} x {E} x {N} in {time.time() - t:.0f} s')
      return {'scores': np.stack([x.reshape(E, N) for x in p])}
    got = stages.cached(os.path.join(wd, f'scores_{tag}.npz'), run)['scores']
    scores[name] = {s: got[r] for r, s in enumerate(seeds)}
  mets = {n: {s: C.rank_metrics(v, K) for s, v in by.items()} for n, by in scores.items()}
  return {'dataset': dataset, 'metrics': mets, 'cell': cell, 'users': users,
          'warm_total': len(warm), 'workdir': wd,
          'info': logs.info, 'cutoff': cs.cutoff, 'fields': [f.name for f in fields],
          'seconds': time.time() - t0, 'train': int(split.train.sum()),
          'new_items': int(cs.new_items()[np.unique(split.logs.item)].sum())}


def _command() -> str:
  return 'bash launch.sh cold_start' + (' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else '')


def dataset_records(res: dict, report_dir: str) -> list[dict]:
  """One study record per (model, seed) of run_dataset's result: group {'model'}, summary
  '<cell>/<metric>' = the metric's mean over that cell's requests (NaN for none); the
  per-request values (and each request's cell) are saved in the dataset's stage cache
  (<workdir>/per_request/<id>.npz), which the bootstrap reads."""
  cell, out = res['cell'], []
  for name, by_seed in res['metrics'].items():
    for s, vals in by_seed.items():
      path = os.path.join(res['workdir'], 'per_request', f'{stages.slug(name)}_s{s}.npz')
      stages.save_values(path, res['users'], vals, cell=cell)
      summary = {f'{c}/{m}': stages.mean(v[cell == i]) for i, c in enumerate(C.CELLS)
                 for m, v in vals.items()}
      out.append(stages.record({'model': name}, s, vals, path, report_dir, summary))
  stages.check_ids(out)
  return out


def dataset_meta(res: dict, seeds, wall: float, load: str) -> dict:
  """meta.json of one dataset: what the table's notes print."""
  cell = res['cell']
  return {'seeds': list(seeds), 'cutoff': np.asarray(res['cutoff']).item(),
          'train': res['train'],
          'requests': [[c, int((cell == i).sum())] for i, c in enumerate(C.CELLS)],
          'warm_total': res['warm_total'], 'users': int(len(np.unique(res['users']))),
          'new_items': res['new_items'], 'fields': res['fields'], 'command': _command(),
          'wall_seconds': round(wall, 1), 'load': load}


def _model(c: dict) -> str:
  return c['model']


def _inputs(row, rec: dict, metric: str, outdir: str):
  """Family.inputs of '<cell>/<metric>': the record's per-request values of that cell's
  requests (stats kind 'mean': a user's requests resampled together)."""
  del row
  cell, m = metric.rsplit('/', 1)
  i = C.CELLS.index(cell)
  return stages.mean_inputs(rec, m, outdir, select=lambda saved: saved['cell'] == i)


def families(cells, dataset: str = '') -> list[report.Family]:
  """cold_start_diffs: the COMPARE pairs present, on HR@10 and AUC of every shown cell that
  has requests; one Holm family; paired by seed; the bootstrap resamples test users."""
  del dataset
  models = set(_model(c) for c in cells)
  pairs = [(a, b) for a, b in COMPARE if a in models and b in models]
  mets = [f'{c}/{m}' for m in DIFF_METRICS for c in SHOWN_CELLS
          if any(np.isfinite(x[f'{c}/{m}']) for x in cells)]
  if not pairs or not mets:
    return []
  return [report.Family('cold_start_diffs', f'Cold start: model minus baseline, per cell of '
                        f'requests (HR@{K} and AUC of the target among {NUM_NEG + 1} '
                        'candidates)', pairs, mets, _model, inputs=_inputs)]


def tables(cells, results, outdir: str, ctx: dict) -> list[str]:
  """cold_start: HR@10 and AUC of each model in each shown cell, mean ± std over seeds."""
  del results
  names = {f'hr@{K}': f'HR@{K}', f'ndcg@{K}': f'NDCG@{K}', 'auc': 'AUC'}
  cols = [f'{c}/{m}' for m in DIFF_METRICS for c in SHOWN_CELLS]
  rows = report.aggregate_cells(cells, ['model'], cols)
  req = dict(ctx['requests'])
  notes = (
      f'Mean ± std over the seeds {ctx["seeds"]} (baselines without training: ± 0). '
      f'T = {ctx["cutoff"]}, {ctx["train"]} train interactions; test requests '
      + ', '.join(f'{c} {n}' for c, n in ctx['requests'])
      + f' (warm: a random {req["warm"]} of {ctx["warm_total"]}; {ctx["users"]} users); '
      f'{ctx["new_items"]} new items in the catalogue; item content: category'
      + ''.join(f', {f}' for f in ctx['fields']) + '. Every cell and NDCG@10 per seed: '
      'cells.csv. Differences: cold_start_diffs.md (the bootstrap resamples test users, a '
      'user\'s requests together, of the seed-averaged per-request difference).\n\n'
      f'`{ctx["command"]}`: {ctx["wall_seconds"] / 60:.1f} min wall for this dataset (this '
      f'invocation; cached stages are read) at load average {ctx["load"]} (2 CPU cores, '
      'shared), nice -n 10.')
  report.write_table(
      rows, [('model', 'model')] + [(f'{names[c.rsplit("/", 1)[1]]} {c.rsplit("/", 1)[0]}', c)
                                    for c in cols] + [('seeds', 'n_seeds')],
      outdir, basename='cold_start', title=f'Cold vs warm ({ctx["dataset"]}): HR@{K} and AUC '
      f'of the target among {NUM_NEG + 1} candidates', notes=notes)
  return ['cold_start.md', 'cold_start.csv']


STUDY = study.Study('cold_start', METRICS, tables, families)


def report_dataset(res: dict, outdir: str, seeds, wall: float, load: str = '',
                   publish_to: str | None = None, docs: str = publish.DOCS) -> list[str]:
  """Reports one dataset's run_dataset result to <outdir>/<dataset>/ (stages.report_dataset);
  publish_to: a docs/results/ folder (e.g. 'cold_start/synthetic') to copy them to."""
  return stages.report_dataset(STUDY, dataset_records, dataset_meta, res, outdir, seeds, wall,
                               load, publish_to, docs)


def main(argv):
  del argv
  xla_cpu.apply_defaults()
  if FLAGS.seeds < 1:
    raise app.UsageError(f'--seeds={FLAGS.seeds} must be >= 1 (>= 3 for seed intervals)')
  for ds in FLAGS.datasets:
    if ds not in SPLITS:
      raise app.UsageError(f'--datasets: {ds!r} is not one of {sorted(SPLITS)} (the cold '
                           'split needs time-ordered interaction logs, data/retrieval.py)')
  settings = {ds: Settings(epochs=FLAGS.epochs, num_steps=FLAGS.num_steps,
                           max_len=FLAGS.max_len, max_warm=FLAGS.max_warm, split=SPLITS[ds])
              for ds in FLAGS.datasets}
  stages.run_datasets('cold_start', FLAGS.datasets, FLAGS.seeds,
                      FLAGS.outdir or os.path.join('runs', 'cold_start'), settings, run_dataset,
                      report_dataset, FLAGS.docs and not FLAGS.outdir and FLAGS.num_steps <= 0)


if __name__ == '__main__':
  define_flags()
  app.run(main)
