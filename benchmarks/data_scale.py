r"""Paper-scale data (issue 25): raw files in the published layouts, and the data path on them.

  python -m benchmarks.data_scale --scale=0.1                    # quick: every dataset and case
  python -m benchmarks.data_scale --datasets=movielens20m --cases=generate,prepare,read,train

Generators (vectorised numpy + pyarrow, block by block; seeded, so a rerun writes the same bytes)
write synthetic stand-ins with the real files' names, layouts and sizes (at --scale=1):

* movielens20m: `ml-20m/ratings.csv` (20,000,263 ratings of 138,493 users on 27,278 movies; every
  user >= 20 ratings; log-normal user activity; Zipf movie popularity, (user, movie) unique;
  half stars 0.5..5.0 with ML-20M's frequencies; timestamps in sessions over each user's span of
  days to years, 1995-2015; rows sorted by userId then movieId like the real file) and
  `ml-20m/movies.csv` (quoted titles with commas and doubled quotes, 1-4 alphabetical genres of
  the 19, some `(no genres listed)`).
* amazon: `reviews_Electronics_5.json.gz` (strict JSON lines, 1,689,188 reviews of 192,403 users
  on 63,001 items, a 5-core: every user and item >= 5 reviews, unique (user, item) pairs;
  short review text) and `meta_Electronics.json.gz` (python-literal lines as in the 2014 dump,
  498,196 products covering the 63,001, 801 last-level categories all used by reviewed items).
* criteo: `dac/train.txt` (45,840,617 tab-separated lines: label with a 0.256 positive rate, 13
  heavy-tailed integers (I2 with -1..-3), 26 categorical 8-hex tokens with Zipf frequencies over
  the Kaggle per-field cardinalities (3 .. 10.1M); per-field missing rates; ~11 GB).

Cases (each one JSON line to stdout and --out, with dataset, case, scale, rows, seconds, rows_per_s,
peak_rss_mb, load average and git commit):
* generate: writes the raw files (skipped, and reported as such, when they already exist).
* prepare: `seqrec_jax.data.load_dataset` on the dataset's config (data.in_memory='never') in a
  fresh child process with a fresh data.data_dir; rows = raw rows, peak RSS from wait4().
* read: random train batches (sorted row ids, as the trainer reads) of --batches rows, from disk
  (data.in_memory='never') cold-ish (the prepared files' pages evicted with
  posix_fadvise(DONTNEED) first) and warm (files read once before), and from memory ('always').
* train: `python -m seqrec_jax.main --config=seqrec_jax/configs/din.py:movielens` at batch
  --train_batch for --train_steps steps, data.in_memory never vs always (movielens20m only);
  examples/s is the trainer's own (after the first, compiling, step), read from metrics.jsonl.
"""
from __future__ import annotations

import datetime
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import time

from absl import app, flags
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASETS = ('movielens20m', 'amazon', 'criteo')
CASES = ('generate', 'prepare', 'read', 'train')
GEN_VERSION = 1

def _define_flags():
  """Flags are defined only when this module runs as a program: tests import it beside
  other mains whose --scale/--seed/--out/--workdir flags would collide in absl."""
  global _SCALE, _DATASETS, _CASES, _WORKDIR, _OUT, _SEED, _BATCHES  # pylint: disable=global-statement
  global _READ_SECONDS, _COLD_BATCHES, _TRAIN_STEPS, _TRAIN_BATCH, _TRAIN_REPEATS
  global _TRAIN_ORDER, _TRAIN_TIMEOUT, _CHILD, _DATASET, _TABLE
  _SCALE = flags.DEFINE_float('scale', 1.0,
                              'Fraction of the published sizes (rows, users, items).')
  _DATASETS = flags.DEFINE_list('datasets', list(DATASETS), f'Subset of {DATASETS}.')
  _CASES = flags.DEFINE_list('cases', list(CASES), f'Subset of {CASES}.')
  _WORKDIR = flags.DEFINE_string('workdir', '/work/scale_data',
                                 'Raw and prepared files go here.')
  _OUT = flags.DEFINE_string('out', '', 'JSON lines file (default benchmarks/results/data_scale/'
                             '<UTC date>.jsonl); "-" = stdout only.')
  _SEED = flags.DEFINE_integer('seed', 0, 'Generator seed.')
  _BATCHES = flags.DEFINE_list('batches', ['256', '1024', '4096'], 'Read case batch sizes.')
  _READ_SECONDS = flags.DEFINE_float('read_seconds', 3.0, 'Warm reads: time per batch size.')
  _COLD_BATCHES = flags.DEFINE_integer('cold_batches', 20, 'Cold-ish reads: batches per size.')
  _TRAIN_STEPS = flags.DEFINE_integer('train_steps', 300, 'Train case steps (after compile).')
  _TRAIN_BATCH = flags.DEFINE_integer('train_batch', 1024, 'Train case batch size.')
  _TRAIN_REPEATS = flags.DEFINE_integer('train_repeats', 2, 'Train case: pairs of runs, ordered '
                                        'ABBA (never, always, always, never, ...).')
  _TRAIN_ORDER = flags.DEFINE_list('train_order', ['never', 'always'], 'Train case: data.in_memory '
                                    'modes in the order run within each repeat.')
  _TRAIN_TIMEOUT = flags.DEFINE_integer('train_timeout', 1800, 'Seconds per train run.')
  _CHILD = flags.DEFINE_string('child', '', 'Internal: run one case in this process '
                               '(generate | prepare | read) and print its record.')
  _DATASET = flags.DEFINE_string('child_dataset', '', 'Internal: the child\'s dataset.')
  _TABLE = flags.DEFINE_string('table', '', 'Print the markdown table of this JSON lines file '
                               '(the last record of each dataset/case/detail) and exit.')


# Published sizes (scale 1).
ML_RATINGS, ML_USERS, ML_MOVIES, ML_MAX_MOVIE_ID = 20_000_263, 138_493, 27_278, 131_262
AMZ_REVIEWS, AMZ_USERS, AMZ_ITEMS, AMZ_META, AMZ_CATES = 1_689_188, 192_403, 63_001, 498_196, 801
CRITEO_LINES = 45_840_617
# Kaggle DAC distinct values per categorical field (C1..C26) and missing rates (approximate).
CRITEO_CARD = (1460, 583, 10_131_227, 2_202_608, 305, 24, 12_517, 633, 3, 93_145, 5_683,
               8_351_593, 3_194, 27, 14_992, 5_461_306, 10, 5_652, 2_173, 4, 7_046_547, 18, 15,
               286_181, 105, 142_572)
