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
stage is cached under <outdir>/<dataset>_<key>/; a rerun reads it.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import time

from absl import app, flags
import numpy as np

from experiments import funnel as FN
from experiments import publish, stats
from seqrec_jax import metrics as M
from seqrec_jax import xla_cpu
from seqrec_jax.data import cold_start as C
from seqrec_jax.data import retrieval as D

FLAGS = flags.FLAGS
FILES = ('cold_start.md', 'cold_start.csv', 'cold_start_diffs.csv')
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
  logs = D.synthetic_logs() if dataset == 'synthetic' else D.movielens_logs()
  cs = C.cold_split(logs, **st.split)
  split = cs.split
  wd = os.path.join(outdir, f'{dataset}_{FN._key([dataclasses.asdict(st), logs.fingerprint()])}')  # pylint: disable=protected-access
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
    got = FN._cached(os.path.join(wd, f'scores_{tag}.npz'), run)['scores']  # pylint: disable=protected-access
    scores[name] = {s: got[r] for r, s in enumerate(seeds)}
  mets = {n: {s: C.rank_metrics(v, K) for s, v in by.items()} for n, by in scores.items()}
  return {'dataset': dataset, 'metrics': mets, 'cell': cell, 'users': users,
          'warm_total': len(warm),
          'info': logs.info, 'cutoff': cs.cutoff, 'fields': [f.name for f in fields],
          'seconds': time.time() - t0, 'train': int(split.train.sum()),
          'new_items': int(cs.new_items()[np.unique(split.logs.item)].sum())}


def _seed_mean(by_seed: dict, metric: str) -> np.ndarray:
  return np.mean([by_seed[s][metric] for s in by_seed], 0)


def report(results: list[dict], outdir: str, wall: float, load: str, seeds, st: Settings
           ) -> str:
  """cold_start.md / .csv and cold_start_diffs.csv (see the module docstring)."""
  metrics = (f'hr@{K}', f'ndcg@{K}', 'auc')
  names = {f'hr@{K}': f'HR@{K}', f'ndcg@{K}': f'NDCG@{K}', 'auc': 'AUC'}
  vl = [f'### Cold vs warm: HR@{K} and AUC of the target among {NUM_NEG + 1} candidates '
        '(mean [95% bootstrap interval over test users]; seeds: range of the seed means)', '',
        '| dataset | model | ' + ' | '.join(f'{names[m]} {c}' for m in DIFF_METRICS
                                           for c in SHOWN_CELLS) + ' |',
        '|' + '---|' * (2 + len(DIFF_METRICS) * len(SHOWN_CELLS))]
  csv = ['dataset,model,cell,requests,' + ','.join(
      f'{m},{m}_lo,{m}_hi,{m}_seed_lo,{m}_seed_hi' for m in metrics)]
  for res in results:
    ds, cell, users = res['dataset'], res['cell'], res['users']
    for name, by_seed in res['metrics'].items():
      cells = []
      for m in DIFF_METRICS:
        for ci in range(len(SHOWN_CELLS)):
          on = cell == ci
          v = _seed_mean(by_seed, m)[on]
          lo, hi = stats.boot_interval(stats.user_bootstrap(v, users[on], 2000)[0][:, 0], 0.95)
          seed_m = [by_seed[s][m][on].mean() for s in by_seed]
          spread = (f' (seeds {min(seed_m):.3f}-{max(seed_m):.3f})' if len(by_seed) > 1
                    and name not in BASELINES else '')
          cells.append(f'{v.mean():.3f} [{lo:.3f}, {hi:.3f}]{spread}')
      vl.append(f'| {ds} | {name} | ' + ' | '.join(cells) + ' |')
      for ci, c in enumerate(C.CELLS):
        on = cell == ci
        if not on.any():
          continue
        row = [ds, name, c, str(int(on.sum()))]
        for m in metrics:
          v = _seed_mean(by_seed, m)[on]
          lo, hi = stats.boot_interval(stats.user_bootstrap(v, users[on], 2000)[0][:, 0], 0.95)
          _, slo, shi = M.mean_ci([by_seed[s][m][on].mean() for s in by_seed])
          row += [f'{v.mean():.6f}', f'{lo:.6f}', f'{hi:.6f}', f'{slo:.6f}', f'{shi:.6f}']
        csv.append(','.join(row))
  # Differences: one Holm family over the table.
  comps = []
  for res in results:
    ds, cell, users, mets = res['dataset'], res['cell'], res['users'], res['metrics']
    for a, b in COMPARE:
      if a not in mets or b not in mets:
        continue
      for m in DIFF_METRICS:
        for ci, c in enumerate(SHOWN_CELLS):
          on = cell == ci
          d = _seed_mean(mets[a], m)[on] - _seed_mean(mets[b], m)[on]
          draws, p = stats.user_bootstrap(d, users[on])
          sd = stats.seed_diff({s: mets[a][s][m][on].mean() for s in mets[a]},
                               {s: mets[b][s][m][on].mean() for s in mets[b]})
          comps.append((ds, a, b, m, c, d.mean(), draws[:, 0], p[0], sd))
  rej, lev = stats.holm([x[7] for x in comps])
  dl = ['### Differences, paired per request (mean [bootstrap interval over test users at its '
        'Holm level] seeds [95% t-interval over seeds]; * = excludes 0)',
        '', '| dataset | model minus baseline | metric | ' + ' | '.join(SHOWN_CELLS) + ' |',
        '|---|---|---|' + '---|' * len(SHOWN_CELLS)]
  dcsv = ['dataset,model,baseline,metric,cell,diff,lo,hi,p_boot,holm_rejects,seed_lo,seed_hi,'
          'seed_p']
  for i in range(0, len(comps), len(SHOWN_CELLS)):
    ds, a, b, m = comps[i][:4]
    cells = []
    for j in range(i, i + len(SHOWN_CELLS)):
      x = comps[j]
      lo, hi = stats.boot_interval(x[6], lev[j])
      slo, shi = stats.t_interval(x[8], 0.95)
      ok = rej[j]
      seed_s = (f' seeds [{slo:+.3f}, {shi:+.3f}]' + ('*' if slo > 0 or shi < 0 else '')
                if np.isfinite(slo) else '')
      cells.append(f'{x[5]:+.3f} [{lo:+.3f}, {hi:+.3f}]' + ('*' if ok else '') + seed_s)
      dcsv.append(f'{ds},{a},{b},{m},{x[4]},{x[5]:.6f},{lo:.6f},{hi:.6f},{x[7]:.6g},'
                  f'{int(ok)},{slo:.6f},{shi:.6f},{x[8]["p"]:.6g}')
    dl.append(f'| {ds} | {a} minus {b} | {names[m]} | ' + ' | '.join(cells) + ' |')
  foot = [f'Seeds {list(seeds)}. ' + ' '.join(
      f'{r["dataset"]}: T = {r["cutoff"]}, {r["train"]} train interactions, test requests '
      + ', '.join(f'{c} {int((r["cell"] == i).sum())}' for i, c in enumerate(C.CELLS))
      + f' (warm: a random {int((r["cell"] == 0).sum())} of {r["warm_total"]})'
      + f' ({len(np.unique(r["users"]))} users), {r["new_items"]} new items in the catalogue; '
      f'item content: category' + ''.join(f', {f}' for f in r['fields']) + '.' for r in results),
      '', f'Family: the {len(comps)} differences of this table, Holm step-down '
      '(experiments/stats.py) over the bootstrap p-values; each bootstrap interval is at its '
      'Holm level, so it excludes 0 (*) exactly when Holm rejects. The bootstrap resamples '
      'test users (a user\'s requests together; 2,000 draws for values at 95%, 10,000 for '
      'differences) of the seed-averaged per-request metric. The seed interval (paired t over '
      'the seeds\' means, stats.seed_diff) is the training noise, at 95%, not corrected.', '',
      f'`{_command()}`: {wall / 60:.1f} min wall (this invocation; cached stages are read) '
      f'at load average {load} (2 CPU cores, shared), nice -n 10.']
  with open(os.path.join(outdir, 'cold_start.md'), 'w') as f:
    f.write('\n'.join(vl + [''] + dl + [''] + foot) + '\n')
  with open(os.path.join(outdir, 'cold_start.csv'), 'w') as f:
    f.write('\n'.join(csv) + '\n')
  with open(os.path.join(outdir, 'cold_start_diffs.csv'), 'w') as f:
    f.write('\n'.join(dcsv) + '\n')
  return '\n'.join(vl + [''] + dl + [''] + foot)


