"""Planted-interest synthetic CTR data with a computable Bayes-optimal (oracle) AUC.

Generative story (all ids start at 1; 0 is padding):
  * Every category c has a unit latent vector u_c in R^k; item i of category c(i) has
    v_i = normalise(u_c + item_noise * z_i), so items of one category are similar.
  * A user has 2..max_interests interest categories with uneven (Dirichlet) weights; each
    behaviour picks an interest by weight and an item of that category (or, with prob
    `noise_behaviour_prob`, any item). Histories are prefixes of one time-ordered sequence:
    impression j sees the newest `max_len` behaviours strictly before it, newest last.
  * The target is an item of a uniformly chosen interest (prob `target_interest_prob`, so
    rare interests are targeted as often as dominant ones) or a uniform random item.
  * Click probability depends on the *most relevant* behaviour (local activation), relevance
    'max' (dataset `synthetic`):
        p = sigmoid(alpha * max_j <v_target, v_hist_j> + beta + b_target)
    Mean pooling dilutes a rare interest by its share of the history; attention need not.
  * Or, relevance 'sum' (dataset `synthetic_intensity`), on the *summed* relevance of the
    history, so the intensity of an interest (how many relevant behaviours) matters:
        r_j = max(0, (<v_target, v_hist_j> - TAU) / (1 - TAU)),   TAU = 0.5
        p = sigmoid(alpha * sum_j r_j / INTENSITY + beta + b_target)
    A same-category behaviour has r_j ~ 0.9, an unrelated one mostly 0; INTENSITY = 10 such
    behaviours give the 'max' generator's logit of one exact match. Doubling the relevant
    behaviours raises p, which a softmax-normalised attention (a weighted average of the
    history) cannot see; DIN's unnormalised weights can (the DIN paper's reason for no
    softmax, Sec. 4.3).
Because p is known, AUC(labels, p) is the Bayes-optimal (oracle) AUC of every split.
Splits are by user (80/10/10 by default), so valid/test users are never seen in training.
"""
from __future__ import annotations

import numpy as np

from seqrec_jax.configs.keys import Key, defaults, integer, number
from seqrec_jax.data.features import DataSpec, Task
from seqrec_jax.data.pipeline import ArraySplit, Dataset
from seqrec_jax import metrics

KEYS = (
    Key('num_users', 60000, 'users (split 80/10/10 by user by default)', integer(1)),
    Key('num_items', 500, 'items (ids 1..num_items)', integer(1)),
    Key('num_cates', 40, 'categories, each with a latent vector u_c', integer(1)),
    Key('max_len', 30, 'L: newest behaviours an impression sees', integer(1)),
    Key('min_len', 3, 'behaviours before a user\'s first impression (<= max_len)', integer(0)),
    Key('impressions_per_user', 10, 'impressions per user', integer(1)),
    Key('max_interests', 5, 'a user has 2..max_interests interest categories (<= num_cates)',
        integer(1)),
    Key('latent_dim', 8, 'k: width of the latent vectors', integer(1)),
    Key('item_noise', 0.2, 'v_i = normalise(u_c + item_noise * z_i)', number(0)),
    Key('noise_behaviour_prob', 0.1, 'a behaviour is any item instead of an interest\'s',
        number(0, 1)),
    Key('target_interest_prob', 0.5, 'the target is an item of an interest (else uniform)',
        number(0, 1)),
    Key('alpha', 5.0, 'click logit scale of the relevance', number()),
    Key('beta', -2.5, 'click logit offset', number()),
    Key('item_bias_std', 0.1, 'std of the per-item logit bias b_target', number(0)),
    Key('valid_frac', 0.1, 'fraction of users in valid', number(0, 1)),
    Key('test_frac', 0.1, 'fraction of users in test', number(0, 1)),
    Key('seed', 0, 'generator seed', integer()),
)
DEFAULTS = defaults(KEYS)
RELEVANCE = {'max': 'synthetic', 'sum': 'synthetic_intensity'}   # -> the dataset's name
TAU, INTENSITY = 0.5, 10.0


