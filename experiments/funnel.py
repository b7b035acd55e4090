"""The funnel study (issue 21): retrieval channels -> merge -> pre-rank -> DIN -> top-10.

  bash launch.sh funnel                         # 3 seeds, both datasets; runs/funnel -> docs
  python -m experiments.funnel --seeds=2 --num_steps=40 --eval_users=200 --outdir=/tmp/f  # smoke
  bash launch.sh funnel --dataset=movielens --override=data.movielens.path=/data/ml-20m.zip

--dataset (alias of --datasets) takes synthetic and movielens (FITS: the channels need
time-ordered interaction logs, seqrec_jax/data/retrieval.py). --override=key=value (repeatable):
data.movielens.path / .genre choose the MovieLens logs, data.synthetic.* the generator, any
other key (model.*, optim.*, train.*) the pre-ranker's and DIN's config; all enter the stage
cache key, so two sources never share a workdir.

Per dataset (synthetic planted-interest data with its oracle, MovieLens latest-small offline):
  1. logs, leave-last-out by time (seqrec_jax/data/retrieval.py); `--eval_users` test users
     (a fixed random subset) are the requests.
  2. channels (those that have landed: popularity, ItemCF, Swing, UserCF, two-tower) retrieve
     `--k_retrieve` each; items the user already consumed (the whole log before the target)
     are removed; merged with per-channel quotas to `--candidates` (seqrec_jax/retrieval/
     funnel.py). Recall / NDCG / HR at K of each channel and of the merge.
  3. the three-tower pre-ranker (models/prerank.py) and DIN train through
     train.train_and_evaluate as one multi-run group of `--seeds` runs each on CTR data from
     the train part (next interaction vs uniform negatives; a Dataset value, not registered);
     each run's best-valid variables (checkpoint.load_best) then score the candidates.
  4. final top-10 of: retrieval order, pre-rank only, rank only, the funnel (pre-rank to
     `--n_prerank`, DIN orders those), popularity, and on synthetic data the oracle's top-10.
  5. latency of one request per stage (p50 / p99 ms).
  6. only with --hard_from_ranker_rate > 0: two-towers retrained with hard negatives mined from
     DIN (`hard_from_ranker`, retrieval/hard_negatives.py) against the no-hard one
     (<outdir>/<dataset>/hard_negatives.md, hard_diffs.md; docs/funnel.md).
Every stage's result is cached under <outdir>/<dataset>_<key>/ (key = hash of the settings and
of the data; experiments/stages.py), so a rerun or a killed run resumes where it stopped.

Report (experiments/study.py): per dataset, <outdir>/<dataset>/ (published to
docs/results/funnel/<dataset>/) holds cells.csv, one line per (stage, row, seed): stage
retrieval (channels), final (top-10 lists), rerank (policies), hard (two-towers, only with
--hard_from_ranker_rate), each row's metric means over the test users; meta.json (seeds, users,
channels, quotas, latencies, command, wall); bootstrap.csv; the tables retrieval, final,
latency, rerank, hard_negatives (mean ± std over seeds) and the comparison tables final_diffs,
rerank_diffs, hard_diffs (report.Family, Holm within each table). Seeds are model
initialisations and batch orders (the data, the split and the deterministic channels are
fixed), so differences are paired by seed (seed t-interval); the test-set bootstrap resamples
test users for the seed-averaged per-user difference (stats kind 'mean', read from
<workdir>/per_request/<id>.npz). `python -m experiments.recheck funnel` recomputes the tables.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
import time

from absl import app, flags
import numpy as np

from experiments import publish, report, stages, study
from seqrec_jax import xla_cpu
from seqrec_jax.configs import define_override_flag, study_overrides
from seqrec_jax.data import retrieval as D
from seqrec_jax.retrieval import funnel as F
from seqrec_jax.retrieval.popularity import Popularity

FLAGS = flags.FLAGS
KS = (50, 100, 500)
FINAL_K = 10
# Merge quota shares of the channels present (renormalised over those that landed).
QUOTA_WEIGHTS = {'two_tower': 0.3, 'itemcf': 0.2, 'swing': 0.2, 'usercf': 0.2,
                 'popularity': 0.1}


RERANK_N = 50        # DIN's top-N (of the pre-ranker's n_prerank) that the re-ranker reorders
RULE = (1, 3)        # scattering: at most 1 item of a category in any 3 consecutive positions
RERANK_METRICS = (f'hr@{FINAL_K}', f'ndcg@{FINAL_K}', 'ild', 'categories')   # compared
# cells.csv: one line per (stage, row, seed); the metrics each stage reports.
RETRIEVAL_METRICS = tuple(f'{m}@{k}' for k in KS for m in ('recall', 'ndcg'))
FINAL_METRICS = (f'hr@{FINAL_K}', f'ndcg@{FINAL_K}')
RERANK_SHOWN = RERANK_METRICS + ('violations', 'ild_oracle')
HARD_METRICS = ('recall@50', 'recall@500', f'hr@{FINAL_K}')
METRICS = tuple(dict.fromkeys(RETRIEVAL_METRICS + FINAL_METRICS + RERANK_SHOWN + HARD_METRICS))
POPULARITY = 'popularity (top-10)'   # the final lists' baseline
NO_RERANK = 'no re-rank'
NO_HARD = 'no hard negatives'


def define_flags():
  flags.DEFINE_integer('seeds', 3, 'Training seeds of the pre-ranker, DIN and the two-tower.')
  flags.DEFINE_string('outdir', '', 'Output directory (default runs/funnel).')
  flags.DEFINE_integer('num_steps', -1, '> 0: train steps per model (else --epochs).')
  flags.DEFINE_float('epochs', 1.5, 'Epochs of the pre-ranker and DIN.')
  flags.DEFINE_list('datasets', ['synthetic', 'movielens'], 'Datasets, in one table: '
                    + ', '.join(f'{k} ({v})' for k, v in FITS.items()) + '.')
  flags.DEFINE_alias('dataset', 'datasets')
  define_override_flag(' Here data.movielens.path/.genre set the MovieLens logs, '
                       'data.synthetic.* the generator, other keys the rankers\' config.')
  flags.DEFINE_integer('eval_users', 1000, 'Test users (requests) per dataset.')
  flags.DEFINE_integer('max_len', 30, 'History length L of every model.')
  flags.DEFINE_integer('k_retrieve', 500, 'Items each channel returns.')
  flags.DEFINE_integer('candidates', 500, 'Merged candidates handed to the pre-ranker.')
  flags.DEFINE_integer('n_prerank', 100, 'Candidates the pre-ranker passes to DIN.')
  flags.DEFINE_integer('two_tower_steps', 1000, 'Two-tower training steps (batch 512).')
  flags.DEFINE_float('neg_power', 0.0, 'Ranker negatives drawn with probability proportional '
                     'to train count^neg_power (0 = uniform).')
  flags.DEFINE_integer('neg_per_pos', 2, 'Uniform negatives per positive in the CTR data.')
  flags.DEFINE_list('hard_from_ranker_rate', ['0'], 'hard_negative_rate values of two-towers '
                    'retrained with hard negatives mined from DIN (0 = off; writes '
                    'hard_negatives.md/csv in the outdir, nothing of the funnel tables changes).')
  flags.DEFINE_integer('hard_rows', 5000, 'Two-tower training examples that get hard negatives.')
  flags.DEFINE_integer('hard_m', 100, 'Two-tower top-M candidates DIN scores per mined row.')
  flags.DEFINE_integer('hard_h', 2, 'Hard negatives kept per mined row (DIN\'s top-h).')
  flags.DEFINE_bool('hard_funnel', True, 'Also the funnel HR@10 with each hard two-tower.')
  flags.DEFINE_bool('docs', True, 'After a default run (no --outdir / --num_steps) copy the '
                    'tables and the plot to docs/results/funnel/.')


# Datasets the channels can read: time-ordered interaction logs (data/retrieval.py).
FITS = {'synthetic': 'planted interests, with an oracle',
        'movielens': 'ratings as interactions; latest-small offline, any release via '
                     'data.movielens.path'}
NEEDS = ('time-ordered interaction logs (user, item, category, time) for the leave-last-out '
         'retrieval split (seqrec_jax/data/retrieval.py)')
LOGS_KEYS = ('path', 'genre')        # data.movielens.* that movielens_logs reads


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything a dataset's results depend on besides the data (its cache key)."""
  epochs: float = 1.5
  num_steps: int = -1
  eval_users: int = 1000
  max_len: int = 30
  k_retrieve: int = 500
  candidates: int = 500
  n_prerank: int = 100
  neg_per_pos: int = 2
  neg_power: float = 0.0           # ranker negatives ~ count^neg_power (0 = uniform)
  two_tower_steps: int = 1000
  channels: tuple = ()             # () = every channel that has landed; ('popularity',) only
  synthetic: dict = dataclasses.field(default_factory=dict)   # synthetic_logs overrides
  model_overrides: dict = dataclasses.field(default_factory=dict)  # config overrides of both
  logs: dict = dataclasses.field(default_factory=dict)   # movielens_logs kwargs (path, genre)
  latency: bool = True
  hard_rates: tuple = ()           # hard_from_ranker: rates > 0 (not in the cache key)
  hard_rows: int = 5000
  hard_m: int = 100
  hard_h: int = 2
  hard_funnel: bool = True