CRITEO_CAT_MISSING = (0, 0, .034, .034, 0, .12, 0, 0, 0, .034, 0, .034, 0, 0, 0, .034, 0, 0, .44,
                      .44, .034, .76, 0, .034, .44, .44)
CRITEO_INT_MISSING = (.45, 0, .21, .22, .026, .22, .043, .0005, .043, .45, .043, .77, .22)
CRITEO_INT_MEDIAN = (1, 3, 7, 5, 3000, 40, 4, 10, 40, 1, 2, 1, 4)
CRITEO_POS_RATE = 0.256
ML_GENRES = ('Action', 'Adventure', 'Animation', 'Children', 'Comedy', 'Crime', 'Documentary',
             'Drama', 'Fantasy', 'Film-Noir', 'Horror', 'IMAX', 'Musical', 'Mystery', 'Romance',
             'Sci-Fi', 'Thriller', 'War', 'Western')       # alphabetical, as listed in the files
ML_GENRE_W = (.12, .07, .03, .04, .16, .07, .04, .2, .04, .01, .05, .01, .02, .03, .08, .04, .1,
              .03, .02)
ML_STARS = tuple(f'{x / 2:.1f}' for x in range(1, 11))    # 0.5 .. 5.0
ML_STAR_P = (.012, .034, .013, .072, .044, .21, .11, .28, .079, .146)   # ML-20M's frequencies
WORDS = ('the', 'a', 'good', 'great', 'cable', 'works', 'fine', 'sound', 'battery', 'price',
         'quality', 'screen', 'easy', 'to', 'use', 'not', 'very', 'would', 'buy', 'again',
         'item', 'product', 'and', 'it', 'is', 'for', 'my', 'with', 'this', 'camera', 'case',
         'charger', 'fast', 'shipping', 'love', 'poor', 'returned', 'excellent', 'power',
         'light', 'small', 'old', 'new', 'laptop', 'phone', 'mouse', 'keyboard', 'usb', 'hdmi',
         'adapter', 'speaker', 'cheap', 'broke', 'after', 'month', 'week', 'day', 'recommend')
NAMES = ('John', 'Mary', 'J.', 'Amazon Customer', 'David', 'Linda', 'Chris', 'K. Smith', 'Bob',
         'Sarah', 'Mike', 'Anna', 'Tom', 'Lisa', 'Paul', 'Kim')


# --------------------------------------------------------------------------- shared helpers

def _pa():
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.compute as pc  # pylint: disable=g-import-not-at-top
  return pa, pc


def _n(full: int, scale: float, lo: int = 1) -> int:
  return max(lo, int(round(full * scale)))


def allocate(total: int, weights: np.ndarray, lo: int, hi: int, rng) -> np.ndarray:
  """Integer counts in [lo, hi] summing to `total`, proportional to `weights` above lo."""
  n = len(weights)
  rest, room = total - lo * n, hi - lo
  if not 0 <= rest <= room * n:
    raise ValueError(f'cannot allocate {total} over {n} in [{lo}, {hi}]')
  w = np.asarray(weights, np.float64)
  share = w / w.sum() * rest
  for _ in range(100):                        # water-filling at the cap
    over = share > room
    if not over.any():
      break
    excess = float((share[over] - room).sum())
    share[over] = room
    free = share < room
    share[free] += excess * w[free] / w[free].sum()
  count = np.minimum(np.floor(share).astype(np.int64), room)
  left = int(rest - count.sum())
  if left:
    frac = np.where(count < room, share - count + 1e-9, 0)
    count[rng.choice(n, left, replace=False, p=frac / frac.sum())] += 1
  return lo + count


def zipf_ranks(rng, k: int, n: int, s: float, offset: float = 0.0) -> np.ndarray:
  """n draws of ranks 0..k-1 with P(r) ~ (r + 1 + offset)^-s (continuous inverse CDF)."""
  u = rng.random(n)
  a, b = 1.0 + offset, k + 1.0 + offset
  if abs(s - 1) < 1e-9:
    x = a * np.exp(u * np.log(b / a))
  else:
    e = 1.0 - s
    x = (a ** e + u * (b ** e - a ** e)) ** (1 / e)
  return np.minimum((x - a).astype(np.int64), k - 1)


def _write_text(f, arr) -> None:
  """Writes the concatenated bytes of a pyarrow string (chunked) array (no separators)."""
  for chunk in getattr(arr, 'chunks', [arr]):
    if len(chunk):
      off = np.frombuffer(chunk.buffers()[1], np.int32, len(chunk) + 1, offset=chunk.offset * 4)
      f.write(memoryview(chunk.buffers()[2])[int(off[0]):int(off[-1])])


def _join(*parts):
  """Element-wise concatenation of string arrays and scalars (nulls -> '')."""
  _, pc = _pa()
  return pc.binary_join_element_wise(*parts, '', null_handling='replace', null_replacement='')


def _str(values):
  pa, pc = _pa()
  return pc.cast(pa.array(values), pa.string())


def _take(labels, idx):
  pa, _ = _pa()
  return pa.array(labels, pa.string()).take(pa.array(np.asarray(idx, np.int64)))


def _words(rng, n: int, lo: int, hi: int, vocab=WORDS):
  """n strings of lo..hi random words from vocab, space-separated."""
  pa, pc = _pa()
  k = rng.integers(lo, hi + 1, n)
  off = np.zeros(n + 1, np.int32)
  np.cumsum(k, out=off[1:])
  words = _take(vocab, rng.integers(0, len(vocab), int(off[-1])))
  return pc.binary_join(pa.ListArray.from_arrays(pa.array(off), words), ' ')


_HEX4 = np.frombuffer(b''.join(f'{i:04x}'.encode() for i in range(1 << 16)), np.uint32)


def hex8(x: np.ndarray, missing: np.ndarray | None = None):
  """uint32 values as 8-char lowercase hex strings (pyarrow string array; missing -> null)."""
  pa, _ = _pa()
  x = np.asarray(x, np.uint32)
  n = len(x)
  # 4 hex chars per uint32 of _HEX4 (bytes in order): high half, then low half.
  data = np.stack([np.take(_HEX4, x >> 16), np.take(_HEX4, x & 0xFFFF)], 1)
  off = np.arange(0, 8 * n + 1, 8, dtype=np.int32)
  if missing is None or not missing.any():
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(off), pa.py_buffer(data)])
  valid = np.packbits(~missing, bitorder='little')
  return pa.Array.from_buffers(pa.string(), n, [pa.py_buffer(valid), pa.py_buffer(off),
                                                pa.py_buffer(data)], int(missing.sum()))


