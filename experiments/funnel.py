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
     (<outdir>/hard_negatives.md; docs/funnel.md).
Every stage's result is cached under <outdir>/<dataset>_<key>/ (key = hash of the settings and
of the data), so a rerun or a killed run resumes where it stopped. Seeds are model
initialisations and batch orders (the data, the split and the deterministic channels are
fixed), so differences are paired by seed (stats.seed_diff); a second interval pairs
by test user (per-user differences averaged over seeds), the test-set sampling noise.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import subprocess
import sys
import time

from absl import app, flags
import numpy as np

from experiments import publish, stats, sweep
from seqrec_jax import metrics as M
from seqrec_jax import xla_cpu
from seqrec_jax.configs import define_override_flag, study_overrides
from seqrec_jax.data import retrieval as D
from seqrec_jax.retrieval import funnel as F
from seqrec_jax.retrieval.popularity import Popularity

FLAGS = flags.FLAGS
KS = (50, 100, 500)
FINAL_K = 10
FILES = ('retrieval.md', 'retrieval.csv', 'final.md', 'final.csv', 'latency.md', 'latency.csv',
         'funnel.png', 'rerank.md', 'rerank.csv', 'rerank.png')
# Merge quota shares of the channels present (renormalised over those that landed).
QUOTA_WEIGHTS = {'two_tower': 0.3, 'itemcf': 0.2, 'swing': 0.2, 'usercf': 0.2,
                 'popularity': 0.1}


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


def _key(obj) -> str:
  return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _cached(path: str, fn):
  """npz cache: loads path if it exists, else saves fn()'s dict of arrays there."""
  if os.path.exists(path):
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  out = fn()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez(path + '.tmp.npz', **out)
  os.replace(path + '.tmp.npz', path)
  return out


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
      got = _cached(path, run)
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
  ckey = _key([hashlib.sha1(np.stack(blocks).tobytes()).hexdigest()])
  E, N = blocks[0].shape
  out = {}
  for model, (mwd, spec) in models_of.items():
    def run(mwd=mwd, spec=spec, model=model):
      t = time.time()
      p = score(mwd, spec, [D.candidate_rows(split, q, b) for b in blocks])
      log(f'  {model}: scored {len(blocks)} x {E} x {N} candidates in {time.time() - t:.0f} s')
      return {'scores': np.stack([x.reshape(E, N) for x in p])}
    p = _cached(os.path.join(wd, f'scores_{model}_{ckey}.npz'), run)['scores']
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
  wd = os.path.join(outdir, f'{dataset}_{_key([settings, logs.fingerprint()])}')
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
    final.setdefault('popularity (top-10)', {})[s] = F.list_metrics(
        lists['popularity'][s][:, :FINAL_K], target, (FINAL_K,))
  if logs.oracle is not None:
    final.update(oracle_rows(split, q, users, seeds))
  rerank = rerank_stage(split, q, cand, scores, models_of, seeds, st)
  lat = {} if not st.latency else latency(split, q, chans, merged, wd, st)
  hard = {} if not st.hard_rates else hard_from_ranker(
      split, q, ex, merged, quotas, seeds, models_of, wd, log, st)
  return {'hard': hard, 'dataset': dataset, 'retrieval': retr, 'final': final, 'latency': lat,
          'rerank': rerank,
          'notes': notes, 'quotas': quotas, 'users': len(users),
          'seconds': time.time() - t0, 'info': logs.info,
          'cold_targets': float(np.mean(split.item_count()[target] == 0))}


# ----------------------------------------------------------------------------- re-rank stage