def _command() -> str:
  import sys  # pylint: disable=g-import-not-at-top
  return 'bash launch.sh cold_start' + (' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else '')


def main(argv):
  del argv
  xla_cpu.apply_defaults()
  t0 = time.time()
  outdir = FLAGS.outdir or os.path.join('runs', 'cold_start')
  os.makedirs(outdir, exist_ok=True)
  seeds = list(range(FLAGS.seeds))
  if not seeds:
    raise app.UsageError(f'--seeds={FLAGS.seeds} must be >= 1 (>= 3 for seed intervals)')
  for ds in FLAGS.datasets:
    if ds not in SPLITS:
      raise app.UsageError(f'--datasets: {ds!r} is not one of {sorted(SPLITS)} (the cold '
                           'split needs time-ordered interaction logs, data/retrieval.py)')

  def log(msg):
    print(f'[{time.time() - t0:6.0f} s] {msg}', flush=True)
  results = []
  for ds in FLAGS.datasets:
    st = Settings(epochs=FLAGS.epochs, num_steps=FLAGS.num_steps, max_len=FLAGS.max_len,
                  max_warm=FLAGS.max_warm, split=SPLITS[ds])
    results.append(run_dataset(ds, seeds, outdir, log, st))
  load = subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
  load = load.split('load average:')[-1].strip()
  wall = time.time() - t0
  print(report(results, outdir, wall, load, seeds, st))
  print(f'wrote {outdir}/' + ', '.join(FILES) + f' in {wall / 60:.1f} min (load {load})')
  if FLAGS.docs and not FLAGS.outdir and FLAGS.num_steps <= 0:
    print('copied to', publish.publish(outdir, 'cold_start', FILES))


if __name__ == '__main__':
  define_flags()
  app.run(main)