def with_overrides(st: Settings, dataset: str, override_flags) -> Settings:
  """st with the --override values for `dataset` (typed by configs/default.py; data.<other
  dataset>.* dropped): data.movielens.path/genre -> st.logs, data.synthetic.* -> st.synthetic,
  the rest -> st.model_overrides. Fails on a dataset the channels cannot read."""
  ov = study_overrides('funnel', dataset, override_flags, 'default.py', FITS, NEEDS)
  logs, syn, model = dict(st.logs), dict(st.synthetic), dict(st.model_overrides)
  for k, v in ov.items():
    if k.startswith('data.movielens.'):
      if k.split('.', 2)[2] not in LOGS_KEYS:
        raise app.UsageError(f'--override={k}: the funnel reads MovieLens through '
                             f'data/retrieval.py movielens_logs, which takes {LOGS_KEYS} only')
      logs[k.split('.', 2)[2]] = v
    elif k.startswith('data.synthetic.'):
      syn[k.split('.', 2)[2]] = v
    else:
      model[k] = v
  return dataclasses.replace(st, logs=logs, synthetic=syn, model_overrides=model)


# ----------------------------------------------------------------------------- channels

def build_channels(split: D.TimeSplit, ex: dict, seeds, log, st: Settings, wd: str
                   ) -> tuple[dict, dict]:
  """{name: factory} of every channel that has landed, and notes. A factory returns the channel
  (or {seed: channel} for trained ones) and is called only when a stage's cache is missing."""
  lg, tr = split.logs, split.train
  user, item = lg.user[tr], lg.item[tr]
  facs: dict = {'popularity': lambda: Popularity(ex['item_count'])}
  notes = {'popularity': 'train counts'}
  if st.channels == ('popularity',):
    return _memo(facs), notes
  for name, mod, cls in (('itemcf', 'itemcf', 'ItemCF'), ('swing', 'swing', 'Swing'),
                         ('usercf', 'usercf', 'UserCF')):
    try:
      fit = getattr(__import__(f'seqrec_jax.retrieval.{mod}', fromlist=[cls]), cls).fit
    except (ImportError, AttributeError) as e:
      notes[name] = f'not available ({type(e).__name__})'
      continue
    facs[name] = lambda fit=fit: fit(user, item, lg.num_users, lg.num_items)
    notes[name] = 'R2 defaults'
  steps = st.num_steps if st.num_steps > 0 else st.two_tower_steps

  def two_tower():
    return two_tower_channels(split, seeds, os.path.join(wd, 'two_tower'), steps, log, st)
  facs['two_tower'] = two_tower
  notes['two_tower'] = f'in-batch softmax + log-Q, {steps} steps of 512'
  for name in facs:
    log(f'  channel {name}: {notes[name]}')
  return _memo(facs, log), notes