def _normalise(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def click_prob(v, item_bias, target, hist, mask, alpha: float, beta: float,
               relevance: str = 'max') -> np.ndarray:
  """The click probability p [N] of impressions: item vectors v [I + 1, k], item_bias [I + 1],
  target [N], hist [N, L] item ids, mask [N, L] (True = real behaviour); see the module doc.
  A row without behaviours has relevance 0."""
  sim = np.einsum('nd,nld->nl', v[target], v[hist])                     # [N, L]
  if relevance == 'max':
    rel = np.where(mask, sim, -1.0).max(1) if hist.shape[1] else np.zeros(len(target))
    rel = np.where(mask.any(1), rel, 0.0)
  elif relevance == 'sum':
    r = np.maximum(0.0, (sim - TAU) / (1.0 - TAU))
    rel = np.where(mask, r, 0.0).sum(1) / INTENSITY
  else:
    raise ValueError(f'synthetic: relevance={relevance!r}; choose from {sorted(RELEVANCE)}')
  return 1.0 / (1.0 + np.exp(-(alpha * rel + beta + item_bias[target])))


def generate(num_users, num_items, num_cates, max_len, min_len, impressions_per_user,
             max_interests, latent_dim, item_noise, noise_behaviour_prob,
             target_interest_prob, alpha, beta, item_bias_std, valid_frac, test_frac,
             seed, relevance: str = 'max') -> Dataset:
  """Generates the dataset. `num_items`/`num_cates` count real ids (vocab = count + 1);
  relevance 'max' (dataset synthetic) or 'sum' (synthetic_intensity)."""
  if relevance not in RELEVANCE:
    raise ValueError(f'synthetic: relevance={relevance!r}; choose from {sorted(RELEVANCE)}')
  if min_len < 0 or min_len > max_len:
    raise ValueError(f'synthetic: min_len={min_len} must be in [0, max_len={max_len}]')
  if max_interests < 1 or max_interests > num_cates:
    raise ValueError(f'synthetic: max_interests={max_interests} must be in [1, {num_cates}]')
  rng = np.random.default_rng(seed)
  # Items 1..I; category ids 1..C; every category gets at least one item.
  item_cate = np.concatenate([[0], np.arange(num_items) % num_cates + 1])
  rng.shuffle(item_cate[1:])
  u = _normalise(rng.normal(size=(num_cates + 1, latent_dim)))
  v = _normalise(u[item_cate] + item_noise * rng.normal(size=(num_items + 1, latent_dim))
                 / np.sqrt(latent_dim))
  v[0] = 0.0
  item_bias = rng.normal(scale=item_bias_std, size=num_items + 1)
  order = np.argsort(item_cate[1:], kind='stable') + 1
  counts = np.bincount(item_cate[1:], minlength=num_cates + 1)
  offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])

  def item_of_cate(c):
    return order[offsets[c] + (rng.random(c.shape) * counts[c]).astype(np.int64)]

  # Interests: k_u categories with Dirichlet(0.5) weights.
  k_u = rng.integers(min(2, max_interests), max_interests + 1, size=num_users)
  interests = np.argsort(rng.random((num_users, num_cates)), axis=1)[:, :max_interests] + 1
  w = rng.dirichlet(np.full(max_interests, 0.5), size=num_users)
  w = np.where(np.arange(max_interests) < k_u[:, None], w, 0.0)
  w /= w.sum(1, keepdims=True)

  # One behaviour sequence per user; impression j sees seq[:start_u + j] (newest max_len).
  seq_len = max_len + impressions_per_user
  pick = (rng.random((num_users, seq_len, 1)) > np.cumsum(w, 1)[:, None, :]).sum(-1)
  pick = np.minimum(pick, k_u[:, None] - 1)
  seq = item_of_cate(np.take_along_axis(interests, pick, 1))
  noisy = rng.random(seq.shape) < noise_behaviour_prob
  seq = np.where(noisy, rng.integers(1, num_items + 1, size=seq.shape), seq)
  start = rng.integers(min_len, max_len + 1, size=num_users)

  users = np.repeat(np.arange(num_users), impressions_per_user)
  ends = start[users] + np.tile(np.arange(impressions_per_user), num_users)
  pos = ends[:, None] - max_len + np.arange(max_len)[None, :]   # right-aligned, newest last
  mask = pos >= 0
  hist = np.where(mask, seq[users[:, None], np.maximum(pos, 0)], 0)

  # Targets: a uniformly chosen interest (not weighted) or a random item.
  n = len(users)
  j = (rng.random(n) * k_u[users]).astype(np.int64)
  t_int = item_of_cate(interests[users, j])
  target = np.where(rng.random(n) < target_interest_prob, t_int,
                    rng.integers(1, num_items + 1, size=n))
  p = click_prob(v, item_bias, target, hist, mask, alpha, beta, relevance)
  label = (rng.random(n) < p).astype(np.float32)

  arrays = dict(
      user_id=(users + 1).astype(np.int32), target_item=target.astype(np.int32),
      target_cate=item_cate[target].astype(np.int32), hist_items=hist.astype(np.int32),
      hist_cates=np.where(mask, item_cate[hist], 0).astype(np.int32), hist_mask=mask,
      label=label)
  perm = np.random.default_rng([seed, 1]).permutation(num_users)
  n_test, n_valid = int(num_users * test_frac), int(num_users * valid_frac)
  split_users = {'test': perm[:n_test], 'valid': perm[n_test:n_test + n_valid],
                 'train': perm[n_test + n_valid:]}
  splits, info = {}, {'generator': 'planted-interest', 'relevance': relevance, 'seed': seed}
  for name, us in split_users.items():
    rows = np.flatnonzero(np.isin(users, us))
    splits[name] = ArraySplit({k: a[rows] for k, a in arrays.items()})
    info[f'{name}/rows'] = int(len(rows))
    info[f'{name}/pos_rate'] = float(label[rows].mean())
    info[f'{name}/oracle_auc'] = metrics.auc(label[rows], p[rows])
    info[f'{name}/oracle_gauc'] = metrics.gauc(label[rows], p[rows], users[rows])
    info[f'{name}/oracle_logloss'] = metrics.logloss(label[rows], p[rows])
  spec = DataSpec(num_users=num_users + 1, num_items=num_items + 1, num_cates=num_cates + 1,
                  max_len=max_len, tasks=(Task('click'),))
  oracle = {name: p[np.flatnonzero(np.isin(users, us))] for name, us in split_users.items()}
  return Dataset(RELEVANCE[relevance], spec, splits, info, oracle_prob=oracle)


def load(cfg, relevance: str = 'max') -> Dataset:
  """Builds the dataset from `config.data.synthetic` (a ConfigDict with DEFAULTS' keys)."""
  return generate(**{k: cfg[k] for k in DEFAULTS}, relevance=relevance)
