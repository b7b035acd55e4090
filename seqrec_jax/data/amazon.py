"""Amazon reviews (e.g. Electronics 5-core + metadata) with the original DIN code's protocol
(github.com/zhougr1993/DeepInterestNetwork, utils/ and din/build_dataset.py).

* Behaviours: each user's reviews sorted by unixReviewTime (asin breaks ties, deterministic).
  For a user with n reviews at positions 0..n-1, position k >= 1 yields two examples that share
  the history "first k reviews" (newest `max_len`, right-aligned): the k-th item (label 1)
  and one negative (label 0) drawn uniformly from the item vocabulary, never an item the user
  ever reviewed (the DIN code's `gen_neg`), seeded by `neg_seed`.
* Splits (positions): test = the last review (k = n-1), as in the DIN code; valid = the
  second-to-last (k = n-2), which the DIN code trains on but we hold out so that model
  selection never sees test; train = k in 1..n-3. Users with 2 reviews only have a test pair.
* History ties: the DIN code's history is the sorted prefix, so reviews written the same day
  (timestamps have day resolution) count as history; `same_time_history=False` keeps only
  strictly earlier ones.
* Category: the last entry of the last `categories` list of the item's metadata (DIN code:
  `x[-1][-1]`), or the last of a 2018-style `category` list; no metadata -> id 0 (counted).
* Vocabularies: items (and their categories) that occur in positions 0..n-3, i.e. visible in
  training, with `min_item_count`; valid/test-only items map to 0 (OOV).
* Input: `path` is a directory with reviews_<Cat>_5.json[.gz] and meta_<Cat>.json[.gz]
  (strict JSON lines or the older python-literal lines, detected per line).
"""
from __future__ import annotations

import os

import numpy as np

from seqrec_jax.data import common, raw
from seqrec_jax.data.common import Prepared
from seqrec_jax.data.features import DataError, DataSpec, Task

DEFAULTS = dict(
    # directory with reviews_<category>_5.json(.gz) + meta_<category>.json(.gz)
    path='',
    category='Electronics',  # DIN paper: Electronics 5-core
    max_len=50,              # L: newest behaviours kept
    neg_seed=1234,           # negative sampling (the DIN code seeds random with 1234)
    same_time_history=True,  # DIN code: sorted prefix (same-day reviews count as history)
    min_item_count=1,        # counted over training-visible positions
    skip_bad_rows=False,
)
HOMEPAGE = 'https://jmcauley.ucsd.edu/data/amazon/'
CITATION = ('R. He and J. McAuley. Ups and downs: Modeling the visual evolution of fashion '
            'trends with one-class collaborative filtering. WWW 2016. / J. McAuley et al. '
            'Image-based recommendations on styles and substitutes. SIGIR 2015.')


def fields(cfg) -> dict:
  return common.sequence_fields(int(cfg['max_len']))


def _find(cfg) -> tuple[str, str]:
  path, cat = cfg['path'], cfg['category']
  if not path:
    raise DataError('config.data.amazon.path is empty: point it at a directory holding '
                    f'reviews_{cat}_5.json(.gz) and meta_{cat}.json(.gz) from {HOMEPAGE} '
                    '(nothing is downloaded at run time)')
  if not os.path.isdir(path):
    raise DataError(f'config.data.amazon.path={path!r} is not a directory')
  found = []
  for names in ([f'reviews_{cat}_5.json', f'{cat}_5.json'], [f'meta_{cat}.json']):
    hits = [os.path.join(path, n + gz) for n in names for gz in ('', '.gz')
            if os.path.exists(os.path.join(path, n + gz))]
    if not hits:
      raise DataError(f'{path}: none of {[n + "(.gz)" for n in names]} found '
                      f'(config.data.amazon.category={cat!r}); '
                      f'it holds {sorted(os.listdir(path))[:10]}')
    found.append(hits[0])
  return found[0], found[1]


def source_fingerprint(cfg) -> list:
  return raw.fingerprint(list(_find(cfg)))


def tag(cfg) -> str:
  return cfg['category']


def _str(rec, key):
  v = rec[key] if key in rec else None
  if not isinstance(v, str) or not v:
    raise ValueError(f'{key!r} is {v!r}, expected a non-empty string')
  return v


def _review(rec):
  t = rec.get('unixReviewTime')
  if isinstance(t, bool) or not isinstance(t, (int, float)) or t != int(t) or t < 0:
    raise ValueError(f"'unixReviewTime' is {t!r}, expected a non-negative integer")
  return _str(rec, 'reviewerID'), _str(rec, 'asin'), int(t)


def _meta(rec):
  cats = rec.get('categories')
  if cats is not None:
    if not (isinstance(cats, list) and all(isinstance(c, list) for c in cats)):
      raise ValueError(f"'categories' is {cats!r}, expected a list of lists of strings")
    last = cats[-1][-1] if cats and cats[-1] else None
  else:
    cats = rec.get('category')
    if cats is not None and not isinstance(cats, list):
      raise ValueError(f"'category' is {cats!r}, expected a list of strings")
    last = cats[-1] if cats else None
  if last is not None and not isinstance(last, str):
    raise ValueError(f'category {last!r} is not a string')
  return _str(rec, 'asin'), (last or None)


