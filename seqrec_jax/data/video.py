"""Synthetic short-video feed with a known generating model (oracle metrics exist).

Generated on the fly from `seed` (nothing on disk):
  users u      interests theta_u ~ Dirichlet(interest_alpha * 1_C) over C categories
  items i      category c_i (uniform), quality q_i ~ N(0, 1), duration D_i (seconds) =
               clip(exp(N(log 30, 0.8^2)), 5, 300)
  affinity     a_ui = log(C * theta_u[c_i]) / 2 + q_i / 2      (interest match + quality)
  click        ~ Bernoulli(sigmoid(-1 + a_ui))
  like         ~ Bernoulli(sigmoid(-3 + 1.5 a_ui))
  completion   r ~ Beta(kappa m, kappa (1 - m)), m = sigmoid(0.5 + a_ui - 0.8 log(D_i / 30))
               (longer videos are finished less often); watch time t = r * D_i seconds
  completed    r >= 0.8 (binary)
The oracle of an impression is the exact conditional expectation of each label given
(u, i): p_click, p_like, E[t] = m D_i, E[r] = m, P(r >= 0.8) = BetaSF(0.8) (`oracle`).

Rows: each user gets `requests_per_user` requests of `candidates` impressions (items drawn
uniformly), rows of a request consecutive; requests are split train / valid / test at random
(the same users everywhere, so user ids carry information). History: `max_len` past items
drawn from the user's interests (category ~ theta_u, then an item of that category), the same
for all the user's rows. Features: user_id, target item / cate, history, sparse
'dur_bucket' (duration decile, 1..10), dense [log D]; both describe the candidate (side 'item'
in the DataSpec: item towers read them, user towers never). Tasks: click, like (binary), watch
(watch_time), completion (completion_rate), completed (binary). `watch_head` (not part of the
generator) picks the watch task's head (WATCH_HEADS): the course notes' soft label
t / (1 + t) (default), the (1 + t)-weighted logistic loss, or direct MSE regression of t
(served as the raw output).
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy import special, stats

from seqrec_jax.configs.keys import Key, defaults, integer, number, one_of
from seqrec_jax.data.features import DataSpec, FeatureSpec, Task
from seqrec_jax.data.pipeline import ArraySplit, Dataset

KEYS = (
    Key('num_users', 2000, 'users, each with interests theta_u', integer(1)),
    Key('num_items', 3000, 'items (category, quality, duration)', integer(1)),
    Key('num_cates', 20, 'C: categories', integer(1)),
    Key('max_len', 20, "past items in every row's history", integer(1)),
    Key('candidates', 20, 'impressions per request', integer(1)),
    Key('requests_per_user', 4, 'requests per user (split train / valid / test at random)',
        integer(1)),
    Key('interest_alpha', 0.3, 'theta_u ~ Dirichlet(interest_alpha * 1_C)',
        number(0, lo_open=True)),
    Key('kappa', 4.0, 'completion r ~ Beta(kappa m, kappa (1 - m))', number(0, lo_open=True)),
    Key('valid_frac', 0.1, 'fraction of requests in valid', number(0, 1)),
    Key('test_frac', 0.2, 'fraction of requests in test', number(0, 1)),
    Key('seed', 0, 'generator seed', integer()),
    Key('watch_head', 'soft_label', "the watch task's head (WATCH_HEADS): soft_label "
        '(t / (1 + t)) | weighted ((1 + t)-weighted logistic) | regression (MSE on t)',
        one_of(lambda: tuple(WATCH_HEADS))),
)
DEFAULTS = defaults(KEYS)
GENERATOR_KEYS = tuple(k for k in DEFAULTS if k != 'watch_head')
TASKS = (Task('click'), Task('like'), Task('watch', 'watch_time'),
         Task('completion', 'completion_rate'), Task('completed'))
# config.data.video.watch_head -> the watch task (features.py: kinds and watch-time losses).
WATCH_HEADS = {'soft_label': Task('watch', 'watch_time'),
               'weighted': Task('watch', 'watch_time', loss='weighted'),
               'regression': Task('watch', 'regression')}
ORACLE_KEYS = ('click', 'like', 'watch', 'completion', 'completed')
SPLITS = ('train', 'valid', 'test')


def _world(num_users, num_items, num_cates, interest_alpha, rng):
  theta = rng.dirichlet(np.full(num_cates, interest_alpha), size=num_users)   # [U, C]
  cate = rng.integers(0, num_cates, num_items)                                # [I] 0-based
  quality = rng.standard_normal(num_items)
  duration = np.clip(np.exp(rng.normal(np.log(30.0), 0.8, num_items)), 5.0, 300.0)
  return theta, cate, quality, duration


def oracle(theta, cate, quality, duration, users, items, kappa) -> dict[str, np.ndarray]:
  """Exact expected labels of impressions (users [N], items [N], 0-based world indices)."""
  c = theta.shape[1]
  a = 0.5 * np.log(c * theta[users, cate[items]] + 1e-12) + 0.5 * quality[items]
  m = special.expit(0.5 + a - 0.8 * np.log(duration[items] / 30.0))
  return {'click': special.expit(-1.0 + a), 'like': special.expit(-3.0 + 1.5 * a),
          'watch': m * duration[items], 'completion': m,
          'completed': stats.beta.sf(0.8, kappa * m, kappa * (1.0 - m)), '_m': m}


@functools.lru_cache(maxsize=2)
def generate_with_oracle(num_users, num_items, num_cates, max_len, candidates,
                         requests_per_user, interest_alpha, kappa, valid_frac, test_frac,
                         seed):
  """(Dataset, {split: {oracle key: [N], 'request': [N]}}): ids are 1-based (0 = padding)."""
  rng = np.random.default_rng(seed)
  theta, cate, quality, duration = _world(num_users, num_items, num_cates, interest_alpha, rng)
  by_cate = [np.flatnonzero(cate == k) for k in range(num_cates)]
  # History: max_len items per user from their interests.
  hc = np.array([rng.choice(num_cates, max_len, p=t) for t in theta])         # [U, L]
  hist = np.array([[rng.choice(by_cate[k]) if len(by_cate[k]) else 0 for k in row]
                   for row in hc])
  n_req = num_users * requests_per_user
  req_user = np.repeat(np.arange(num_users), requests_per_user)
  users = np.repeat(req_user, candidates)
  items = rng.integers(0, num_items, n_req * candidates)
  o = oracle(theta, cate, quality, duration, users, items, kappa)
  r = rng.beta(kappa * o['_m'], kappa * (1.0 - o['_m']))
  labels = np.stack([rng.random(len(r)) < o['click'], rng.random(len(r)) < o['like'],
                     r * duration[items], r, r >= 0.8], 1).astype(np.float32)
  dur_edges = np.quantile(duration, np.linspace(0, 1, 11)[1:-1])
  arrays = {
      'user_id': (users + 1).astype(np.int32), 'target_item': (items + 1).astype(np.int32),
      'target_cate': (cate[items] + 1).astype(np.int32),
      'hist_items': (hist[users] + 1).astype(np.int32),
      'hist_cates': (cate[hist[users]] + 1).astype(np.int32),
      'hist_mask': np.ones((len(users), max_len), bool),
      'sparse': (np.searchsorted(dur_edges, duration[items]) + 1)[:, None].astype(np.int32),
      'dense': np.log(duration[items])[:, None].astype(np.float32), 'labels': labels}
  which = rng.random(n_req)                                 # request -> split
  req_split = np.where(which < test_frac, 2, np.where(which < test_frac + valid_frac, 1, 0))
  row_split = np.repeat(req_split, candidates)
  request = np.repeat(np.arange(n_req), candidates)
  splits, oracles, info = {}, {}, {'generator': 'video-synthetic', 'seed': seed}
  for k, name in enumerate(SPLITS):
    rows = np.flatnonzero(row_split == k)
    splits[name] = ArraySplit({key: v[rows] for key, v in arrays.items()})
    oracles[name] = {key: o[key][rows] for key in ORACLE_KEYS}
    oracles[name]['request'] = request[rows]
    oracles[name]['duration'] = duration[items[rows]]
    info[f'{name}/rows'] = len(rows)
  spec = DataSpec(num_users=num_users + 1, num_items=num_items + 1, num_cates=num_cates + 1,
                  max_len=max_len, sparse=(FeatureSpec('dur_bucket', 11, side='item'),),
                  dense_dim=1, dense_sides=('item',), tasks=TASKS)
  return Dataset('video', spec, splits, info), oracles


def load(cfg) -> Dataset:
  """Builds the dataset from `config.data.video` (a ConfigDict with DEFAULTS' keys)."""
  ds = generate_with_oracle(**{k: cfg[k] for k in GENERATOR_KEYS})[0]
  head = cfg['watch_head']
  if head not in WATCH_HEADS:
    raise ValueError(f'config.data.video.watch_head={head!r}; choose from {sorted(WATCH_HEADS)}')
  if head == 'soft_label':
    return ds
  tasks = tuple(WATCH_HEADS[head] if t.name == 'watch' else t for t in ds.spec.tasks)
  # New split objects (same arrays): data.prepare caches what it derives per train split.
  return dataclasses.replace(ds, spec=dataclasses.replace(ds.spec, tasks=tasks), splits={
      k: ArraySplit(v.all()) for k, v in ds.splits.items()})


def oracles(cfg) -> dict:
  """{split: {'click', 'like', 'watch', 'completion', 'completed', 'request', 'duration'}}."""
  return generate_with_oracle(**{k: cfg[k] for k in GENERATOR_KEYS})[1]