def two_tower_channels(split: D.TimeSplit, seeds, twd: str, steps: int, log, st: Settings,
                       hard_item=None, rate: float = 0.0) -> dict:
  """{seed: TwoTowerChannel}: the two-tower task (configs/two_tower.py: in-batch softmax with
  log-Q, batch 512) trained as one group of len(seeds) runs in twd by train.train_and_evaluate
  (a finished workdir is read back), each run's best-valid state (channels)."""
  from seqrec_jax.configs import load_config  # pylint: disable=g-import-not-at-top
  from seqrec_jax.retrieval.two_tower import channels  # pylint: disable=g-import-not-at-top
  from seqrec_jax.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  ds = D.next_item_dataset(split, st.max_len, hard_item=hard_item)
  o = {'data.name': ds.name, 'data.batch_size': 512, 'train.num_steps': steps,
       'train.runs': len(seeds), 'train.run_seeds': tuple(seeds),
       'train.eval_every': max(steps // 4, 1), 'train.checkpoint_every': max(steps // 4, 1),
       'train.two_tower.hard_negative_rate': float(rate)}
  t = time.time()
  train_and_evaluate(load_config('two_tower.py', o), twd, ds)
  log(f'  two_tower (hard rate {rate:g}): {len(seeds)} seeds x {steps} steps in '
      f'{time.time() - t:.0f} s')
  return dict(zip(seeds, channels(twd, ds)))


def _memo(facs: dict, log=None) -> dict:
  """Factories called at most once each (the build time is logged)."""
  out = {}
  for name, fn in facs.items():
    box: list = []

    def once(fn=fn, box=box, name=name):
      if not box:
        t = time.time()
        box.append(fn())
        if log is not None:
          log(f'  built {name} in {time.time() - t:.1f} s')
      return box[0]
    out[name] = once
  return out


def _seen_filter(split: D.TimeSplit, users: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
  """Removes items each user consumed before the test target (whole log), keeps the first k."""
  lg = split.logs
  before = split.part != D.TEST
  seen = np.unique(lg.user[before].astype(np.int64) * lg.num_items + lg.item[before])
  key = users[:, None].astype(np.int64) * lg.num_items + ids
  keep = (ids > 0) & ~np.isin(key, seen)
  pos = np.argsort(~keep, axis=1, kind='stable')[:, :k]
  return np.where(np.take_along_axis(keep, pos, 1), np.take_along_axis(ids, pos, 1), 0)


def channel_lists(split, q, chans, seeds, wd, log, st: Settings
                  ) -> dict[str, dict[int, np.ndarray]]:
  """{channel: {seed: ids [E, k_retrieve]}} (deterministic channels: the same list for every
  seed), cached per channel and seed; a channel is built only when a list is missing."""
  k, margin, out = st.k_retrieve, 200, {}
  for name, fac in chans.items():
    res = {}
    for s in seeds:
      path = os.path.join(wd, 'channels', f'{name}_s{s}_k{k}.npz')

      def run(fac=fac, s=s):
        ch = fac()
        c = ch[s] if isinstance(ch, dict) else ch
        t = time.time()
        ids, _ = c.retrieve(q['hist_item'], k + margin, user_id=q['user_id'])
        return {'ids': _seen_filter(split, q['user_id'], np.asarray(ids), k),
                'seconds': np.float64(time.time() - t)}
      got = stages.cached(path, run)
      res[s] = got['ids']
    out[name] = res
    log(f'  retrieved {name}: {res[seeds[0]].shape} ({float(got["seconds"]):.1f} s per batch)')
  return out


# ----------------------------------------------------------------------------- ranking models

def train_rankers(split, q, seeds, wd, dataset, log, st: Settings) -> dict:
  """Trains the pre-ranker and DIN through train.train_and_evaluate, each as one multi-run
  group of len(seeds) runs, once per workdir (the candidates do not enter training).
  Returns {model: (workdir, DataSpec)} for `score`."""
  # The test split at training time is the valid targets' rows (the candidates are scored
  # afterwards from the best checkpoint); nothing of the test targets is in this dataset.
  vq = D.queries(split, 'valid', st.max_len)
  name = f'funnel_{dataset}_{os.path.basename(wd)}'
  ds = D.ctr_dataset(split, st.max_len, D.candidate_rows(split, vq, vq['target'][:, None]),
                     st.neg_per_pos, seed=0, name=name, neg_power=st.neg_power)
  out = {}
  for model in ('prerank', 'din'):
    mwd = os.path.join(wd, model)
    train_group(ds, model, mwd, seeds, st.epochs, st.num_steps, st.model_overrides, log)
    out[model] = (mwd, ds.spec)
  return out


def train_group(ds, model: str, mwd: str, seeds, epochs: float, num_steps: int,
                overrides: dict, log) -> None:
  """Trains config.model.name=`model` on the Dataset value `ds` as one multi-run group of
  len(seeds) runs in mwd (train.train_and_evaluate; batch 512, Adam 2e-3, eval three times),
  once: a finished group leaves funnel_done.json and is not retrained."""
  from seqrec_jax.configs import load_config  # pylint: disable=g-import-not-at-top
  from seqrec_jax.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  n_train = len(ds.splits['train'])
  o = {'data.name': ds.name, 'model.name': model, 'data.batch_size': 512,
       'data.eval_batch_size': 8192, 'optim.learning_rate': 2e-3,
       'train.num_epochs': epochs, 'train.runs': len(seeds),
       'train.run_seeds': tuple(seeds), 'train.progress': False, 'train.log_every': 100,
       'train.checkpoint_every': 10**9}
  steps = num_steps if num_steps > 0 else int(epochs * n_train / 512)
  if num_steps > 0:
    o['train.num_steps'] = num_steps
  o['train.eval_every'] = max(steps // 3, 1)
  o.update(overrides)
  config = load_config('default.py', o)
  done = os.path.join(mwd, 'funnel_done.json')
  if not os.path.exists(done):
    t = time.time()
    summary = train_and_evaluate(config, mwd, ds)
    with open(done, 'w') as f:
      json.dump({'seconds': time.time() - t, 'overrides': o, 'train_rows': n_train,
                 'valid_auc': [r.get('eval/valid/auc') for r in summary['runs']]}, f,
                default=str)
    log(f'  {model}: trained {len(seeds)} runs in {time.time() - t:.0f} s')


def score(mwd: str, spec, rows_of_run: list[dict]) -> list[np.ndarray]:
  """Run r of the group's best-valid checkpoint (checkpoint.load_best) scores rows_of_run[r]:
  [N_r] each; spec: the DataSpec it trained on."""
  import jax  # pylint: disable=g-import-not-at-top
  from seqrec_jax import evaluate, models, precision, steps  # pylint: disable=g-import-not-at-top
  from seqrec_jax.checkpoint import load_best  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data.pipeline import ArraySplit  # pylint: disable=g-import-not-at-top
  best = load_best(mwd)
  cfg = best.config
  apply = precision.cast_apply(models.build_model(best.model_config, spec).apply,
                               cfg.model.compute_dtype)
  f = jax.jit(functools.partial(steps.predict, apply, tasks=spec.tasks))
  out = []
  for r, rows in enumerate(rows_of_run):       # one run's params: no work for the others
    preds, _, _ = evaluate.predict(f, best.variables[r], ArraySplit(rows),
                                   cfg.data.eval_batch_size, lambda b: b)
    out.append(preds[:, 0])
  return out


def candidate_scores(split, q, cand_by_seed, seeds, models_of, wd, log) -> dict:
  """{'prerank': {seed: scores [E, N]}, 'din': ...}: run s of each group scores the
  candidates of seed s; cached per candidate set."""
  blocks = [cand_by_seed[s] for s in seeds]
  ckey = stages.key([hashlib.sha1(np.stack(blocks).tobytes()).hexdigest()])
  E, N = blocks[0].shape
  out = {}
  for model, (mwd, spec) in models_of.items():
    def run(mwd=mwd, spec=spec, model=model):
      t = time.time()
      p = score(mwd, spec, [D.candidate_rows(split, q, b) for b in blocks])
      log(f'  {model}: scored {len(blocks)} x {E} x {N} candidates in {time.time() - t:.0f} s')
      return {'scores': np.stack([x.reshape(E, N) for x in p])}
    p = stages.cached(os.path.join(wd, f'scores_{model}_{ckey}.npz'), run)['scores']
    out[model] = {s: p[r] for r, s in enumerate(seeds)}
  return out


# ----------------------------------------------------------------------------- latency

def latency(split, q, chans, merged, wd, st: Settings) -> dict[str, dict[str, float]]:
  """p50 / p99 ms of one request through each stage (models with initialised weights: the
  cost does not depend on their values)."""
  import jax  # pylint: disable=g-import-not-at-top
  from seqrec_jax import models  # pylint: disable=g-import-not-at-top
  from seqrec_jax.configs import default  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data.features import DataSpec  # pylint: disable=g-import-not-at-top
  path = os.path.join(wd, f'latency_{"_".join(sorted(chans))}.json')
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  one = {k: v[:1] for k, v in q.items()}
  out = {}
  for name, fac in chans.items():
    ch = fac()
    c = next(iter(ch.values())) if isinstance(ch, dict) else ch
    out[f'retrieve: {name} (k={st.k_retrieve})'] = F.request_latency(
        lambda c=c: c.retrieve(one['hist_item'], st.k_retrieve, user_id=one['user_id']),
        reps=30)
  if merged and len(merged) > 1:
    lists = {n: chans[n]() for n in merged}
    lists = {n: (c[next(iter(c))] if isinstance(c, dict) else c).retrieve(
        one['hist_item'], st.k_retrieve, user_id=one['user_id']) for n, c in lists.items()}
    quotas = F.quotas_for(merged, st.candidates, QUOTA_WEIGHTS)
    out[f'merge {len(merged)} channels to {st.candidates}'] = F.request_latency(
        lambda: F.merge(lists, quotas, st.candidates), reps=30)
  lg = split.logs
  spec = DataSpec(lg.num_users, lg.num_items, lg.num_cates, st.max_len)
  cand = np.arange(1, st.candidates + 1)[None, :] % (lg.num_items - 1) + 1
  for model, n in (('prerank', st.candidates), ('din', st.n_prerank)):
    cfg = default.get_config().model
    cfg.name = model
    m = models.build_model(cfg, spec)
    rows = D.candidate_rows(split, one, cand[:, :n])
    rows.pop('label')
    variables = m.init(jax.random.key(0), rows, train=False)
    f = jax.jit(lambda v, b, m=m: m.apply(v, b, train=False))
    out[f'{model}: score {n} candidates'] = F.request_latency(lambda f=f, v=variables, b=rows:
                                                              f(v, b), reps=50)
  with open(path, 'w') as f:
    json.dump(out, f)
  return out


# ----------------------------------------------------------------------------- one dataset

def run_dataset(dataset: str, seeds, outdir: str, log, st: Settings) -> dict:
  t0 = time.time()
  logs = (D.synthetic_logs(**st.synthetic) if dataset == 'synthetic'
          else D.movielens_logs(**st.logs))
  split = D.leave_last_out(logs)
  rng = np.random.default_rng(0)
  users = np.sort(rng.choice(split.eval_users, min(st.eval_users, len(split.eval_users)),
                             replace=False))
  settings = {k: v for k, v in dataclasses.asdict(st).items()
              if k not in ('channels', 'latency') and not k.startswith('hard_')}
  if not settings['neg_power']:     # uniform: the key runs made before the option existed had
    settings.pop('neg_power')
  if not settings['logs']:          # default logs: the key runs made before --override had
    settings.pop('logs')
  wd = os.path.join(outdir, f'{dataset}_{stages.key([settings, logs.fingerprint()])}')
  os.makedirs(wd, exist_ok=True)
  log(f'[{dataset}] {logs.info}; {len(users)} test users; workdir {wd}')
  q = D.queries(split, 'test', st.max_len, users)
  ex = D.retrieval_examples(split, st.max_len)
  chans, notes = build_channels(split, ex, seeds, log, st, wd)
  lists = channel_lists(split, q, chans, seeds, wd, log, st)
  # Merge order = quota share (merge_channels takes channels in order: the merged list starts
  # with the largest channel's best items).
  names = sorted(lists, key=lambda n: -QUOTA_WEIGHTS.get(n, 0.0))
  merged = names
  try:
    from seqrec_jax.retrieval import merge as _  # noqa: F401  pylint: disable=g-import-not-at-top
  except ImportError:   # R2's merge not landed: hand over the best-ranked single channel
    merged = ['two_tower' if 'two_tower' in names else 'popularity']
    notes['merge'] = f'retrieval/merge.py not available: candidates = {merged[0]} alone'
  quotas = F.quotas_for(merged, st.candidates, QUOTA_WEIGHTS)
  rank = -np.arange(st.k_retrieve, dtype=np.float32)[None].repeat(len(users), 0)
  cand = {s: F.merge({n: (lists[n][s], rank) for n in merged}, quotas, st.candidates)
          for s in seeds}
  models_of = train_rankers(split, q, seeds, wd, dataset, log, st)
  scores = candidate_scores(split, q, cand, seeds, models_of, wd, log)
  target = q['target']
  # Per-user metric arrays: rows[(group, name)][seed] = {metric: [E]}
  retr = {n: {s: F.list_metrics(lists[n][s], target, KS) for s in seeds} for n in names}
  retr['merged'] = {s: F.list_metrics(cand[s], target, KS) for s in seeds}
  final = {}
  for s in seeds:
    for n, ids in F.stage_lists(cand[s], scores['prerank'][s], scores['din'][s],
                                st.n_prerank, FINAL_K).items():
      final.setdefault(n, {})[s] = F.list_metrics(ids, target, (FINAL_K,))
    final.setdefault(POPULARITY, {})[s] = F.list_metrics(
        lists['popularity'][s][:, :FINAL_K], target, (FINAL_K,))
  if logs.oracle is not None:
    final.update(oracle_rows(split, q, users, seeds))
  rerank = rerank_stage(split, q, cand, scores, models_of, seeds, st)
  lat = {} if not st.latency else latency(split, q, chans, merged, wd, st)
  hard = {} if not st.hard_rates else hard_from_ranker(
      split, q, ex, merged, quotas, seeds, models_of, wd, log, st)
  return {'hard': hard, 'dataset': dataset, 'retrieval': retr, 'final': final, 'latency': lat,
          'rerank': rerank, 'workdir': wd, 'user_ids': np.asarray(q['user_id']),
          'notes': notes, 'quotas': quotas, 'users': len(users),
          'seconds': time.time() - t0, 'info': logs.info,
          'hard_settings': {'rows': st.hard_rows, 'm': st.hard_m, 'h': st.hard_h},
          'cold_targets': float(np.mean(split.item_count()[target] == 0))}


# ----------------------------------------------------------------------------- re-rank stage

def _policies():
  from seqrec_jax.rerank.stage import Policy  # pylint: disable=g-import-not-at-top
  return ((Policy('none'),) + tuple(Policy('mmr', lam) for lam in (0.9, 0.7, 0.5))
          + tuple(Policy('dpp', th) for th in (0.9, 0.7, 0.5))
          + tuple(Policy(m, p, scatter=True) for m, p in (('none', 1.0), ('mmr', 0.7),
                                                          ('dpp', 0.7))))


def embedding_table(params, name: str) -> np.ndarray:
  """The one [vocab, d] leaf at .../<name>/embedding of a params tree (host arrays)."""
  found = []

  def walk(t, path):
    if isinstance(t, dict) or hasattr(t, 'items'):
      for k, v in t.items():
        walk(v, path + (k,))
    elif path[-2:] == (name, 'embedding'):
      found.append(np.asarray(t))
  walk(params, ())
  if len(found) != 1:
    raise ValueError(f'embedding_table: {len(found)} tables named {name!r} in the params '
                     '(expected one: the ranker\'s Embedder)')
  return found[0]


def rerank_lists(ids, din_prob, item_vec, cate_of_item, target, policies, oracle_vec=None
                 ) -> dict:
  """The re-rank stage on the ranker's ordered list ids [E, N] (0 = empty) with its
  probabilities din_prob [E, N]: relevance = the logit min-max scaled per request, similarity
  and ILD from item_vec [I, D]. -> {policy name: {metric: [E]}}: hr@10, ndcg@10, ild (on
  item_vec), categories (distinct in the top 10), violations of RULE (and ild_oracle on
  oracle_vec [I, D'] when given)."""
  from seqrec_jax.rerank import metrics as RKM  # pylint: disable=g-import-not-at-top
  from seqrec_jax.rerank import scatter as SC  # pylint: disable=g-import-not-at-top
  from seqrec_jax.rerank import stage as RS  # pylint: disable=g-import-not-at-top
  valid = ids > 0
  p = np.clip(np.asarray(din_prob, np.float64), 1e-7, 1 - 1e-7)
  rel = RS.scale_relevance(np.log(p) - np.log1p(-p), valid)
  emb, cates = item_vec[ids], cate_of_item[ids]
  out = {}
  for pol in policies:
    picks = RS.rerank(pol, rel, emb, cates, FINAL_K, RULE, valid=valid)
    on = picks >= 0
    at = np.maximum(picks, 0)
    m = F.list_metrics(np.where(on, np.take_along_axis(ids, at, 1), 0), target, (FINAL_K,))
    m['ild'] = np.asarray(RKM.intra_list_distance(emb, picks))
    m['categories'] = np.asarray(RKM.coverage(cates, picks)) * on.sum(1)
    m['violations'] = np.asarray(SC.violations(np.take_along_axis(cates, at, 1), *RULE,
                                               valid=on)).astype(np.float64)
    if oracle_vec is not None:
      m['ild_oracle'] = np.asarray(RKM.intra_list_distance(oracle_vec[ids], picks))
    out[pol.name] = {k: v for k, v in m.items() if k != f'recall@{FINAL_K}'}
  return out


def rerank_stage(split, q, cand, scores, models_of, seeds, st: Settings) -> dict:
  """{policy name: {seed: {metric: [E]}}}: seed s's funnel list (the pre-ranker's n_prerank,
  DIN's top RERANK_N) re-ranked by each policy; item vectors = run s's DIN embedding
  [e_item, e_cate]. Reads the cached scores and DIN's best checkpoint: nothing is trained."""
  from seqrec_jax.checkpoint import load_best  # pylint: disable=g-import-not-at-top
  best = load_best(models_of['din'][0])
  lg = split.logs
  orc = lg.oracle.item_vec if lg.oracle is not None else None
  out: dict = {}
  for r, s in enumerate(seeds):
    prm = best.variables[r]['params']
    vec = np.concatenate([embedding_table(prm, 'item'),
                          embedding_table(prm, 'cate')[lg.cate_of_item]], 1)
    ids, prob = F.funnel_list(cand[s], scores['prerank'][s], scores['din'][s], st.n_prerank,
                              min(RERANK_N, st.n_prerank))
    for name, m in rerank_lists(ids, prob, vec, lg.cate_of_item, q['target'], _policies(),
                                orc).items():
      out.setdefault(name, {})[s] = m
  return out


def hard_from_ranker(split, q, ex, merged, quotas, seeds, models_of, wd, log, st: Settings
                     ) -> dict:
  """Two-towers retrained with hard negatives mined from DIN (retrieval/hard_negatives.py):
  the no-hard two-tower (same config as the channel) is trained for all seeds; its seed-0
  model retrieves st.hard_m items (history excluded) for st.hard_rows training examples, DIN's
  run-0 best checkpoint scores them (`score`), the user's train clicks are dropped and DIN's
  top st.hard_h stay. One hard_item set for every seed and rate. Returns {name: {'recall':
  {seed: metrics}, 'final': {seed: metrics} (funnel top-10, if st.hard_funnel)}}."""
  from seqrec_jax.retrieval import hard_negatives as HN  # pylint: disable=g-import-not-at-top
  steps = st.num_steps if st.num_steps > 0 else st.two_tower_steps
  tag = f'hard_n{st.hard_rows}_m{st.hard_m}_h{st.hard_h}'
  k, lg, tr = st.k_retrieve, split.logs, split.train
  box: dict = {}
  # Rate 0 is the funnel's own two-tower channel (same config and data): its workdir.
  twd = lambda rate: os.path.join(wd, 'two_tower' if rate == 0 else f'two_tower_{tag}_r{rate:g}')

  def lists_of(rate):
    def run():
      chans = two_tower_channels(split, seeds, twd(rate), steps, log, st,
                                 mined() if rate > 0 else None, rate)
      if rate == 0:
        box['base'] = chans
      out = {}
      for s in seeds:
        ids, _ = chans[s].retrieve(q['hist_item'], k + 200, user_id=q['user_id'])
        out[f's{s}'] = _seen_filter(split, q['user_id'], np.asarray(ids), k)
      return out
    got = stages.cached(os.path.join(wd, 'channels', f'two_tower_{tag}_r{rate:g}_k{k}.npz'),
                        run)
    return {s: got[f's{s}'] for s in seeds}

  def mined():
    def run():
      if 'base' not in box:
        box['base'] = two_tower_channels(split, seeds, twd(0.0), steps, log, st)
      ch = box['base'][seeds[0]]
      mwd, spec = models_of['din']
      rows = HN.subsample(len(ex['item_id']), st.hard_rows)
      t = time.time()
      hard = HN.mine_from_ranker(
          ex, rows, lambda h, u, m: ch.retrieve(h, m, user_id=u)[0],
          lambda sub, cand: score(mwd, spec, [D.candidate_rows(split, sub, cand)])[0],
          m=st.hard_m, h=st.hard_h, pos_user=lg.user[tr], pos_item=lg.item[tr])
      log(f'  mined {len(rows)} of {len(hard)} examples x {st.hard_h} hard negatives from '
          f'DIN over two-tower top-{st.hard_m} in {time.time() - t:.0f} s')
      return {'hard_item': hard}
    return stages.cached(os.path.join(wd, f'{tag}.npz'), run)['hard_item']

  out = {}
  for rate in (0.0,) + tuple(st.hard_rates):
    lists = lists_of(rate)
    row = {'recall': {s: F.list_metrics(lists[s], q['target'], (50, 500)) for s in seeds}}
    if st.hard_funnel:
      rank = -np.arange(k, dtype=np.float32)[None].repeat(len(q['target']), 0)
      cand = {}
      for s in seeds:
        got = {n: (lists[s] if n == 'two_tower' else stages.cached(
            os.path.join(wd, 'channels', f'{n}_s{s}_k{k}.npz'), None)['ids'], rank)
               for n in merged}
        cand[s] = F.merge(got, quotas, st.candidates)
      sc = candidate_scores(split, q, cand, seeds, models_of, wd, log)
      row['final'] = {s: F.list_metrics(F.stage_lists(cand[s], sc['prerank'][s], sc['din'][s],
                                                      st.n_prerank, FINAL_K)['funnel'],
                                         q['target'], (FINAL_K,)) for s in seeds}
    out[NO_HARD if rate == 0 else f'hard from DIN, rate {rate:g}'] = row
  return out


def oracle_rows(split, q, users, seeds) -> dict:
  """Top-10 of the generator's truth over the unseen catalogue: the next-behaviour oracle
  (interests and weights) and synthetic.py's click-model oracle p(click | item, history)."""
  orc, lg = split.logs.oracle, split.logs
  before = split.part != D.TEST
  seen = np.zeros((len(users), lg.num_items), bool)
  idx = np.searchsorted(users, lg.user[before])
  ok = (idx < len(users)) & (users[np.minimum(idx, len(users) - 1)] == lg.user[before])
  seen[idx[ok], lg.item[before][ok]] = True
  out = {}
  for name, p in (('oracle: next-behaviour distribution', orc.next_item_prob(users)),
                  ('oracle: click model of synthetic.py', orc.click_prob(q['hist_item']))):
    p = np.where(seen, -np.inf, p)
    p[:, 0] = -np.inf
    ids = np.argsort(-p, axis=1, kind='stable')[:, :FINAL_K]
    m = F.list_metrics(ids, q['target'], (FINAL_K,))
    out[name] = {s: m for s in seeds}
  return out


# ----------------------------------------------------------------------------- report

def _command() -> str:
  args = sys.argv[1:]
  return 'bash launch.sh funnel' + (' ' + ' '.join(args) if args else '')


def dataset_records(res: dict, report_dir: str) -> list[dict]:
  """One study record per (stage, row, seed) of run_dataset's result: group {'stage':
  retrieval | final | rerank | hard, 'method': the row}, summary = the mean over test users of
  each metric; the per-user values are saved in the dataset's stage cache
  (<workdir>/per_request/<id>.npz), which the bootstrap reads."""
  users, out = res['user_ids'], []

  def add(stage: str, name: str, seed: int, values: dict) -> None:
    group = {'stage': stage, 'method': name}
    path = os.path.join(res['workdir'], 'per_request',
                        f'{stages.slug(stage)}_{stages.slug(name)}_s{seed}.npz')
    stages.save_values(path, users, values)
    out.append(stages.record(group, seed, values, path, report_dir))
  for stage, mets in (('retrieval', RETRIEVAL_METRICS), ('final', FINAL_METRICS),
                      ('rerank', RERANK_SHOWN)):
    for name, by_seed in res[stage].items():
      for s, m in by_seed.items():
        add(stage, name, s, {k: m[k] for k in mets if k in m})
  for name, row in (res.get('hard') or {}).items():
    for s in row['recall']:
      vals = {k: row['recall'][s][k] for k in HARD_METRICS if k in row['recall'][s]}
      if 'final' in row:
        vals[f'hr@{FINAL_K}'] = row['final'][s][f'hr@{FINAL_K}']
      add('hard', name, s, vals)
  stages.check_ids(out)
  return out


def dataset_meta(res: dict, seeds, wall: float, load: str) -> dict:
  """meta.json of one dataset: what the tables' notes print (lists keep their order: the
  file is written with sorted keys)."""
  meta = {'seeds': list(seeds), 'users': res['users'], 'cold_targets': res['cold_targets'],
          'channels': [f'{k} {v}' for k, v in res['notes'].items()],
          'quotas': [f'{k} {v}' for k, v in res['quotas'].items()],
          'latency': [[k, v['p50_ms'], v['p99_ms']] for k, v in res['latency'].items()],
          'command': _command(), 'wall_seconds': round(wall, 1), 'load': load}
  if res.get('hard'):
    meta['hard'] = res['hard_settings']
  return meta


def _stage(cells, stage: str) -> list[dict]:
  return [c for c in cells if c['stage'] == stage]


def _methods(cells, stage: str) -> list[str]:
  return list(dict.fromkeys(c['method'] for c in _stage(cells, stage)))


def _method(c: dict) -> str:
  return c['method']


def _inputs(row, rec: dict, metric: str, outdir: str):
  """Family.inputs: the record's per-user values of metric (stats kind 'mean': test users
  resampled, the same resample for both rows of a paired seed)."""
  del row
  return stages.mean_inputs(rec, metric, outdir)


def _family(name: str, title: str, stage: str, pairs, metrics) -> report.Family:
  """A Holm family over the rows of one stage, labelled by method, paired by seed."""
  return report.Family(name, title, pairs, metrics, _method,
                       expand=functools.partial(_stage, stage=stage), inputs=_inputs)


def families(cells, dataset: str = '') -> list[report.Family]:
  """final_diffs: every final list against popularity and the funnel against every other list
  (HR@10); rerank_diffs: every re-rank policy against no re-rank (RERANK_METRICS); hard_diffs
  (only with --hard_from_ranker_rate): each hard two-tower against the no-hard one. One Holm
  family per table; paired by seed; the bootstrap resamples test users."""
  del dataset
  fams = []
  final = _methods(cells, 'final')
  if POPULARITY in final:
    pairs = [(n, POPULARITY) for n in final if n != POPULARITY]
    if 'funnel' in final:
      pairs += [('funnel', n) for n in final if n not in ('funnel', POPULARITY)]
    fams.append(_family('final_diffs', f'Final top-{FINAL_K}: each list minus popularity\'s, '
                        'and the funnel minus each other list (HR@10 of the held-out next item)',
                        'final', pairs, (f'hr@{FINAL_K}',)))
  rerank = _methods(cells, 'rerank')
  if NO_RERANK in rerank:
    fams.append(_family('rerank_diffs', f'Re-rank stage: each policy minus no re-rank (DIN\'s '
                        f'top {RERANK_N} re-ranked to the top {FINAL_K})', 'rerank',
                        [(p, NO_RERANK) for p in rerank if p != NO_RERANK], RERANK_METRICS))
  hard = _methods(cells, 'hard')
  if NO_HARD in hard:
    mets = [m for m in HARD_METRICS if any(np.isfinite(c[m]) for c in _stage(cells, 'hard'))]
    fams.append(_family('hard_diffs', 'Two-towers retrained with hard negatives mined from '
                        'DIN, minus the no-hard two-tower (recall of the channel; HR@10 of the '
                        'funnel)', 'hard', [(n, NO_HARD) for n in hard if n != NO_HARD], mets))
  return fams


def _name(metric: str) -> str:
  return {'ild': f'ILD@{FINAL_K}', 'categories': f'categories@{FINAL_K}',
          'violations': f'violations@{FINAL_K}',
          'ild_oracle': f'ILD@{FINAL_K} (oracle vectors)'}.get(
              metric, metric.replace('ndcg', 'NDCG').replace('hr@', 'HR@'))


def _seeds_note(ctx: dict) -> str:
  return (f'Mean ± std over the seeds {ctx["seeds"]} (rows without training, the same list '
          f'for every seed: ± 0); {ctx["users"]} test users (a held-out next item each).')


def tables(cells, results, outdir: str, ctx: dict) -> list[str]:
  """retrieval, final, latency (from meta.json), rerank and, with hard rows, hard_negatives:
  mean ± std over seeds from cells.csv; the differences are the families' tables."""
  del results
  seeds = ('seeds', 'n_seeds')
  rows = report.aggregate_cells(_stage(cells, 'retrieval'), ['method'], RETRIEVAL_METRICS)
  report.write_table(
      rows, [('channel', 'method')] + [(_name(m), m) for m in RETRIEVAL_METRICS] + [seeds],
      outdir, basename='retrieval', title=f'Retrieval ({ctx["dataset"]}): recall / NDCG at K '
      'of the held-out next item', notes=_seeds_note(ctx) + ' Channels: '
      + '; '.join(ctx['channels']) + '. Merged: the channels\' lists merged with quotas '
      + ', '.join(ctx['quotas']) + '.')
  rows = report.aggregate_cells(_stage(cells, 'final'), ['method'], FINAL_METRICS)
  report.write_table(
      rows, [('list', 'method')] + [(_name(m), m) for m in FINAL_METRICS] + [seeds], outdir,
      basename='final', title=f'Final top-{FINAL_K} ({ctx["dataset"]}): HR@{FINAL_K} / '
      f'NDCG@{FINAL_K} of each use of the stages', notes=_seeds_note(ctx)
      + f' Cold targets (no train interaction): {ctx["cold_targets"]:.1%}. Differences: '
      'final_diffs.md.\n\n'
      f'`{ctx["command"]}`: {ctx["wall_seconds"] / 60:.1f} min wall for this dataset (this '
      'invocation; cached stages are read, not rerun) at load average '
      f'{ctx["load"]} (2 CPU cores, shared).')
  names = ['retrieval.md', 'retrieval.csv', 'final.md', 'final.csv']
  if ctx['latency']:
    rows = [{'stage': s, 'p50': f'{a:.2f}', 'p99': f'{b:.2f}'} for s, a, b in ctx['latency']]
    report.write_table(rows, [('stage', 'stage'), ('p50 ms', 'p50'), ('p99 ms', 'p99')],
                       outdir, basename='latency', title=f'Latency of one request per stage '
                       f'({ctx["dataset"]}; ms, p50 / p99 over repeated calls)')
    names += ['latency.md', 'latency.csv']
  if _stage(cells, 'rerank'):
    rows = report.aggregate_cells(_stage(cells, 'rerank'), ['method'], RERANK_SHOWN)
    report.write_table(
        rows, [('policy', 'method')] + [(_name(m), m) for m in RERANK_SHOWN] + [seeds], outdir,
        basename='rerank', title=f'Re-rank stage ({ctx["dataset"]}): DIN\'s top {RERANK_N} '
        f're-ranked to the top {FINAL_K}', notes=_seeds_note(ctx) + RERANK_NOTE
        + ' Differences: rerank_diffs.md.')
    names += ['rerank.md', 'rerank.csv']
  if _stage(cells, 'hard'):
    h = ctx['hard']
    rows = report.aggregate_cells(_stage(cells, 'hard'), ['method'], HARD_METRICS)
    report.write_table(
        rows, [('two-tower', 'method'), ('recall@50', 'recall@50'),
               ('recall@500', 'recall@500'), (f'funnel HR@{FINAL_K}', f'hr@{FINAL_K}'), seeds],
        outdir, basename='hard_negatives', title=f'Two-tower hard negatives mined from DIN '
        f'({ctx["dataset"]})', notes=_seeds_note(ctx) + f' {h["rows"]} training examples mined '
        f'(two-tower seed 0 top-{h["m"]}, history excluded; DIN run 0 scores; the user\'s train '
        f'clicks dropped; DIN\'s top {h["h"]} kept), the same hard_item for every seed and '
        'rate. Differences: hard_diffs.md.')
    names += ['hard_negatives.md', 'hard_negatives.csv']
  return names


RERANK_NOTE = (
    ' The list re-ranked is the funnel\'s: the pre-ranker keeps its top of the candidates, DIN '
    f'orders those, its top {RERANK_N} go to the re-ranker (seqrec_jax/rerank/stage.py). '
    'Relevance = DIN\'s logit min-max scaled to [0, 1] per request; similarity and ILD (mean '
    f'1 - cosine over the pairs of the top {FINAL_K}) from each seed\'s DIN item vector '
    '[e_item, e_cate]: MMR and DPP optimise the same embedding ILD measures, so ILD (oracle '
    'vectors: the generator\'s item vectors, synthetic only) and categories (distinct '
    f'categories in the top {FINAL_K}) are the independent reads. Scattering rule: at most '
    f'{RULE[0]} item of a category in any {RULE[1]} consecutive positions; violations = '
    f'positions breaking it in the top {FINAL_K}. MMR on the raw cosine; DPP (Chen et al. '
    '2018, Algorithm 1) on (1 + cos) / 2 with 0.05 identity. "+ scatter": the model-based step '
    'picks 20, the rest follow in DIN\'s order, then the rule.')


def figures(cells, records, outdir: str) -> list[str]:
  """funnel.png: HR@10 of each final list; rerank.png: NDCG@10 against ILD@10 and against
  categories@10 of each policy (mean ± std over seeds, from cells.csv)."""
  del records
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  h, n = f'hr@{FINAL_K}', f'ndcg@{FINAL_K}'
  rows = report.aggregate_cells(_stage(cells, 'final'), ['method'], [h])
  report.plot_bars(rows, ['method'], h, os.path.join(outdir, 'funnel.png'),
                   title=f'HR@{FINAL_K} of the held-out next item (mean ± std over seeds)')
  names = ['funnel.png']
  rr = report.aggregate_cells(_stage(cells, 'rerank'), ['method'], [n, 'ild', 'categories'])
  if not rr:
    return names
  mean = {r['method']: r for r in rr}
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  for ax, x in zip(axes, ('ild', 'categories')):
    for fam, style in (('MMR', 'o-'), ('DPP', 's-')):
      ps = [p for p in mean if p.startswith(fam) and 'scatter' not in p]
      ax.plot([mean[p][x] for p in ps], [mean[p][n] for p in ps], style, label=fam)
    sc = [p for p in mean if 'scatter' in p]
    ax.plot([mean[p][x] for p in sc], [mean[p][n] for p in sc], 'x', label='+ scatter')
    if NO_RERANK in mean:
      ax.plot([mean[NO_RERANK][x]], [mean[NO_RERANK][n]], 'k*', markersize=10, label=NO_RERANK)
    for p in mean:
      ax.annotate(p.split(' ', 1)[-1].replace('lambda=', 'λ').replace('theta=', 'θ'),
                  (mean[p][x], mean[p][n]), fontsize=6)
    ax.set_xlabel({'ild': f'ILD@{FINAL_K} (DIN item vectors)',
                   'categories': f'distinct categories in the top {FINAL_K}'}[x])
    ax.set_ylabel(f'NDCG@{FINAL_K}')
    ax.legend(fontsize=7)
  report.save_figure(fig, os.path.join(outdir, 'rerank.png'))
  return names + ['rerank.png']


STUDY = study.Study('funnel', METRICS, tables, families, figures=figures)


def report_dataset(res: dict, outdir: str, seeds, wall: float, load: str = '',
                   publish_to: str | None = None, docs: str = publish.DOCS) -> list[str]:
  """Reports one dataset's run_dataset result to <outdir>/<dataset>/ (stages.report_dataset);
  publish_to: a docs/results/ folder (e.g. 'funnel/synthetic') to copy them to."""
  return stages.report_dataset(STUDY, dataset_records, dataset_meta, res, outdir, seeds, wall,
                               load, publish_to, docs)


def main(argv):
  del argv
  xla_cpu.apply_defaults()
  if FLAGS.seeds < 1:
    raise app.UsageError(f'--seeds={FLAGS.seeds} must be >= 1 (>= 3 for intervals)')
  st = Settings(**{k: getattr(FLAGS, k) for k in (
      'epochs', 'num_steps', 'eval_users', 'max_len', 'k_retrieve', 'candidates', 'n_prerank',
      'neg_per_pos', 'two_tower_steps', 'neg_power')},
      hard_rates=tuple(r for r in map(float, FLAGS.hard_from_ranker_rate) if r > 0),
      hard_rows=FLAGS.hard_rows, hard_m=FLAGS.hard_m, hard_h=FLAGS.hard_h,
      hard_funnel=FLAGS.hard_funnel)
  per_ds = {ds: with_overrides(st, ds, FLAGS.override) for ds in FLAGS.datasets}  # checked first
  stages.run_datasets('funnel', FLAGS.datasets, FLAGS.seeds,
                      FLAGS.outdir or os.path.join('runs', 'funnel'), per_ds, run_dataset,
                      report_dataset, FLAGS.docs and not FLAGS.outdir and FLAGS.num_steps <= 0
                      and not FLAGS.override)


if __name__ == '__main__':
  define_flags()
  app.run(main)