RERANK_N = 50        # DIN's top-N (of the pre-ranker's n_prerank) that the re-ranker reorders
RULE = (1, 3)        # scattering: at most 1 item of a category in any 3 consecutive positions
RERANK_METRICS = (f'hr@{FINAL_K}', f'ndcg@{FINAL_K}', 'ild', 'categories')   # compared


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
    got = _cached(os.path.join(wd, 'channels', f'two_tower_{tag}_r{rate:g}_k{k}.npz'), run)
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
    return _cached(os.path.join(wd, f'{tag}.npz'), run)['hard_item']

  out = {}
  for rate in (0.0,) + tuple(st.hard_rates):
    lists = lists_of(rate)
    row = {'recall': {s: F.list_metrics(lists[s], q['target'], (50, 500)) for s in seeds}}
    if st.hard_funnel:
      rank = -np.arange(k, dtype=np.float32)[None].repeat(len(q['target']), 0)
      cand = {}
      for s in seeds:
        got = {n: (lists[s] if n == 'two_tower' else
                   _cached(os.path.join(wd, 'channels', f'{n}_s{s}_k{k}.npz'), None)['ids'], rank)
               for n in merged}
        cand[s] = F.merge(got, quotas, st.candidates)
      sc = candidate_scores(split, q, cand, seeds, models_of, wd, log)
      row['final'] = {s: F.list_metrics(F.stage_lists(cand[s], sc['prerank'][s], sc['din'][s],
                                                      st.n_prerank, FINAL_K)['funnel'],
                                         q['target'], (FINAL_K,)) for s in seeds}
    out['no hard negatives' if rate == 0 else f'hard from DIN, rate {rate:g}'] = row
  return out


def hard_report(results: list[dict], outdir: str, wall: float, load: str, st: Settings) -> str:
  """hard_negatives.md / .csv: recall@50/500 of each two-tower and the funnel HR@10, and the
  differences against the no-hard two-tower (by seed | by user; * = resolved)."""
  mets = [('recall', 'recall@50'), ('recall', 'recall@500'), ('final', f'hr@{FINAL_K}')]
  head = [f'{m} (funnel)' if g == 'final' else m for g, m in mets]
  lines = ['### Two-tower hard negatives mined from DIN (mean [95% CI] over seeds; minus the '
           'no-hard two-tower: by seed | by user)', '',
           '| dataset | two-tower | ' + ' | '.join(head) + ' | '
           + ' | '.join(f'{h} minus no-hard: by seed | by user' for h in head) + ' |',
           '|' + '---|' * (2 + 3 * len(mets))]
  csv = ['dataset,two_tower,' + ','.join(m for _, m in mets)]
  for res in results:
    rows = res.get('hard') or {}
    base = rows.get('no hard negatives')
    for name, row in rows.items():
      vals, diffs = [], []
      for g, m in mets:
        if g not in row:
          vals.append('-')
          diffs.append('- | -')
          continue
        vals.append(_ci([row[g][s][m].mean() for s in row[g]]))
        diffs.append('- | -' if row is base else _diffs(row[g], base[g], m))
      lines.append(f'| {res["dataset"]} | {name} | ' + ' | '.join(vals + diffs) + ' |')
      csv.append(f'{res["dataset"]},{name},' + ','.join(
          f'{np.mean([row[g][s][m].mean() for s in row[g]]):.6f}' if g in row else ''
          for g, m in mets))
  lines += ['', f'{st.hard_rows} training examples mined (two-tower seed 0 top-{st.hard_m}, '
            f'history excluded; DIN run 0 scores; the user\'s train clicks dropped; DIN\'s top '
            f'{st.hard_h} kept), the same hard_item for every seed and rate. `{_command()}`: '
            f'{wall / 60:.1f} min wall (cached stages read) at load average {load}.']
  for stem, body in (('hard_negatives.md', lines), ('hard_negatives.csv', csv)):
    with open(os.path.join(outdir, stem), 'w') as f:
      f.write('\n'.join(body) + '\n')
  return '\n'.join(lines)


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

def _ci(vals) -> str:
  m, lo, hi = M.mean_ci(vals)
  if not np.isfinite(lo) or hi - lo < 1e-12:
    return f'{m:.4f}'
  return f'{m:.4f} [{lo:.4f}, {hi:.4f}]'