def _unique_codes(rng, n: int, length: int, alphabet: bytes, prefix: bytes = b'') -> np.ndarray:
  """n distinct random codes (numpy 'S' strings): prefix + `length` chars of alphabet."""
  alpha = np.frombuffer(alphabet, np.uint8)
  out = np.zeros(0, f'S{len(prefix) + length}')
  while len(out) < n:
    m = n - len(out)
    body = alpha[rng.integers(0, len(alpha), (m, length))]
    pre = np.broadcast_to(np.frombuffer(prefix, np.uint8), (m, len(prefix)))
    codes = np.ascontiguousarray(np.concatenate([pre, body], 1)).view(out.dtype).ravel()
    out = np.unique(np.concatenate([out, codes]))
  return rng.permutation(out[:n])


def _done(path: str, meta: dict) -> bool:
  try:
    with open(os.path.join(path, 'GENERATED.json')) as f:
      return json.load(f)['params'] == meta
  except (OSError, ValueError, KeyError):
    return False


def _mark(path: str, meta: dict, stats: dict) -> None:
  with open(os.path.join(path, 'GENERATED.json'), 'w') as f:
    json.dump({'params': meta, 'stats': stats}, f, indent=1)


def _dedupe_pairs(user, item, resample, rounds: int = 60):
  """Redraws item[i] (via resample(rows, round)) until every (user, item) pair is unique."""
  base = int(item.max()) + 1 if len(item) else 1
  rows = np.arange(len(user))
  for r in range(rounds):
    key = user[rows].astype(np.int64) * (base + 1) + item[rows]
    order = np.argsort(key, kind='stable')
    ks = key[order]
    dup = order[1:][ks[1:] == ks[:-1]]
    if not len(dup):
      return item
    item[rows[dup]] = resample(rows[dup], r)
    hit = np.unique(user[rows[dup]])
    rows = rows[np.isin(user[rows], hit)]
    base = max(base, int(item.max()) + 1)
  raise RuntimeError('could not make (user, item) pairs unique')


# --------------------------------------------------------------------------- MovieLens-20M

def gen_movielens(root: str, scale: float, seed: int) -> dict:
  """Writes <root>/ml-20m/{ratings,movies}.csv; returns stats."""
  pa, pc = _pa()
  rng = np.random.default_rng([seed, 20])
  U, M = _n(ML_USERS, scale, 2), _n(ML_MOVIES, scale, 1000)
  N = max(_n(ML_RATINGS, scale), 20 * U)
  # Users: 20 + log-normal (ML-20M: median 68, mean 144, max 9,254 ratings).
  counts = allocate(N, rng.lognormal(0.0, 1.38, U), 20, min(9254, int(0.6 * M)), rng)
  user = np.repeat(np.arange(U, dtype=np.int64), counts)
  # Movies: Zipf popularity over a random rank order; ids a sorted sample of 1..131,262.
  max_id = max(M, _n(ML_MAX_MOVIE_ID, scale))
  movie_ids = np.sort(rng.choice(np.arange(1, max_id + 1), M, replace=False))
  rank_to_movie = rng.permutation(M)

  def draw(rows, r):
    if r < 8:
      return rank_to_movie[zipf_ranks(rng, M, len(rows), 1.5, 100 * max(scale, 0.01))]
    return rng.integers(0, M, len(rows))          # the heaviest users: fill the tail uniformly

  movie = _dedupe_pairs(user, draw(np.arange(N), 0), draw)
  order = np.lexsort((movie_ids[movie], user))   # the file is sorted by userId, movieId
  user, movie = user[order], movie[order]
  # Time: each user rates in sessions spread over a span of hours to years, 1995-2015.
  t_lo, t_hi = 789_652_009, 1_427_784_002
  span = np.clip(rng.lognormal(np.log(30 * 86400), 2.2, U), 3600, 0.9 * (t_hi - t_lo))
  start = t_lo + rng.random(U) * (t_hi - t_lo - span)
  n_sess = 1 + rng.poisson(counts / 25.0)
  sess_base = np.concatenate([[0], np.cumsum(n_sess)[:-1]])
  sess_time = np.repeat(start, n_sess) + rng.random(int(n_sess.sum())) * np.repeat(span, n_sess)
  sess = sess_base[user] + (rng.random(N) * n_sess[user]).astype(np.int64)
  ts = np.minimum(sess_time[sess] + rng.integers(0, 1800, N), t_hi).astype(np.int64)
  stars = rng.choice(len(ML_STARS), N, p=np.asarray(ML_STAR_P) / sum(ML_STAR_P))
  d = os.path.join(root, 'ml-20m')
  os.makedirs(d, exist_ok=True)
  block = 1 << 21
  with open(os.path.join(d, 'ratings.csv'), 'wb') as f:
    f.write(b'userId,movieId,rating,timestamp\n')
    for s in range(0, N, block):
      sl = slice(s, s + block)
      _write_text(f, _join(_str(user[sl] + 1), ',', _str(movie_ids[movie[sl]]), ',',
                           _take(ML_STARS, stars[sl]), ',', _str(ts[sl]), '\n'))
  # movies.csv: 'Title words (year)', some 'X, The (year)' (quoted), some with "quotes".
  title = _words(rng, M, 1, 4, tuple(w.capitalize() for w in WORDS))
  year = _str(rng.integers(1915, 2016, M))
  kind = rng.random(M)
  title = pc.if_else(pa.array(kind < 0.12), _join(title, ', The'), title)
  title = pc.if_else(pa.array(kind > 0.995), _join('"', title, '" Live'), title)
  title = _join(title, ' (', year, ')')
  needs = pc.or_(pc.match_substring(title, ','), pc.match_substring(title, '"'))
  title = pc.if_else(needs, _join('"', pc.replace_substring(title, '"', '""'), '"'), title)
  p = np.asarray(ML_GENRE_W) / sum(ML_GENRE_W)
  k = rng.choice([1, 2, 3, 4], M, p=[.35, .35, .2, .1])
  score = np.log(p)[None, :] + rng.gumbel(size=(M, len(p)))
  top = np.argsort(-score, axis=1)
  chosen = np.zeros((M, len(p)), bool)
  np.put_along_axis(chosen, top[:, :4], np.arange(4)[None, :] < k[:, None], axis=1)
  none = rng.random(M) < 0.01
  chosen[none] = False
  rows_, cols_ = np.nonzero(chosen)               # row-major: alphabetical within a movie
  off = np.zeros(M + 1, np.int32)
  np.cumsum(np.bincount(rows_, minlength=M), out=off[1:])
  genres = pc.binary_join(pa.ListArray.from_arrays(pa.array(off), _take(ML_GENRES, cols_)), '|')
  genres = pc.if_else(pa.array(none), '(no genres listed)', genres)
  with open(os.path.join(d, 'movies.csv'), 'wb') as f:
    f.write(b'movieId,title,genres\n')
    _write_text(f, _join(_str(movie_ids), ',', title, ',', genres, '\n'))
  return {'rows': int(N), 'users': int(U), 'movies': int(M),
          'movies_rated': int(len(np.unique(movie))), 'ratings_per_user_max': int(counts.max()),
          'ratings_per_user_median': float(np.median(counts)),
          'positive_rate': float((stars >= 7).mean()),
          'files': [os.path.join(d, 'ratings.csv'), os.path.join(d, 'movies.csv')]}