def _read(path, bad, extract):
  with raw.open_binary(path) as f:
    return [x for _, x in raw.read_records(raw.iter_lines(f, path, bad), path, bad, extract)]


def sample_negatives(user: np.ndarray, owned_keys: np.ndarray, num_items: int, stride: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, int]:
  """Uniform ids in [1, num_items] with (user * stride + id) not in the sorted `owned_keys`."""
  neg = rng.integers(1, num_items + 1, size=len(user))
  todo = np.arange(len(user))
  redraws = 0
  for _ in range(1000):
    keys = user[todo] * stride + neg[todo]
    pos = np.minimum(np.searchsorted(owned_keys, keys), len(owned_keys) - 1)
    todo = todo[owned_keys[pos] == keys]
    if not len(todo):
      return neg, redraws
    redraws += len(todo)
    neg[todo] = rng.integers(1, num_items + 1, size=len(todo))
  raise DataError(f'amazon: could not sample negatives for {len(todo)} examples: their users '
                  'reviewed (almost) every item in the vocabulary')


def prepare(cfg) -> Prepared:
  L = int(cfg['max_len'])
  rpath, mpath = _find(cfg)
  bad = raw.BadRows(bool(cfg['skip_bad_rows']), 'config.data.amazon.skip_bad_rows')
  reviews = _read(rpath, bad, _review)
  if not reviews:
    raise DataError(f'{rpath}: no reviews')
  meta = dict(_read(mpath, bad, _meta))
  user_raw, item_raw, ts = (np.array(c) for c in zip(*reviews))
  order = np.lexsort((item_raw, ts, user_raw))
  user_raw, item_raw, ts = user_raw[order], item_raw[order], ts[order].astype(np.int64)
  users, uidx = np.unique(user_raw, return_inverse=True)
  seq_start = common.group_starts(uidx)
  k = np.arange(len(uidx)) - seq_start
  n = np.bincount(uidx)[uidx]
  split = np.full(len(k), -1, np.int8)
  split[(k >= 1) & (k <= n - 3)] = common.TRAIN
  split[(k >= 1) & (k == n - 2)] = common.VALID
  split[(k >= 1) & (k == n - 1)] = common.TEST
  visible = k <= n - 3

  items, item_inv = np.unique(item_raw, return_inverse=True)
  item_cat = np.array([meta.get(a) or '' for a in items.tolist()], dtype=str)[item_inv]
  item_vocab = common.build_vocab(item_raw[visible], cfg['min_item_count'])
  cate_vocab = common.build_vocab(item_cat[visible & (item_cat != '')])
  item_id = common.lookup(item_vocab, item_raw)
  cate_id = np.where(item_cat != '', common.lookup(cate_vocab, item_cat), 0).astype(np.int32)
  V = len(item_vocab)
  if V < 2:
    raise DataError(f'{rpath}: only {V} items visible in training; too few for negatives')
  cate_of_id = np.zeros(V + 1, np.int32)
  known = item_id > 0                    # every vocab item occurs, so every id gets its category
  cate_of_id[item_id[known]] = cate_id[known]

  ex = np.flatnonzero(split >= 0)        # review index of each positive target
  stride = V + 1
  owned = np.unique(uidx.astype(np.int64) * stride + item_id)
  neg, redraws = sample_negatives(uidx[ex].astype(np.int64), owned, V, stride,
                                  np.random.default_rng(int(cfg['neg_seed'])))
  two = np.repeat(ex, 2)                 # pos, neg, pos, neg, ...
  target = np.stack([item_id[ex], neg], 1).ravel().astype(np.int32)
  if cfg['same_time_history']:
    hist_end = two
  else:
    hist_end = common.group_starts(uidx * (ts.max() + 1) + ts)[two]
  columns = {'user_id': (uidx[two] + 1).astype(np.int32), 'target_item': target,
             'target_cate': np.stack([cate_id[ex], cate_of_id[neg]], 1).ravel(),
             'label': np.tile(np.array([1, 0], np.float32), len(ex))}
  ex_split = split[two]
  starts = seq_start[two]

  def gen(split_id):
    rows = np.flatnonzero(ex_split == split_id)
    return lambda: common.window_chunks(rows, hist_end, starts, columns)

  info = {'reviews_file': rpath, 'meta_file': mpath, 'reviews': int(len(order)),
          'users': int(len(users)), 'items_reviewed': int(len(items)),
          'meta_records': len(meta), 'item_vocab': V + 1, 'cate_vocab': int(len(cate_vocab)) + 1,
          'reviews_without_category': int((item_cat == '').sum()),
          'negative_redraws': int(redraws),
          'reviews_per_user': common.hist_len_summary(np.bincount(uidx).astype(np.float64)),
          'positions': 'train k=1..n-3, valid k=n-2, test k=n-1 (pos + sampled neg each)'}
  info.update(bad.report())
  spec = DataSpec(num_users=len(users) + 1, num_items=V + 1, num_cates=len(cate_vocab) + 1,
                  max_len=L, tasks=(Task('click'),))
  return Prepared(spec, {s: gen(i) for s, i in common.SPLIT_IDS.items()}, info,
                  behaviours={'hist_items': item_id, 'hist_cates': cate_id})