def _diffs(a: dict, b: dict, metric: str) -> str:
  """'by seed | by user': paired by seed (stats.seed_diff, 95% t-interval) and paired by test
  user (per-user differences averaged over seeds, t-interval over users); * = resolved."""
  seeds = sorted(set(a) & set(b))
  d = stats.seed_diff({s: a[s][metric].mean() for s in seeds},
                      {s: b[s][metric].mean() for s in seeds})
  lo_s, hi_s = stats.t_interval(d, 0.95)
  if not np.isfinite(lo_s) or hi_s - lo_s < 1e-12:
    seed_s = f'{d["mean"]:+.4f} (no seed spread)'
  else:
    seed_s = f'{d["mean"]:+.4f} [{lo_s:+.4f}, {hi_s:+.4f}]' + (' *' if lo_s > 0 or hi_s < 0
                                                                else '')
  _, lo, hi = M.mean_ci(np.mean([a[s][metric] - b[s][metric] for s in seeds], 0))
  return seed_s + f' | [{lo:+.4f}, {hi:+.4f}]' + (' *' if lo > 0 or hi < 0 else '')


def _command() -> str:
  args = sys.argv[1:]
  return 'bash launch.sh funnel' + (' ' + ' '.join(args) if args else '')


def report(results: list[dict], outdir: str, wall: float, load: str, seeds) -> str:
  rl = ['### Retrieval: recall / NDCG at K of the held-out next item (mean [95% CI] over '
        'seeds; deterministic channels have one value)', '',
        '| dataset | channel | ' + ' | '.join(f'recall@{k} | NDCG@{k}' for k in KS) + ' |',
        '|' + '---|' * (2 + 2 * len(KS))]
  rc = ['dataset,channel,' + ','.join(f'recall@{k},ndcg@{k}' for k in KS)]
  fl = [f'### Final top-{FINAL_K}: HR@{FINAL_K} / NDCG@{FINAL_K} of each use of the stages '
        '(mean [95% CI] over seeds); differences against popularity', '',
        f'| dataset | list | HR@{FINAL_K} | NDCG@{FINAL_K} | HR minus popularity\'s: by seed '
        '| by user | funnel\'s HR minus this: by seed | by user |',
        '|---|---|---|---|---|---|---|---|']
  fc = [f'dataset,list,hr@{FINAL_K},ndcg@{FINAL_K}']
  ll = ['### Latency of one request per stage (ms; p50 / p99 over repeated calls)', '',
        '| dataset | stage | p50 ms | p99 ms |', '|---|---|---|---|']
  lc = ['dataset,stage,p50_ms,p99_ms']
  h, n = f'hr@{FINAL_K}', f'ndcg@{FINAL_K}'
  for res in results:
    ds = res['dataset']
    for name, by_seed in res['retrieval'].items():
      vals = []
      for k in KS:
        for met in (f'recall@{k}', f'ndcg@{k}'):
          vals.append([by_seed[s][met].mean() for s in by_seed])
      rl.append(f'| {ds} | {name} | ' + ' | '.join(_ci(v) for v in vals) + ' |')
      rc.append(f'{ds},{name},' + ','.join(f'{np.mean(v):.6f}' for v in vals))
    fin = res['final']
    pop, fun = fin['popularity (top-10)'], fin.get('funnel')
    for name, by_seed in fin.items():
      hr = [by_seed[s][h].mean() for s in by_seed]
      nd = [by_seed[s][n].mean() for s in by_seed]
      d1 = '- | -' if name.startswith('popularity') else _diffs(by_seed, pop, h)
      d2 = '- | -' if fun is None or name == 'funnel' else _diffs(fun, by_seed, h)
      fl.append(f'| {ds} | {name} | {_ci(hr)} | {_ci(nd)} | {d1} | {d2} |')
      fc.append(f'{ds},{name},{np.mean(hr):.6f},{np.mean(nd):.6f}')
    for stage, v in res['latency'].items():
      ll.append(f'| {ds} | {stage} | {v["p50_ms"]:.2f} | {v["p99_ms"]:.2f} |')
      lc.append(f'{ds},{stage},{v["p50_ms"]:.4f},{v["p99_ms"]:.4f}')
  foot = [f'Seeds {list(seeds)}; test users per dataset: '
          + ', '.join(f'{r["dataset"]} {r["users"]} (cold targets {r["cold_targets"]:.1%})'
                      for r in results)
          + '; channels: ' + '; '.join(f'{r["dataset"]}: ' + ', '.join(
              f'{k} {v}' for k, v in r['notes'].items()) for r in results)
          + '; quotas: ' + '; '.join(f'{r["dataset"]} {r["quotas"]}' for r in results) + '.',
          '', f'`{_command()}`: {wall / 60:.1f} min wall (this invocation; cached stages are '
          f'read, not rerun) at load average {load} '
          '(2 CPU cores, shared). * = the 95% interval excludes 0 (resolved).']
  for lines, csv, stem in ((rl, rc, 'retrieval'), (fl, fc, 'final'), (ll, lc, 'latency')):
    with open(os.path.join(outdir, f'{stem}.md'), 'w') as f:
      f.write('\n'.join(lines + ([''] + foot if stem == 'final' else [])) + '\n')
    with open(os.path.join(outdir, f'{stem}.csv'), 'w') as f:
      f.write('\n'.join(csv) + '\n')
  plot(results, outdir)
  return '\n'.join(rl + [''] + fl + [''] + foot + [''] + ll)