# --------------------------------------------------------------------------- Amazon Electronics

def _pyquote(arr):
  """Python-literal quoting of a string array without backslashes or double quotes."""
  _, pc = _pa()
  return pc.if_else(pc.match_substring(arr, "'"), _join('"', arr, '"'), _join("'", arr, "'"))


def gen_amazon(root: str, scale: float, seed: int) -> dict:
  """Writes <root>/amazon/{reviews_Electronics_5,meta_Electronics}.json.gz; returns stats."""
  pa, pc = _pa()
  rng = np.random.default_rng([seed, 5])
  U, I = _n(AMZ_USERS, scale, 6), _n(AMZ_ITEMS, scale, 60)
  N = max(_n(AMZ_REVIEWS, scale), 5 * U, 5 * I)
  # 5-core degrees: users 5 + log-normal (max 431 in the real file), items 5 + Zipf (max 4,915).
  du = allocate(N, rng.lognormal(0.0, 1.1, U), 5, min(431, I // 3), rng)
  di = allocate(N, (np.arange(I) + 20.0) ** -1.15, 5, min(max(4915, N // I * 2), U), rng)
  di = di[rng.permutation(I)]
  user = np.repeat(np.arange(U), du)
  item = rng.permutation(np.repeat(np.arange(I), di))

  def swap(rows, r):    # exchange items with random other reviews: degrees stay exact
    del r
    other = rng.integers(0, N, len(rows))
    out = item[other].copy()
    item[other] = item[rows]
    return out

  item = _dedupe_pairs(user, item, swap)
  user_codes = _unique_codes(rng, U, 13, b'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', b'A')
  n_meta = max(I, _n(AMZ_META, scale))
  asins = _unique_codes(rng, n_meta, 7, b'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', b'B00')
  digits = rng.random(n_meta) < 0.1                # some ISBN-like all-digit asins
  asins[digits] = _unique_codes(rng, int(digits.sum()), 10, b'0123456789')
  if len(np.unique(asins)) != n_meta:
    raise RuntimeError('asin collision')
  # Days: each user's reviews within a span ending 2014-07, skewed to the later years.
  d_lo, d_hi = 10_500, 16_270                     # 1998-10 .. 2014-07 (days since 1970)
  span = np.minimum(rng.lognormal(np.log(200), 1.0, U), d_hi - d_lo)
  start = d_lo + rng.beta(4, 1.3, U) * (d_hi - d_lo - span)
  day = (start[user] + rng.random(N) * span[user]).astype(np.int64)
  order = np.lexsort((day, item))                 # the 5-core file is grouped by asin
  user, item, day = user[order], item[order], day[order]
  secs = day * 86400
  pa_user = pa.array(user_codes[user].astype('U'))
  b = np.floor(rng.lognormal(0, 1.5, N) * (rng.random(N) < 0.4)).astype(np.int64)
  a = rng.binomial(b, 0.7)
  overall = rng.choice(5, N, p=[.07, .05, .09, .21, .58])
  name = pc.if_else(pa.array(rng.random(N) < 0.03), None,
                    _join('"reviewerName": "', _take(NAMES, rng.integers(0, len(NAMES), N)),
                          '", '))
  text = _words(rng, N, 8, 40, WORDS + ('\\"great\\"',))
  lines = _join('{"reviewerID": "', pa_user, '", "asin": "', pa.array(asins[item].astype('U')),
                '", ', name, '"helpful": [', _str(a), ', ', _str(b), '], "reviewText": "', text,
                '", "overall": ', _take(('1.0', '2.0', '3.0', '4.0', '5.0'), overall),
                ', "summary": "', _words(rng, N, 1, 6), '", "unixReviewTime": ', _str(secs),
                ', "reviewTime": "',
                pc.strftime(pa.array(secs.astype('datetime64[s]')), format='%m %d, %Y'), '"}\n')
  d = os.path.join(root, 'amazon')
  os.makedirs(d, exist_ok=True)
  with gzip.open(os.path.join(d, 'reviews_Electronics_5.json.gz'), 'wb', compresslevel=1) as f:
    _write_text(f, lines)
  del lines, text
  # Metadata: reviewed items cover all 801 leaves; python-literal dicts like the 2014 dump.
  C = min(AMZ_CATES, n_meta)
  leaf = np.empty(n_meta, np.int64)
  first = rng.permutation(I)[:min(C, I)]
  leaf[:I] = rng.permutation(C)[zipf_ranks(rng, C, I, 1.0, 5)]
  leaf[first] = np.arange(len(first))
  leaf[I:] = rng.permutation(C)[zipf_ranks(rng, C, n_meta - I, 1.0, 5)]
  level2 = ('Computers & Accessories', 'Camera & Photo', 'Accessories & Supplies',
            'Portable Audio & Video', 'Car & Vehicle Electronics', 'Home Audio',
            'Television & Video', 'Cell Phones & Accessories', "Kids' Electronics",
            'GPS & Navigation', 'Office Electronics', 'Security & Surveillance')
  leaf_names = _join(_words(rng, C, 1, 3, tuple(w.capitalize() for w in WORDS)), ' ',
                     _str(np.arange(C)))
  leaf_names = pc.if_else(pa.array(rng.random(C) < 0.03), _join(leaf_names, "'s"), leaf_names)
  l2 = rng.integers(0, len(level2), C)
  path = _join("['Electronics', ", _pyquote(_take(level2, l2)), ', ',
               _pyquote(_join(_take(level2, l2), ' Parts ', _str(np.arange(C) % 37))), ', ',
               _pyquote(leaf_names), ']')
  cats = path.take(pa.array(leaf))
  two = pa.array(rng.random(n_meta) < 0.2)        # some items list two paths; the last counts
  cats = pc.if_else(two, _join("[['Electronics', 'Computers & Accessories'], ", cats, ']'),
                    _join('[', cats, ']'))
  title = _words(rng, n_meta, 2, 8, tuple(w.capitalize() for w in WORDS) + ("Kid's",))
  title = pc.if_else(pa.array(rng.random(n_meta) < 0.1), None,
                     _join("'title': ", _pyquote(title), ', '))
  price = pc.if_else(pa.array(rng.random(n_meta) < 0.3), None,
                     _join("'price': ", _str(np.round(rng.lognormal(3, 1, n_meta), 2)), ', '))
  rank = _join("'salesRank': {'Electronics': ", _str(rng.integers(1, 500_000, n_meta)), '}, ')
  meta_order = rng.permutation(n_meta)
  pa_asin = pa.array(asins.astype('U'))
  lines = _join("{'asin': '", pa_asin, "', ", title, price,
                "'imUrl': 'http://ecx.images-amazon.com/images/I/", pa_asin, ".jpg', ",
                rank, "'categories': ", cats, '}\n').take(pa.array(meta_order))
  with gzip.open(os.path.join(d, 'meta_Electronics.json.gz'), 'wb', compresslevel=1) as f:
    _write_text(f, lines)
  return {'rows': int(N), 'users': int(U), 'items': int(I), 'meta_records': int(n_meta),
          'leaf_categories_reviewed': int(len(np.unique(leaf[:I]))),
          'reviews_per_user_min': int(du.min()), 'reviews_per_item_min': int(di.min()),
          'reviews_per_user_max': int(du.max()), 'reviews_per_item_max': int(di.max()),
          'files': [os.path.join(d, 'reviews_Electronics_5.json.gz'),
                    os.path.join(d, 'meta_Electronics.json.gz')]}


# --------------------------------------------------------------------------- Criteo DAC

def criteo_block(n: int, rng, scale: float):
  """One block of n Criteo lines as a pyarrow table (label, I1..I13, C1..C26)."""
  pa, _ = _pa()
  cols = {'label': pa.array((rng.random(n) < CRITEO_POS_RATE).astype(np.int8))}
  for j, (miss, med) in enumerate(zip(CRITEO_INT_MISSING, CRITEO_INT_MEDIAN)):
    v = np.floor(med * np.exp(rng.standard_normal(n, np.float32) * 1.6)).astype(np.int64)
    if j == 1:                                    # I2: some -1..-3
      v = np.where(rng.random(n) < 0.04, -rng.integers(1, 4, n), v)
    cols[f'I{j + 1}'] = pa.array(v, mask=rng.random(n) < miss if miss else None)
  for j, (card, miss) in enumerate(zip(CRITEO_CARD, CRITEO_CAT_MISSING)):
    k = max(2, min(card, int(card * max(scale, 1e-3) ** 0.5)) if scale < 1 else card)
    s = 1.05 if k > 100_000 else 1.2
    r = zipf_ranks(rng, k, n, s, 0.5).astype(np.uint64)
    h = ((r * np.uint64(2654435761 + 2 * j) + np.uint64(0x9E3779B9 * (j + 1))) &
         np.uint64(0xFFFFFFFF)).astype(np.uint32)
    cols[f'C{j + 1}'] = hex8(h, rng.random(n) < miss if miss else None)
  return pa.table(cols)


def gen_criteo(root: str, scale: float, seed: int, block: int = 1 << 20) -> dict:
  import pyarrow.csv as pcsv  # pylint: disable=g-import-not-at-top
  N = _n(CRITEO_LINES, scale, 100)
  d = os.path.join(root, 'dac')
  os.makedirs(d, exist_ok=True)
  opts = pcsv.WriteOptions(include_header=False, delimiter='\t', quoting_style='none')
  pos = 0
  with open(os.path.join(d, 'train.txt'), 'wb') as f:
    for b, s in enumerate(range(0, N, block)):
      t = criteo_block(min(block, N - s), np.random.default_rng([seed, 7, b]), scale)
      pos += int(np.asarray(t['label']).sum())
      pcsv.write_csv(t, f, opts)
  return {'rows': int(N), 'positive_rate': pos / N, 'files': [os.path.join(d, 'train.txt')]}


GENERATORS = {'movielens20m': gen_movielens, 'amazon': gen_amazon, 'criteo': gen_criteo}


# --------------------------------------------------------------------------- measurement

def _git_commit() -> str:
  try:
    return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return ''


def _record(dataset: str, case: str, scale: float, rows: int, seconds: float, **extra) -> dict:
  rec = {'dataset': dataset, 'case': case, 'scale': scale, 'rows': int(rows),
         'seconds': round(float(seconds), 3),
         'rows_per_s': round(rows / seconds, 1) if seconds > 0 else None,
         'peak_rss_mb': None, 'loadavg': [round(x, 2) for x in os.getloadavg()],
         'git_commit': _git_commit(), 'cpus': os.cpu_count(),
         'time_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}
  rec.update(extra)
  return rec


def raw_dir(workdir: str, scale: float) -> str:
  return os.path.join(workdir, 'raw', f'scale_{scale:g}')


def prepared_dir(workdir: str, dataset: str, scale: float) -> str:
  return os.path.join(workdir, 'prepared', f'{dataset}_scale_{scale:g}')


def data_overrides(dataset: str, workdir: str, scale: float) -> dict:
  """config.data overrides that point the project's loader at the generated files."""
  raw = raw_dir(workdir, scale)
  out = {'data.data_dir': prepared_dir(workdir, dataset, scale)}
  if dataset == 'movielens20m':
    out.update({'data.name': 'movielens', 'data.movielens.path': os.path.join(raw, 'ml-20m')})
  elif dataset == 'amazon':
    out.update({'data.name': 'amazon', 'data.amazon.path': os.path.join(raw, 'amazon')})
  else:
    out.update({'data.name': 'criteo', 'data.criteo.path': os.path.join(raw, 'dac')})
  return out


def config_spec(dataset: str) -> str:
  return {'movielens20m': 'din.py:movielens', 'amazon': 'din.py:amazon',
          'criteo': 'dcn.py:criteo'}[dataset]


def _data_config(dataset: str, workdir: str, scale: float, in_memory: str):
  from seqrec_jax.configs import load_config  # pylint: disable=g-import-not-at-top
  over = dict(data_overrides(dataset, workdir, scale), **{'data.in_memory': in_memory})
  return load_config(config_spec(dataset), over).data


def generate(dataset: str, workdir: str, scale: float, seed: int) -> dict:
  root = raw_dir(workdir, scale)
  sub = {'movielens20m': 'ml-20m', 'amazon': 'amazon', 'criteo': 'dac'}[dataset]
  path = os.path.join(root, sub)
  params = {'dataset': dataset, 'scale': scale, 'seed': seed, 'version': GEN_VERSION}
  if _done(path, params):
    with open(os.path.join(path, 'GENERATED.json')) as f:
      st = json.load(f)['stats']
    return _record(dataset, 'generate', scale, st['rows'], st.get('seconds', 0.0), skipped=True,
                   **{k: v for k, v in st.items() if k not in ('rows', 'seconds')})
  shutil.rmtree(path, ignore_errors=True)
  t0 = time.time()
  st = GENERATORS[dataset](root, scale, seed)
  st['seconds'] = round(time.time() - t0, 3)
  st['bytes'] = int(sum(os.path.getsize(p) for p in st['files']))
  _mark(path, params, st)
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # the child's own
  return _record(dataset, 'generate', scale, st['rows'], st['seconds'], skipped=False,
                 **dict({k: v for k, v in st.items() if k not in ('rows', 'seconds')},
                        peak_rss_mb=round(peak, 1)))


def run_child(args: list[str], timeout: float | None = None) -> tuple[int, str, float, float]:
  """Runs a child process; returns (exit code, stdout, wall seconds, its peak RSS in MB)."""
  t0 = time.time()
  with open(os.devnull, 'rb') as devnull:
    p = subprocess.Popen(args, cwd=ROOT, stdin=devnull, stdout=subprocess.PIPE, text=True)
    out = p.stdout.read() if timeout is None else _read_with_timeout(p, timeout)
    _, status, usage = os.wait4(p.pid, 0)
  p.returncode = os.waitstatus_to_exitcode(status)
  return p.returncode, out, time.time() - t0, usage.ru_maxrss / 1024


def _read_with_timeout(p, timeout):
  import threading  # pylint: disable=g-import-not-at-top
  timer = threading.Timer(timeout, p.kill)
  timer.start()
  try:
    return p.stdout.read()
  finally:
    timer.cancel()


def _child_record(dataset: str, case: str, scale: float, workdir: str, extra=()) -> list[dict]:
  args = [sys.executable, '-m', 'benchmarks.data_scale', f'--child={case}',
          f'--child_dataset={dataset}', f'--scale={scale:g}', f'--workdir={workdir}',
          f'--batches={",".join(_BATCHES.value)}', f'--read_seconds={_READ_SECONDS.value}',
          f'--cold_batches={_COLD_BATCHES.value}', *extra]
  rc, out, wall, peak = run_child(args)
  recs = [json.loads(x) for x in out.splitlines() if x.startswith('{')]
  if rc != 0 or not recs:
    return [_record(dataset, case, scale, 0, wall, error=f'child exited {rc}',
                    peak_rss_mb=round(peak, 1))]
  for r in recs:
    r['peak_rss_mb'] = round(peak, 1) if not r.get('skipped') else None
    r['process_seconds'] = round(wall, 1)
  return recs


def _raw_rows(dataset: str, workdir: str, scale: float) -> int:
  sub = {'movielens20m': 'ml-20m', 'amazon': 'amazon', 'criteo': 'dac'}[dataset]
  with open(os.path.join(raw_dir(workdir, scale), sub, 'GENERATED.json')) as f:
    return int(json.load(f)['stats']['rows'])


def child_prepare(dataset: str, workdir: str, scale: float) -> dict:
  from seqrec_jax.data import load_dataset  # pylint: disable=g-import-not-at-top
  cfg = _data_config(dataset, workdir, scale, 'never')
  t0 = time.time()
  ds = load_dataset(cfg)
  secs = time.time() - t0
  n = {k: len(v) for k, v in ds.splits.items()}
  return _record(dataset, 'prepare', scale, _raw_rows(dataset, workdir, scale), secs,
                 split_rows=n, built_now=ds.info.get('built_now'),
                 prepared_bytes=_dir_bytes(cfg.data_dir), data_dir=cfg.data_dir)


def _dir_bytes(path: str) -> int:
  return int(sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs))


def unmap(split) -> int:
  """madvise(MADV_DONTNEED) on the memory maps behind a store.ColumnSplit (so that evict() can
  drop their pages: the loader's validation pass mapped every page); returns maps released."""
  import mmap  # pylint: disable=g-import-not-at-top
  n = 0
  arrays = list(getattr(split, 'columns', {}).values())
  arrays += list(getattr(split, 'behaviours', {}).values())
  for a in arrays:
    m = getattr(a, '_mmap', None)
    if m is not None and hasattr(mmap, 'MADV_DONTNEED'):
      m.madvise(mmap.MADV_DONTNEED)
      n += 1
  return n


def evict(path: str) -> int:
  """Drops the page-cache pages of every file under path (posix_fadvise DONTNEED)."""
  n = 0
  for d, _, fs in os.walk(path):
    for f in fs:
      fd = os.open(os.path.join(d, f), os.O_RDONLY)
      try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        n += 1
      finally:
        os.close(fd)
  return n


def resident_fraction(path: str) -> float | None:
  """Fraction of the bytes of the files under path in the page cache (util-linux fincore)."""
  files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
  if not files or not shutil.which('fincore'):
    return None
  try:
    res = subprocess.run(['fincore', '--bytes', '--noheadings', '--raw', '-o', 'RES,SIZE',
                          *files], capture_output=True, text=True, check=True, timeout=60)
  except (OSError, subprocess.SubprocessError):
    return None
  vals = np.array([[int(x) for x in ln.split()] for ln in res.stdout.splitlines() if ln.strip()])
  return round(float(vals[:, 0].sum() / max(vals[:, 1].sum(), 1)), 3) if len(vals) else None


def warm(path: str) -> int:
  """Reads every file under path once (into the page cache); returns bytes read."""
  n = 0
  for d, _, fs in os.walk(path):
    for f in fs:
      with open(os.path.join(d, f), 'rb') as fh:
        while chunk := fh.read(1 << 24):
          n += len(chunk)
  return n


def _time_reads(split, batch: int, rng, max_batches: int, max_seconds: float) -> dict:
  """Reads random batches (sorted row ids); rows, seconds and the median batch's rows/s."""
  n = len(split)
  rows, times, cpu = 0, [], 0.0
  while len(times) < max_batches and sum(times) < max_seconds:
    idx = np.sort(rng.choice(n, min(batch, n), replace=False))
    t, c = time.perf_counter(), time.thread_time()
    out = split.__getitems__(idx)
    cpu += time.thread_time() - c
    times.append(time.perf_counter() - t)
    rows += len(next(iter(out.values())))
  return {'rows': rows, 'seconds': sum(times), 'batches': len(times),
          'median_batch_rows_per_s': round(min(batch, n) / float(np.median(times)), 1),
          'cpu_seconds': round(cpu, 3), 'rows_per_cpu_s': round(rows / max(cpu, 1e-9), 1)}


def _forget_loaded() -> None:
  """Drops load_dataset's in-process caches (and so their memory maps)."""
  import gc  # pylint: disable=g-import-not-at-top
  from seqrec_jax import data  # pylint: disable=g-import-not-at-top
  data._load_cached.cache_clear()   # pylint: disable=protected-access
  data._DERIVED.clear()             # pylint: disable=protected-access
  gc.collect()


def child_read(dataset: str, workdir: str, scale: float, batches=(256, 1024, 4096),
               read_seconds: float = 3.0, cold_batches: int = 20) -> list[dict]:
  """Random train batches from disk (cold-ish, then warm page cache) and from memory."""
  from seqrec_jax.data import load_dataset  # pylint: disable=g-import-not-at-top
  out = []
  cfg = _data_config(dataset, workdir, scale, 'never')
  rng = np.random.default_rng(0)
  disk = None
  for bs in batches:
    _forget_loaded()
    t0 = time.time()
    disk = load_dataset(cfg, validate=False).splits['train']
    load_secs = time.time() - t0
    unmap(disk)          # opening validates (reads) every column: release, then evict
    evict(cfg.data_dir)
    before = resident_fraction(cfg.data_dir)
    t = _time_reads(disk, bs, rng, cold_batches, 1e9)
    out.append(_record(dataset, 'read', scale, **t, source='disk',
                       page_cache='cold-ish (madvise + posix_fadvise DONTNEED after open)',
                       batch=bs, split_rows=len(disk), resident_before=before,
                       load_seconds=round(load_secs, 2),
                       resident_after=resident_fraction(cfg.data_dir)))
  t0 = time.time()
  nbytes = warm(cfg.data_dir)
  warm_secs = time.time() - t0
  for bs in batches:
    _time_reads(disk, bs, rng, 3, 1e9)
    t = _time_reads(disk, bs, rng, 10**9, read_seconds)
    out.append(_record(dataset, 'read', scale, **t, source='disk',
                       page_cache=f'warm (files read once: {nbytes / 2**20:.0f} MB in '
                       f'{warm_secs:.1f}s)', batch=bs, split_rows=len(disk)))
  del disk
  _forget_loaded()
  t0 = time.time()
  mem = load_dataset(_data_config(dataset, workdir, scale, 'always'),
                     validate=False).splits['train']
  load_secs = time.time() - t0
  for bs in batches:
    _time_reads(mem, bs, rng, 3, 1e9)
    t = _time_reads(mem, bs, rng, 10**9, read_seconds)
    out.append(_record(dataset, 'read', scale, **t, source='memory',
                       page_cache='n/a (in memory)', batch=bs, split_rows=len(mem),
                       load_seconds=round(load_secs, 2)))
  return out


def train_case(dataset: str, workdir: str, scale: float) -> list[dict]:
  """DIN examples/s with the train split on disk vs in memory (seqrec_jax.main)."""
  out = []
  steps, batch = _TRAIN_STEPS.value, _TRAIN_BATCH.value
  # ABBA: odd repeats run the modes in reverse, so a load that drifts linearly over the runs
  # (other jobs on the machine) weighs both modes equally.
  runs = [(r, m) for r in range(_TRAIN_REPEATS.value)
          for m in (_TRAIN_ORDER.value if r % 2 == 0 else _TRAIN_ORDER.value[::-1])]
  for rep, mode in runs:
    wd = os.path.join(workdir, 'runs', f'{dataset}_scale_{scale:g}_{mode}_{rep}')
    shutil.rmtree(wd, ignore_errors=True)
    over = dict(data_overrides(dataset, workdir, scale), **{
        'data.in_memory': mode, 'data.device_resident': 'never', 'data.batch_size': batch,
        'train.num_steps': steps + 1,
        'train.eval_every': 10**9, 'train.checkpoint_every': 10**9, 'train.log_every': 50,
        'train.progress': False})
    over.pop('data.name')
    args = [sys.executable, '-m', 'seqrec_jax.main',
            f'--config=seqrec_jax/configs/{config_spec(dataset)}', f'--workdir={wd}']
    args += [f'--config.{k}={v}' for k, v in over.items()]
    t0 = time.time()
    resident = resident_fraction(over['data.data_dir'])
    rate, done_step, rc, peak, err = _run_until_trained(args, wd, steps + 1)
    wall = time.time() - t0
    rows = steps * batch
    out.append(_record(dataset, 'train', scale, rows, rows / rate if rate else 0.0,
                       model='din', in_memory=mode, repeat=rep, batch=batch, steps=steps,
                       examples_per_s=rate, last_logged_step=done_step,
                       process_seconds=round(wall, 1), peak_rss_mb=round(peak, 1),
                       prepared_resident_before=resident,
                       exit_code=rc, **({'error': err} if err else {})))
  rates = {m: [r['examples_per_s'] for r in out if r['in_memory'] == m]
           for m in ('never', 'always')}
  if all(rates.values()) and all(all(v) for v in rates.values()):
    out[-1]['disk_over_memory'] = round(float(np.mean(rates['never']) / np.mean(rates['always'])),
                                        3)
  return out


def _run_until_trained(args, wd, last_step):
  """Runs the trainer until metrics.jsonl logs `last_step` (then stops it: the final eval of
  valid and test is not part of the throughput); returns (examples/s, step, rc, peak MB, err)."""
  metrics = os.path.join(wd, 'metrics.jsonl')
  os.makedirs(os.path.dirname(wd), exist_ok=True)
  t0 = time.time()
  with open(os.devnull, 'rb') as devnull, open(os.path.join(os.path.dirname(wd),
                                               os.path.basename(wd) + '.log'), 'w') as log:
    p = subprocess.Popen(args, cwd=ROOT, stdin=devnull, stdout=log, stderr=subprocess.STDOUT)
    rate, step, err = None, 0, ''
    while p.poll() is None and time.time() - t0 < _TRAIN_TIMEOUT.value:
      time.sleep(2)
      for line in (open(metrics).read().splitlines() if os.path.exists(metrics) else []):
        try:
          rec = json.loads(line)
        except ValueError:
          continue
        if 'examples_per_sec' in rec and 'summary' not in rec:
          rate, step = float(rec['examples_per_sec']), int(rec['step'])
      if step >= last_step - 1:
        break
    if p.poll() is None:
      p.terminate()
    _, status, usage = os.wait4(p.pid, 0)
    rc = os.waitstatus_to_exitcode(status)
  if step < last_step - 1:
    err = f'trainer stopped at logged step {step} (exit {rc}); see {wd}.log'
  return (round(rate, 1) if rate else None), step, rc, usage.ru_maxrss / 1024, err


def _emit(recs: list[dict], out_path: str) -> None:
  for r in recs:
    line = json.dumps(r, sort_keys=True)
    print(line, flush=True)
    if out_path != '-':
      os.makedirs(os.path.dirname(out_path), exist_ok=True)
      with open(out_path, 'a') as f:
        f.write(line + '\n')


GOALS = {('movielens20m', 'prepare'): '<= 600 s, <= 12 GB', ('amazon', 'prepare'): '<= 180 s',
         ('criteo', 'prepare'): '<= 1200 s', ('read', 'disk'): '>= 1M rows/s',
         ('train', 'never'): '>= 0.9 x memory'}


def _detail(r: dict) -> str:
  if r['case'] == 'read':
    cache = r['page_cache'].split(' (')[0]
    return f"{r['source']}{'' if r['source'] == 'memory' else ', ' + cache}, batch {r['batch']}"
  if r['case'] == 'train':
    return f"din, in_memory={r['in_memory']}, batch {r['batch']}, run {r.get('repeat', 0)}"
  if r['case'] == 'generate':
    return f"{r.get('bytes', 0) / 2**30:.2f} GiB written"
  if r['case'] == 'prepare':
    return f"{r.get('prepared_bytes', 0) / 2**30:.2f} GiB prepared"
  return ''


def markdown(records: list[dict]) -> str:
  """One table row per dataset/case/detail (the last record of each)."""
  last = {}
  for r in records:
    if r.get('error') or r.get('skipped'):
      continue
    last[(r['dataset'], r['case'], _detail(r), r['scale'])] = r
  cols = ['dataset', 'case', 'what', 'rows', 'seconds', 'rows/s', 'rows/s, median batch',
          'rows per CPU-s', 'peak RSS MB', 'load (1 min)', 'goal']
  out = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
  for (d, c, what, scale), r in last.items():
    if scale != 1:
      what += f' (scale {scale:g})'
    goal = GOALS.get((d, c)) or GOALS.get((c, r.get('source') or r.get('in_memory')), '')
    med = r.get('median_batch_rows_per_s')
    cpu = r.get('rows_per_cpu_s')
    rate = r['rows_per_s']
    if c == 'train' and r.get('disk_over_memory') is not None:
      what += f" (disk/memory {r['disk_over_memory']:.2f})"
    out.append('| ' + ' | '.join([
        d, c, what, f"{r['rows']:,}", f"{r['seconds']:.1f}",
        f'{rate:,.0f}' if rate else '-', f'{med:,.0f}' if med else '-',
        f'{cpu:,.0f}' if cpu else '-',
        f"{r['peak_rss_mb']:,.0f}" if r.get('peak_rss_mb') else '-',
        f"{r['loadavg'][0]:.1f}", goal]) + ' |')
  return '\n'.join(out)


def main(argv):
  del argv
  from seqrec_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  xla_cpu.apply_defaults()  # CPU runtime defaults, as seqrec_jax.main (children inherit them)
  if _TABLE.value:
    with open(_TABLE.value) as f:
      print(markdown([json.loads(x) for x in f if x.strip()]))
    return
  scale, workdir = _SCALE.value, _WORKDIR.value
  if _CHILD.value:
    sys.path.insert(0, ROOT)
    if _CHILD.value == 'generate':
      res = generate(_DATASET.value, workdir, scale, _SEED.value)
    elif _CHILD.value == 'prepare':
      res = child_prepare(_DATASET.value, workdir, scale)
    else:
      res = child_read(_DATASET.value, workdir, scale, [int(b) for b in _BATCHES.value],
                       _READ_SECONDS.value, _COLD_BATCHES.value)
    for r in (res if isinstance(res, list) else [res]):
      print(json.dumps(r, sort_keys=True), flush=True)
    return
  unknown = set(_DATASETS.value) - set(DATASETS) | set(_CASES.value) - set(CASES)
  if unknown:
    raise app.UsageError(f'unknown datasets/cases {sorted(unknown)}')
  out_path = _OUT.value or os.path.join(
      ROOT, 'benchmarks', 'results', 'data_scale',
      datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d') + '.jsonl')
  for dataset in _DATASETS.value:
    for case in _CASES.value:
      if case == 'generate':
        recs = _child_record(dataset, 'generate', scale, workdir, [f'--seed={_SEED.value}'])
        _emit(recs, out_path)
        if recs[0].get('error'):
          break
      elif case == 'prepare':
        shutil.rmtree(prepared_dir(workdir, dataset, scale), ignore_errors=True)
        _emit(_child_record(dataset, 'prepare', scale, workdir), out_path)
      elif case == 'read':
        _emit(_child_record(dataset, 'read', scale, workdir), out_path)
      elif case == 'train' and dataset == 'movielens20m':
        _emit(train_case(dataset, workdir, scale), out_path)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
