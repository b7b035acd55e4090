"""The two-tower loss / negatives comparison of docs/retrieval.md: one multi-run group per
variant on the training loop (tasks/two_tower.py; a workdir each, so a killed study resumes).

  python -m seqrec_jax.retrieval.two_tower_study --data movielens > ml.jsonl
  python -m seqrec_jax.retrieval.two_tower_study --summarize ml.jsonl
  python -m seqrec_jax.retrieval.two_tower_study --dataset=movielens \
      --override=data.movielens.path=/data/ml-20m.zip --override=model.use_user_embedding=true

--dataset (old name --data): synthetic or movielens (FITS: time-ordered interaction logs).
--override=key=value (repeatable; the shared parser of every study, seqrec_jax/configs):
data.movielens.path / .genre choose the MovieLens logs, data.synthetic.* the generator, any
other key of configs/two_tower.py every variant (e.g. model.two_tower.history=attention,
train.two_tower.num_catalogue=256); values take the key's type. --overrides='{"key": value}'
(JSON) is merged under them. Every JSON line records the overrides it ran with.

One JSON line per (variant, split, seed): recall@k / NDCG@k of the leave-last-out valid and test
targets (data/retrieval.py) of each run's best-valid state (selected on valid recall@<first k>,
evaluated every --steps / 5), the group's training seconds; popularity (and, on the synthetic
data, the oracle) as baselines. --hard_rates adds variants trained with hard negatives mined
from the `softmax` variant's seed-0 model (ranks --hard_ranks of its own retrieval for each
training example, the positive excluded): a stand-in for the ranker's scores.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

from absl import app, flags
import numpy as np

from seqrec_jax import train
from seqrec_jax.configs import load_config, parse_overrides, study_overrides
from seqrec_jax.data import retrieval as RD
from seqrec_jax.retrieval import metrics as RM
from seqrec_jax.retrieval.popularity import Popularity
from seqrec_jax.retrieval.two_tower import TwoTowerChannel, channels

CONFIG = 'seqrec_jax/configs/two_tower.py'
VARIANTS = {
    'softmax': {},
    'softmax_no_logq': {'train.two_tower.log_q': False},
    'softmax_mixed': {'train.two_tower.num_catalogue': 256},
    'bce': {'train.two_tower.loss': 'bce'},
    'hinge': {'train.two_tower.loss': 'hinge'},
    'triplet_log': {'train.two_tower.loss': 'triplet_log'},
}


# Datasets data/retrieval.py reads as time-ordered interaction logs.
FITS = {'synthetic': 'planted interests, with an oracle',
        'movielens': 'ratings as interactions; latest-small offline, any release via '
                     'data.movielens.path'}
NEEDS = 'time-ordered interaction logs (user, item, category, time; data/retrieval.py)'
LOGS_KEYS = ('path', 'genre')        # data.movielens.* that movielens_logs reads


def split_overrides(dataset: str, items=(), json_overrides: str = '{}'
                    ) -> tuple[dict, dict, dict]:
  """--override items (and the --overrides JSON) -> (logs kwargs, config overrides, all
  overrides as given, typed): data.movielens.path/genre and data.synthetic.* go to the logs
  reader of `dataset` (other datasets' data.* keys dropped), the rest are keys of
  configs/two_tower.py. Fails on a dataset without interaction logs or an unknown key."""
  items = list(items)
  logs_ov = study_overrides('two_tower_study', dataset, [i for i in items if i.startswith('data.')],
                            'default.py', FITS, NEEDS)
  config = load_config(CONFIG)
  try:
    tt = parse_overrides(json.loads(json_overrides), config, '--overrides')
    tt.update(parse_overrides([i for i in items if not i.startswith('data.')], config))
  except (KeyError, ValueError) as e:
    raise app.UsageError(str(e.args[0]) if isinstance(e, KeyError) else str(e)) from None
  logs = {}
  for k, v in logs_ov.items():
    if not k.startswith(f'data.{dataset}.'):
      raise app.UsageError(f'--override={k}: the two-tower study reads only data.{dataset}.* '
                           '(its logs); set the model through the keys of configs/two_tower.py')
    name = k.split('.', 2)[2]
    if dataset == 'movielens' and name not in LOGS_KEYS:
      raise app.UsageError(f'--override={k}: movielens_logs takes {LOGS_KEYS} only')
    logs[name] = v
  return logs, tt, {**logs_ov, **tt}


def train_variant(ds, overrides: dict, seeds: Sequence[int], steps: int, ks: Sequence[int],
                  workdir: str) -> list[dict]:
  """One variant as one group of len(seeds) runs on the training loop (configs/two_tower.py
  with `overrides`): each run's summary. A finished workdir is read back (no training)."""
  o = {'data.name': ds.name, 'train.num_steps': steps, 'train.run_seeds': tuple(seeds),
       'train.runs': len(seeds), 'train.eval_every': max(steps // 5, 1),
       'train.checkpoint_every': max(steps // 5, 1), 'train.two_tower.ks': tuple(ks),
       'train.two_tower.select_metric': f'recall@{ks[0]}', **overrides}
  out = train.train_and_evaluate(load_config(CONFIG, o), workdir, ds)
  return out.get('runs', [out])


def _key(obj) -> str:
  return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def summarize(rows: list[dict], split: str = 'test', base: str = 'softmax') -> str:
  """A markdown table from main's JSON rows: mean +- std over seeds per variant, and each
  variant minus `base` paired by seed (mean and 95% t interval; 'resolved' if it excludes 0)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  rows = [r for r in rows if r['split'] == split]
  metrics = [k for k in rows[0] if k.startswith(('recall@', 'ndcg@'))]
  by = {}
  for r in rows:
    by.setdefault(r['variant'], {})[r.get('seed')] = r
  key = metrics[0]
  head = ['variant'] + [f'{split} {m}' for m in metrics] + [f'{key} - {base} (paired, 95% CI)',
                                                            'train s']
  out = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for name, runs in by.items():
    cells = [name]
    for m in metrics:
      v = np.array([r[m] for r in runs.values()])
      cells.append(f'{v.mean():.3f}' + (f' ± {v.std(ddof=1):.3f}' if len(v) > 1 else ''))
    seeds = sorted(set(runs) & set(by.get(base, {})) - {None})
    if name != base and len(seeds) > 1:
      d = np.array([runs[s][key] - by[base][s][key] for s in seeds])
      half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
      verdict = 'resolved' if abs(d.mean()) > half else 'unresolved'
      cells.append(f'{d.mean():+.3f} ± {half:.3f} ({verdict})')
    else:
      cells.append('')
    cells.append(str(next(iter(runs.values())).get('train_wall_s', '')))
    out.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(out)


def _oracle_top_k(oracle, q: dict, k: int) -> np.ndarray:
  """The k most probable next items under the planted truth, history removed: [U, k]."""
  p = oracle.next_item_prob(q['user_id'])
  np.put_along_axis(p, q['hist_item'], 0.0, 1)
  p[:, 0] = -1.0
  return np.argsort(-p, axis=1, kind='stable')[:, :k]


def mine_hard(ch: TwoTowerChannel, rows: dict, lo: int, hi: int, per_row: int,
              seed: int = 0) -> np.ndarray:
  """hard_item [N, per_row]: for each training row (user_id, hist_items, target_item), items
  that the channel ranks in [lo, hi) for the row's history (history excluded), drawn
  uniformly; any item the user has among the training positives (the row's own, or a later
  one) becomes 0."""
  ids, _ = ch.retrieve(rows['hist_items'], hi)
  cols = np.random.default_rng(seed).integers(lo, hi, (len(ids), per_row))
  hard = np.take_along_axis(ids, cols, 1).astype(np.int64)
  num_items = len(ch.cate_of_item)
  user = rows['user_id'].astype(np.int64)[:, None]
  liked = np.isin(user * num_items + hard, user[:, 0] * num_items + rows['target_item'])
  return np.where(liked, 0, hard).astype(np.int32)


def main(argv):
  """Prints one JSON line per (variant, split, seed); see the module docstring."""
  del argv
  f = flags.FLAGS
  if f.summarize:
    with open(f.summarize, encoding='utf-8') as fh:
      # The training loop's own {"summary": ...} lines share stdout: rows have a variant.
      rows = [r for r in map(json.loads, (ln for ln in fh if ln.startswith('{'))) if 'variant' in r]
    print(summarize(rows))
    return
  logs_kw, tt_kw, recorded = split_overrides(f.dataset, f.override, f.overrides)
  logs = (RD.movielens_logs(**logs_kw) if f.dataset == 'movielens'
          else RD.synthetic_logs(**logs_kw))
  tag = {'data': f.dataset, **({'overrides': recorded} if recorded else {})}
  split = RD.leave_last_out(logs)
  ds = RD.next_item_dataset(split, f.max_len)
  ks = [int(k) for k in f.ks.split(',')]
  qs = {w: RD.queries(split, w, f.max_len) for w in ('valid', 'test')}
  baselines = {'popularity': lambda q: Popularity(split.item_count()).retrieve(
      q['hist_item'], max(ks))[0]}
  if logs.oracle is not None:         # synthetic: the generator's next-item distribution
    baselines['oracle'] = lambda q: _oracle_top_k(logs.oracle, q, max(ks))
  for name, fn in baselines.items():
    for w, q in qs.items():
      ids = fn(q)
      print(json.dumps({**tag, 'variant': name, 'split': w,
                        **{f'recall@{k}': RM.recall_at_k(ids, q['target'], k) for k in ks},
                        **{f'ndcg@{k}': RM.ndcg_at_k(ids, q['target'], k) for k in ks}}),
            flush=True)
  seeds = tuple(range(f.seeds))
  runs = [(name, VARIANTS[name]) for name in filter(None, f.variants.split(','))]
  runs += [(f'softmax_hard{r}', {'train.two_tower.hard_negative_rate': float(r)})
           for r in filter(None, f.hard_rates.split(','))]
  root = os.path.join(f.workdir, f'{f.dataset}_{logs.fingerprint()}')
  done = {}
  for name, kw in runs:
    o = {**kw, **tt_kw}
    data, mined = ds, {}
    if o.get('train.two_tower.hard_negative_rate', 0) > 0:
      if 'softmax' not in done:
        raise ValueError('--hard_rates needs the softmax variant in --variants (it mines them)')
      lo, hi = (int(x) for x in f.hard_ranks.split(','))
      mined = {'hard_ranks': (lo, hi), 'hard_per_row': f.hard_per_row}
      ch = channels(done['softmax'], ds)[0]
      data = RD.next_item_dataset(split, f.max_len, hard_item=mine_hard(
          ch, ds.splits['train'].all(), lo, hi, f.hard_per_row))
    wd = done[name] = os.path.join(root, f'{name}_{_key([o, mined, f.max_len])}')
    summaries = train_variant(data, o, seeds, f.steps, ks, wd)
    for s, summary in zip(seeds, summaries):
      for w in qs:
        row = {m.split('/')[-1]: v for m, v in summary.items() if m.startswith(f'eval/{w}/')}
        print(json.dumps({**tag, 'variant': name, 'split': w, 'seed': s, **row,
                          'train_wall_s': summary['train_seconds'],
                          'best_step': summary['best_step']}), flush=True)


def define_flags():
  """The CLI's flags (defined on demand: importing this module defines none)."""
  flags.DEFINE_string('dataset', 'movielens', 'Interaction logs (data/retrieval.py): '
                      + ', '.join(f'{k} ({v})' for k, v in FITS.items()) + '.')
  flags.DEFINE_alias('data', 'dataset')     # the old name
  flags.DEFINE_multi_string('override', [], 'key=value, repeatable: data.movielens.path=... / '
                            'data.movielens.genre=... (MovieLens logs), data.synthetic.<k>=... '
                            '(the generator), or a key of configs/two_tower.py for every variant '
                            '(e.g. model.use_user_embedding=true); typed like the key it sets, '
                            'recorded in every JSON line.')
  flags.DEFINE_string('variants', 'softmax,softmax_no_logq,softmax_mixed,bce,hinge,triplet_log',
                      'comma list of VARIANTS')
  flags.DEFINE_string('hard_rates', '', 'comma list of hard_negative_rate values: one variant each '
                      '(needs the softmax variant, whose seed-0 model mines the hard negatives)')
  flags.DEFINE_string('hard_ranks', '20,100', 'lo,hi: hard negatives from these ranks')
  flags.DEFINE_integer('hard_per_row', 2, 'hard negatives per training example')
  flags.DEFINE_integer('steps', 1000, 'training steps per variant')
  flags.DEFINE_integer('seeds', 3, 'seeds 0..n-1: one multi-run group per variant')
  flags.DEFINE_integer('max_len', 50, 'history length')
  flags.DEFINE_string('ks', '50,200', 'cut-offs')
  flags.DEFINE_string('overrides', '{}', 'JSON {config key: value} for every variant (the '
                      'older form of --override; merged, --override wins)')
  flags.DEFINE_string('workdir', 'runs/two_tower_study', 'one workdir per (logs, variant) under '
                      'it: a rerun reads finished variants back and resumes a killed one')
  flags.DEFINE_string('summarize', '', 'a file of this CLI\'s JSON lines -> markdown table')


if __name__ == '__main__':
  define_flags()
  from seqrec_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  xla_cpu.apply_defaults()
  app.run(main)