def rerank_report(results: list[dict], outdir: str, wall: float, load: str, seeds) -> str:
  """rerank.md / .csv / .png: each policy's relevance and diversity (mean [95% CI] over seeds)
  and its differences against no re-rank, paired per test user (bootstrap over users of the
  seed-averaged differences, Holm-corrected over the whole table) and by seed."""
  names = {'ild': f'ILD@{FINAL_K}', 'categories': f'categories@{FINAL_K}',
           'violations': f'violations@{FINAL_K}', 'ild_oracle': f'ILD@{FINAL_K} (oracle vectors)',
           f'hr@{FINAL_K}': f'HR@{FINAL_K}', f'ndcg@{FINAL_K}': f'NDCG@{FINAL_K}'}
  shown = (f'hr@{FINAL_K}', f'ndcg@{FINAL_K}', 'ild', 'categories', 'violations', 'ild_oracle')
  base = _policies()[0].name
  # Differences of every (dataset, policy, metric) against no re-rank: one Holm family.
  rows = []
  for res in results:
    rr = res['rerank']
    for pol in rr:
      if pol == base:
        continue
      for m in RERANK_METRICS:
        d = np.mean([rr[pol][s][m] - rr[base][s][m] for s in rr[pol]], 0)     # [U]
        rows.append((res['dataset'], pol, m, stats.seed_diff(
            {s: rr[pol][s][m].mean() for s in rr[pol]},
            {s: rr[base][s][m].mean() for s in rr[base]}), d))
  # One bootstrap per dataset (its users); Holm over the table, bootstrap and seed p apart.
  boot = {}
  for res in results:
    idx = [i for i, r in enumerate(rows) if r[0] == res['dataset']]
    if idx:
      draws, p = stats.user_bootstrap(np.stack([rows[i][4] for i in idx], 1))
      boot.update({i: (draws[:, j], p[j]) for j, i in enumerate(idx)})
  rej, lev = stats.holm([boot[i][1] for i in range(len(rows))])
  cell = {}
  for i, (ds, pol, m, sd, d) in enumerate(rows):
    lo, hi = stats.boot_interval(boot[i][0], lev[i])
    slo, shi = stats.t_interval(sd, 0.95)
    seed_ok = np.isfinite(slo) and (slo > 0 or shi < 0)
    seed_s = (f'seeds [{slo:+.4f}, {shi:+.4f}]' + ('*' if seed_ok else '') if np.isfinite(slo)
              else 'seeds n/a')
    cell[ds, pol, m] = (f'{d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]' + ('*' if rej[i] else '')
                        + f' {seed_s}', d.mean(), lo, hi, boot[i][1], int(rej[i]))
  vl = [f'### Re-rank stage: DIN\'s top {RERANK_N} re-ranked to the top {FINAL_K} '
        '(mean [95% CI] over seeds)', '',
        '| dataset | policy | ' + ' | '.join(names[m] for m in shown) + ' |',
        '|' + '---|' * (2 + len(shown))]
  dl = ['### Re-rank minus no re-rank, paired per test user (mean [bootstrap interval over '
        'users at its Holm level] seeds [95% t-interval over seeds]; * = excludes 0)', '',
        '| dataset | policy | ' + ' | '.join(f'Δ {names[m]}' for m in RERANK_METRICS) + ' |',
        '|' + '---|' * (2 + len(RERANK_METRICS))]
  csv = ['dataset,policy,' + ','.join(shown) + ','
         + ','.join(f'd_{m},d_{m}_lo,d_{m}_hi,p_boot_{m},holm_{m}' for m in RERANK_METRICS)]
  for res in results:
    ds, rr = res['dataset'], res['rerank']
    for pol, by_seed in rr.items():
      vals = [[by_seed[s][m].mean() for s in by_seed] if m in by_seed[next(iter(by_seed))]
              else None for m in shown]
      vl.append(f'| {ds} | {pol} | ' + ' | '.join('-' if v is None else _ci(v) for v in vals)
                + ' |')
      row = [f'{np.mean(v):.6f}' if v is not None else '' for v in vals]
      for m in RERANK_METRICS:
        c = cell.get((ds, pol, m))
        row += [f'{x:.6g}' for x in c[1:]] if c else [''] * 5
      csv.append(f'{ds},{pol},' + ','.join(row))
      if pol != base:
        dl.append(f'| {ds} | {pol} | ' + ' | '.join(cell[ds, pol, m][0] for m in RERANK_METRICS)
                  + ' |')
  users = ', '.join(f'{r["dataset"]} {r["users"]}' for r in results)
  foot = [f'Seeds {list(seeds)}; test users: {users}. The list re-ranked is the funnel\'s: '
          f'the pre-ranker keeps its top of the 500 candidates, DIN orders those, its top '
          f'{RERANK_N} go to the re-ranker (seqrec_jax/rerank/stage.py). Relevance = DIN\'s '
          'logit min-max scaled to [0, 1] per request; similarity and ILD (mean 1 - cosine over '
          'the pairs of the top 10) from each seed\'s DIN item vector [e_item, e_cate]: MMR '
          'and DPP optimise the same embedding ILD measures, so ILD (oracle vectors: the '
          'generator\'s item vectors, synthetic only) and categories (distinct categories in '
          'the top 10) are the independent reads. Scattering rule: at most '
          f'{RULE[0]} item of a category in any {RULE[1]} consecutive positions; violations = '
          'positions breaking it in the top 10. MMR on the raw cosine; DPP (Chen et al. 2018, '
          'Algorithm 1) on (1 + cos) / 2 with 0.05 identity. "+ scatter": the model-based '
          f'step picks 20, the rest follow in DIN\'s order, then the rule.', '',
          f'Differences: one family of {len(rows)} comparisons ({len(results)} datasets x '
          f'{len(_policies()) - 1} policies x {len(RERANK_METRICS)} metrics), Holm step-down '
          '(experiments/stats.py) over the bootstrap p-values; each bootstrap interval is at its '
          'Holm level, so it excludes 0 (*) exactly when Holm rejects. The bootstrap resamples '
          'test users (10,000 draws, one resample for every comparison of a dataset) for the '
          'seed-averaged per-user difference. The seed interval (paired t over the seeds\' '
          'means, stats.seed_diff) is the training noise, at 95% and not corrected: with 3 '
          'seeds a Holm-level t-interval over 72 tests would be uninformative.', '',
          f'`{_command()}`: {wall / 60:.1f} min wall (cached stages read) at load average '
          f'{load}.']
  with open(os.path.join(outdir, 'rerank.md'), 'w') as f:
    f.write('\n'.join(vl + [''] + dl + [''] + foot) + '\n')
  with open(os.path.join(outdir, 'rerank.csv'), 'w') as f:
    f.write('\n'.join(csv) + '\n')
  rerank_plot(results, outdir)
  return '\n'.join(vl + [''] + dl + [''] + foot)


def rerank_plot(results, outdir: str) -> None:
  """NDCG@10 against ILD@10 and against categories@10 of each policy (seed means)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(2, len(results), figsize=(5.5 * len(results), 7.2), squeeze=False)
  n = f'ndcg@{FINAL_K}'
  for j, res in enumerate(results):
    rr = res['rerank']
    mean = {p: {m: np.mean([rr[p][s][m].mean() for s in rr[p]]) for m in (n, 'ild',
                                                                          'categories')}
            for p in rr}
    for i, x in enumerate(('ild', 'categories')):
      ax = axes[i, j]
      for fam, style in (('MMR', 'o-'), ('DPP', 's-')):
        ps = [p for p in rr if p.startswith(fam) and 'scatter' not in p]
        ax.plot([mean[p][x] for p in ps], [mean[p][n] for p in ps], style, label=fam)
      sc = [p for p in rr if 'scatter' in p]
      ax.plot([mean[p][x] for p in sc], [mean[p][n] for p in sc], 'x', label='+ scatter')
      nr = _policies()[0].name
      ax.plot([mean[nr][x]], [mean[nr][n]], 'k*', markersize=10, label=nr)
      for p in rr:
        ax.annotate(p.split(' ', 1)[-1].replace('lambda=', 'λ').replace('theta=', 'θ'),
                    (mean[p][x], mean[p][n]), fontsize=6)
      ax.set_xlabel({'ild': f'ILD@{FINAL_K} (DIN item vectors)',
                     'categories': f'distinct categories in the top {FINAL_K}'}[x])
      ax.set_ylabel(f'NDCG@{FINAL_K}')
      ax.set_title(res['dataset'], fontsize=9)
      ax.legend(fontsize=7)
  sweep.save_figure(fig, os.path.join(outdir, 'rerank.png'))


def plot(results, outdir: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.6), squeeze=False)
  h = f'hr@{FINAL_K}'
  for ax, res in zip(axes[0], results):
    names = list(res['final'])
    ms = [M.mean_ci([res['final'][nm][s][h].mean() for s in res['final'][nm]]) for nm in names]
    err = [[m[0] - m[1] if np.isfinite(m[1]) else 0 for m in ms],
           [m[2] - m[0] if np.isfinite(m[2]) else 0 for m in ms]]
    ax.barh(range(len(names)), [m[0] for m in ms], xerr=err, capsize=2)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel(f'HR@{FINAL_K} of the held-out next item')
    ax.set_title(res['dataset'], fontsize=9)
  sweep.save_figure(fig, os.path.join(outdir, 'funnel.png'))


def main(argv):
  del argv
  xla_cpu.apply_defaults()
  t0 = time.time()
  outdir = FLAGS.outdir or os.path.join('runs', 'funnel')
  os.makedirs(outdir, exist_ok=True)
  seeds = list(range(FLAGS.seeds))
  if len(seeds) < 1:
    raise app.UsageError(f'--seeds={FLAGS.seeds} must be >= 1 (>= 3 for intervals)')

  def log(msg):
    print(f'[{time.time() - t0:6.0f} s] {msg}', flush=True)
  st = Settings(**{k: getattr(FLAGS, k) for k in (
      'epochs', 'num_steps', 'eval_users', 'max_len', 'k_retrieve', 'candidates', 'n_prerank',
      'neg_per_pos', 'two_tower_steps', 'neg_power')},
      hard_rates=tuple(r for r in map(float, FLAGS.hard_from_ranker_rate) if r > 0),
      hard_rows=FLAGS.hard_rows, hard_m=FLAGS.hard_m, hard_h=FLAGS.hard_h,
      hard_funnel=FLAGS.hard_funnel)
  per_ds = {ds: with_overrides(st, ds, FLAGS.override) for ds in FLAGS.datasets}  # checked first
  results = [run_dataset(ds, seeds, outdir, log, per_ds[ds]) for ds in FLAGS.datasets]
  load = subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
  load = load.split('load average:')[-1].strip()
  wall = time.time() - t0
  print(report(results, outdir, wall, load, seeds))
  print(rerank_report(results, outdir, wall, load, seeds))
  if st.hard_rates:
    print(hard_report(results, outdir, wall, load, st))
  print(f'wrote {outdir}/' + ', '.join(FILES) + f' in {wall / 60:.1f} min (load {load})')
  if FLAGS.docs and not FLAGS.outdir and FLAGS.num_steps <= 0 and not FLAGS.override:
    print('copied to', publish.publish(outdir, 'funnel', FILES))


if __name__ == '__main__':
  define_flags()
  app.run(main)
