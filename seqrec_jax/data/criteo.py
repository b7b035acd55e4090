"""Criteo display-advertising logs (Kaggle DAC format) as a CTR table.

* Format: one impression per line, tab-separated: label (0/1), 13 integer fields I1..I13,
  26 categorical fields C1..C26 (hashed tokens, usually 8 hex characters); any field but
  the label may be empty (missing).
* Dense [B, 13]: log(x + 1) of each integer field. Missing integers are 0 before the
  transform. Negative integers (I2 has -1..-3 in the Kaggle data) are clamped to 0 first
  (so they also map to 0) and counted in the info (`negative_ints_clamped`).
* Sparse [B, 26]: one vocabulary per field, built on TRAIN rows, keeping values seen at least
  `min_count` times (sorted, ids from 1); rarer or unseen values map to 0. A missing value is
  the token '' and gets its own id when frequent enough.
* Split (DCN-V2 paper protocol, the file being in time order): the first
  1 - valid_frac - test_frac of the (non-blank) lines are train; the rest are assigned to
  valid or test by a seeded coin with odds valid_frac : test_frac. Defaults 1/14 each
  mirror "6 days train, day 7 split in halves" of the 7-day Kaggle file.
* No users or sequences: user_id = 0 (num_users = 1), num_items = max_len = 0; task 'click'.
* Input: `path` is train.txt, train.txt.gz, or a directory holding one; `max_rows` > 0 reads
  only the first max_rows lines (quick experiments).
* Reading (`prepare`): the fast path streams the file in pyarrow blocks (no Python per row),
  turns each categorical token into a uint64 key (8 lowercase hex characters decoded in numpy,
  other tokens through a per-field dictionary), writes label, dense and keys to temporary
  per-field files in $TMPDIR (~270 bytes a row: ~12 GB for the 45.8M-line Kaggle file; deleted
  with the Prepared), counts the train keys with np.unique and maps keys to ids with
  np.searchsorted, chunk by chunk. Measured on 5M generated lines (2 cores shared with other
  jobs, load ~12): 46 CPU-seconds (~110k rows per CPU-second; 142 s wall), peak RSS 1.9 GB,
  so the 45.8M-line file takes ~7-8 CPU-minutes. Any line the fast path would not read exactly
  like the line reader (wrong field count, bad UTF-8, a label other than 0/1, an integer that
  pyarrow parses differently such as '0x1f') sends the whole file to `prepare_exact` (Python
  per line: ~16k rows per CPU-second against ~90k for the fast path at 200k lines), which
  names or skips (skip_bad_rows) each malformed line. Both give identical rows
  (tests/test_data_criteo.py).
"""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import weakref

from absl import logging

import numpy as np

from seqrec_jax.configs.keys import Key, defaults, integer, number, text
from seqrec_jax.data import common, raw
from seqrec_jax.data.common import Prepared
from seqrec_jax.data.features import DataError, DataSpec, FeatureSpec, Task

KEYS = (
    Key('path', '', 'train.txt(.gz) or a directory holding it', text()),
    Key('max_rows', 0, '> 0: only the first max_rows lines', integer(0)),
    Key('min_count', 10, 'categorical values seen fewer times in train -> id 0', integer(0)),
    Key('valid_frac', 1 / 14, 'fraction of lines in valid', number(0, 1)),
    Key('test_frac', 1 / 14, 'fraction of lines in test', number(0, 1)),
    Key('split_seed', 0, 'seed of the valid/test coin', integer()),
    Key('skip_bad_rows', False, 'True: count and skip malformed rows instead of failing'),
)
DEFAULTS = defaults(KEYS)
HOMEPAGE = 'https://www.kaggle.com/c/criteo-display-ad-challenge'
CITATION = 'Criteo Labs. Display Advertising Challenge (Kaggle), 2014.'
INTS = tuple(f'I{i}' for i in range(1, 14))
CATS = tuple(f'C{i}' for i in range(1, 27))


def fields(cfg) -> dict:
  del cfg
  return {'user_id': ((), np.int32), 'sparse': ((len(CATS),), np.int32),
          'dense': ((len(INTS),), np.float32), 'label': ((), np.float32)}


def _file(cfg) -> str:
  path = cfg['path']
  if not path:
    raise DataError('config.data.criteo.path is empty: point it at the Criteo train.txt '
                    f'(or .gz, or its directory) from {HOMEPAGE}; nothing is downloaded')
  if os.path.isdir(path):
    for name in ('train.txt', 'train.txt.gz'):
      if os.path.exists(os.path.join(path, name)):
        return os.path.join(path, name)
    raise DataError(f'{path}: no train.txt or train.txt.gz (has {sorted(os.listdir(path))[:10]})')
  if not os.path.exists(path):
    raise DataError(f'config.data.criteo.path={path!r} does not exist')
  return path


def source_fingerprint(cfg) -> list:
  return raw.fingerprint([_file(cfg)])


def tag(cfg) -> str:
  name = os.path.basename(os.path.normpath(cfg['path'])).split('.')[0]
  return f"{name}_{cfg['max_rows']}" if cfg['max_rows'] else name


def _fracs(cfg) -> tuple[float, float]:
  v, t = float(cfg['valid_frac']), float(cfg['test_frac'])
  if not (0 <= v and 0 <= t and 0 < v + t < 1):
    raise ValueError(f'config.data.criteo: valid_frac={v}, test_frac={t} must be >= 0 with a '
                     'sum in (0, 1)')
  return v, t


def _spec(vocab_sizes) -> DataSpec:
  return DataSpec(num_users=1, num_items=0, num_cates=0, max_len=0,
                  sparse=tuple(FeatureSpec(c, int(s)) for c, s in zip(CATS, vocab_sizes)),
                  dense_dim=len(INTS), tasks=(Task('click'),))


def _columns():
  return ([raw.Column('label', 'int', check=lambda v: (v != 0) & (v != 1),
                      why='label must be 0 or 1')]
          + [raw.Column(c, 'int', empty=0) for c in INTS] + [raw.Column(c, 'str') for c in CATS])


class _Counts:
  """Per-value counts of a string column, accumulated chunk by chunk with numpy."""

  def __init__(self):
    self.vals, self.cnts = [], []

  def add(self, col: np.ndarray):
    u, c = np.unique(col, return_counts=True)
    self.vals.append(u)
    self.cnts.append(c)
    if len(self.vals) > 16:
      self._merge()

  def _merge(self):
    if not self.vals:
      return
    u, inv = np.unique(np.concatenate(self.vals), return_inverse=True)
    self.vals, self.cnts = [u], [np.bincount(inv, weights=np.concatenate(self.cnts))]

  def vocab(self, min_count: int) -> np.ndarray:
    self._merge()
    if not self.vals:
      return np.array([], dtype=str)
    return self.vals[0][self.cnts[0] >= max(1, int(min_count))]


def _scan(path: str, max_rows: int) -> tuple[int, int]:
  """(number of non-blank lines used, number of the last line used)."""
  n, last = 0, 0
  with raw.open_binary(path) as f:
    for lineno, b in enumerate(f, 1):
      if b.rstrip(b'\r\n'):
        n += 1
        last = lineno
        if max_rows and n >= max_rows:
          break
  return n, last


def prepare_exact(cfg) -> Prepared:
  """The exact line reader (raw.read_delimited): names or skips every malformed line."""
  path, v, t = _file(cfg), *_fracs(cfg)
  n, last = _scan(path, int(cfg['max_rows']))
  if n == 0:
    raise DataError(f'{path}: no data lines')
  n_train = int(n * (1 - v - t))
  # Line numbers of the train boundary and of every tail line (blank lines are not rows).
  tail_lines, boundary = [], 0
  with raw.open_binary(path) as f:
    k = 0
    for lineno, b in enumerate(itertools.islice(f, last), 1):
      if b.rstrip(b'\r\n'):
        k += 1
        if k == n_train:
          boundary = lineno
        elif k > n_train:
          tail_lines.append(lineno)
  tail_lines = np.asarray(tail_lines, np.int64)
  coin = np.random.default_rng(int(cfg['split_seed'])).random(len(tail_lines)) < v / (v + t)
  valid_lines = set(tail_lines[coin].tolist())
  bad = raw.BadRows(bool(cfg['skip_bad_rows']), 'config.data.criteo.skip_bad_rows')
  cols = _columns()

  def rows(keep, reporter):
    with raw.open_binary(path) as f:
      lines = raw.iter_lines(itertools.islice(f, last), path, reporter, keep=keep)
      yield from raw.read_delimited(lines, path, '\t', cols, reporter, chunk_rows=1 << 16)

  in_train = lambda ln: ln <= boundary                              # pylint: disable=unnecessary-lambda-assignment
  keeps = {common.TRAIN: in_train,
           common.VALID: lambda ln: ln > boundary and ln in valid_lines,
           common.TEST: lambda ln: ln > boundary and ln not in valid_lines}
  # Pass 1: vocabularies from train rows (malformed rows are reported in the writing pass).
  counts = [_Counts() for _ in CATS]
  for chunk in rows(in_train, raw.BadRows(True) if bad.skip else bad):
    for c, acc in zip(CATS, counts):
      acc.add(chunk[c].astype(str))
  vocabs = [acc.vocab(cfg['min_count']) for acc in counts]
  info = {'source': path, 'lines': n, 'train_lines': n_train,
          'vocab_sizes': {c: int(len(vc)) + 1 for c, vc in zip(CATS, vocabs)},
          'negative_ints_clamped': 0}
  info.update(bad.report())

  def gen(split_id):
    def chunks():
      for chunk in rows(keeps[split_id], bad):
        ints = np.stack([chunk[c] for c in INTS], 1)
        info['negative_ints_clamped'] += int((ints < 0).sum())
        yield {'user_id': np.zeros(len(ints), np.int32),
               'sparse': np.stack([common.lookup(vc, chunk[c].astype(str))
                                   for c, vc in zip(CATS, vocabs)], 1).astype(np.int32),
               'dense': np.log1p(np.maximum(ints, 0)).astype(np.float32),
               'label': chunk['label'].astype(np.float32)}
      info.update(bad.report())
    return chunks

  spec = _spec([len(vc) + 1 for vc in vocabs])
  return Prepared(spec, {s: gen(i) for s, i in common.SPLIT_IDS.items()}, info)


# ---- Fast path: pyarrow blocks, categorical tokens as uint64 keys, one parse pass ------------
# Key of a token: '' -> 0; 8 lowercase hex characters -> 1 + their value (< 2^32 + 1, so key
# order is string order); any other token -> _OTHER + its index in a per-field dictionary.
_OTHER = np.uint64(1 << 33)
_HEX = np.full(256, 255, np.uint8)
_HEX[48:58], _HEX[97:103] = np.arange(10), np.arange(10, 16)
_HEX_CHARS = np.frombuffer(b'0123456789abcdef', np.uint8)
BLOCK_BYTES = 64 << 20    # pyarrow block (~250k Criteo lines)
CHUNK_ROWS = 1 << 20      # rows per written chunk


class _Fallback(Exception):
  """The file is not one the fast path reads exactly like raw.read_delimited."""


def _string_parts(arr) -> tuple[np.ndarray, np.ndarray]:
  """(offsets [n + 1] int64, data uint8) of a pyarrow StringArray, without copies."""
  bufs = arr.buffers()
  off = np.frombuffer(bufs[1], np.int32, len(arr) + 1, arr.offset * 4).astype(np.int64)
  data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
  return off, data


def _token_keys(arr, others: dict) -> np.ndarray:
  """uint64 keys of one block of a categorical field (see _OTHER); `others` grows."""
  import pyarrow.compute as pc  # pylint: disable=g-import-not-at-top
  off, data = _string_parts(arr)
  lens = np.diff(off)
  keys = np.zeros(len(arr), np.uint64)
  h8 = np.flatnonzero(lens == 8)
  if len(h8) == np.count_nonzero(lens):      # only '' and 8-character tokens: one reshape
    chars = data[off[0]:off[-1]].reshape(-1, 8)
  else:
    chars = data[off[h8, None] + np.arange(8)]
  nib = _HEX[chars]
  ok = (nib < 16).all(1)
  word = np.ascontiguousarray((nib[:, 0::2] << 4) | nib[:, 1::2]).view('>u4').ravel()
  keys[h8[ok]] = word[ok].astype(np.uint64) + 1
  rest = (lens > 0)
  rest[h8[ok]] = False
  if rest.any():
    idx = np.flatnonzero(rest)
    sub = arr.take(idx)
    uniq = pc.unique(sub)
    codes = np.array([others.setdefault(u, len(others)) for u in uniq.to_pylist()], np.uint64)
    keys[idx] = _OTHER + codes[pc.index_in(sub, value_set=uniq).to_numpy()]
  return keys


def _key_strings(keys: np.ndarray, others: dict) -> np.ndarray:
  """The tokens of `keys` (inverse of _token_keys), as a numpy unicode array."""
  hexed = keys >= 1
  hexed &= keys < _OTHER
  out = np.zeros(len(keys), dtype=object)
  out[:] = ''
  v = (keys[hexed] - 1).astype('>u4').view(np.uint8).reshape(-1, 4)
  nib = np.stack([v >> 4, v & 15], 2).reshape(-1, 8)
  out[hexed] = _HEX_CHARS[nib].view('S8').ravel().astype(str)
  names = list(others)
  other = keys >= _OTHER
  out[other] = [names[int(k - _OTHER)] for k in keys[other]]
  return out.astype(str)


def _int_values(arr) -> tuple[np.ndarray, int]:
  """int64 values of an integer field read as strings ('' -> 0) and the count of negatives.
  Raises _Fallback where raw._convert would differ (pyarrow also accepts '0x1f')."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.compute as pc  # pylint: disable=g-import-not-at-top
  if pc.any(pc.match_substring(arr, 'x', ignore_case=True)).as_py():
    raise _Fallback('hexadecimal integer')
  empty = pc.equal(arr, '')
  try:
    vals = pc.cast(pc.if_else(empty, pa.scalar(None, pa.string()), arr), pa.int64())
  except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
    raise _Fallback(str(e)) from None
  vals = vals.fill_null(0).to_numpy()
  return vals, int((vals < 0).sum())


def _labels(arr) -> np.ndarray:
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.compute as pc  # pylint: disable=g-import-not-at-top
  if not pc.all(pc.is_in(arr, value_set=pa.array(['0', '1']))).as_py():
    raise _Fallback('label not 0 or 1')
  return pc.equal(arr, '1').to_numpy(zero_copy_only=False).astype(np.float32)


def _reader(path: str):
  """A pyarrow streaming reader of the tab-separated file, every field as a string."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.csv as pacsv  # pylint: disable=g-import-not-at-top
  names = ['label', *INTS, *CATS]
  return pacsv.open_csv(
      path,
      read_options=pacsv.ReadOptions(column_names=names, block_size=BLOCK_BYTES),
      parse_options=pacsv.ParseOptions(delimiter='\t', quote_char=False,
                                       ignore_empty_lines=True),
      convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in names},
                                           strings_can_be_null=False))


class _Store:
  """Temporary per-field files of the parsed rows (deleted with the Prepared that uses them)."""

  def __init__(self):
    self.dir = tempfile.mkdtemp(prefix='seqrec_criteo_')
    self._cleanup = weakref.finalize(self, shutil.rmtree, self.dir, True)
    self.files = {}

  def path(self, name: str) -> str:
    return os.path.join(self.dir, name)

  def append(self, name: str, arr: np.ndarray):
    if name not in self.files:
      self.files[name] = open(self.path(name), 'wb')   # pylint: disable=consider-using-with
    arr.tofile(self.files[name])

  def remove(self):
    self.close()
    self._cleanup()

  def close(self):
    for f in self.files.values():
      f.close()

  def read(self, name: str, dtype, start: int, stop: int, width: int = 1) -> np.ndarray:
    size = np.dtype(dtype).itemsize * width
    out = np.fromfile(self.path(name), dtype, (stop - start) * width, offset=start * size)
    return out.reshape(-1, width) if width > 1 else out


def _parse(path: str, max_rows: int, store: _Store) -> tuple[int, int, list[dict]]:
  """One pass over the file: label, dense and 26 key columns to `store`.
  Returns (rows, negative ints, per-field dictionaries of the non-hex tokens)."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  others = [{} for _ in CATS]
  n, negatives = 0, 0
  try:
    for batch in _reader(path):
      if max_rows and n + batch.num_rows > max_rows:
        batch = batch.slice(0, max_rows - n)
      store.append('label', _labels(batch.column(0)))
      ints = []
      for j in range(len(INTS)):
        vals, neg = _int_values(batch.column(1 + j))
        ints.append(vals)
        negatives += neg
      store.append('dense', np.log1p(np.maximum(np.stack(ints, 1), 0)).astype(np.float32))
      for j, c in enumerate(CATS):
        store.append(c, _token_keys(batch.column(1 + len(INTS) + j), others[j]))
      n += batch.num_rows
      if max_rows and n >= max_rows:
        break
  except (pa.ArrowInvalid, OSError) as e:   # field counts, bad UTF-8, a broken .gz, ...
    raise _Fallback(str(e)) from None
  finally:
    store.close()
  return n, negatives, others


def _vocab(keys: np.ndarray, min_count: int, others: dict) -> tuple[np.ndarray, np.ndarray]:
  """(sorted kept keys, their ids): ids from 1 in the order of the tokens as strings, as
  common.build_vocab gives them."""
  uniq, cnt = np.unique(keys, return_counts=True)
  kept = uniq[cnt >= max(1, int(min_count))]
  ids = np.arange(1, len(kept) + 1, dtype=np.int32)
  if len(kept) and kept[-1] >= _OTHER:     # other tokens sort among the hex ones
    ids[np.argsort(_key_strings(kept, others), kind='stable')] = ids.copy()
  return kept, ids


def _lookup(kept: np.ndarray, ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
  if len(kept) == 0:
    return np.zeros(len(keys), np.int32)
  pos = np.minimum(np.searchsorted(kept, keys), len(kept) - 1)
  return np.where(kept[pos] == keys, ids[pos], 0).astype(np.int32)


def prepare_fast(cfg) -> Prepared:
  """pyarrow blocks -> temporary key files -> train vocabularies -> chunks; raises _Fallback
  on input the exact reader would treat differently (malformed lines among them)."""
  path, v, t = _file(cfg), *_fracs(cfg)
  store = _Store()
  try:
    n, negatives, others = _parse(path, int(cfg['max_rows']), store)
  except _Fallback:
    store.remove()
    raise
  if n == 0:
    raise DataError(f'{path}: no data lines')
  n_train = int(n * (1 - v - t))
  vocabs = [_vocab(store.read(c, np.uint64, 0, n_train), cfg['min_count'], o)
            for c, o in zip(CATS, others)]
  coin = np.random.default_rng(int(cfg['split_seed'])).random(n - n_train) < v / (v + t)
  info = {'source': path, 'lines': n, 'train_lines': n_train,
          'vocab_sizes': {c: int(len(k)) + 1 for c, (k, _) in zip(CATS, vocabs)},
          'negative_ints_clamped': negatives}
  info.update(raw.BadRows(bool(cfg['skip_bad_rows'])).report())

  def rows(start, stop):
    sparse = np.stack([_lookup(k, i, store.read(c, np.uint64, start, stop))
                       for c, (k, i) in zip(CATS, vocabs)], 1)
    return {'user_id': np.zeros(stop - start, np.int32), 'sparse': sparse,
            'dense': store.read('dense', np.float32, start, stop, len(INTS)),
            'label': store.read('label', np.float32, start, stop)}

  def gen(split_id):
    def chunks():
      if split_id == common.TRAIN:
        for s in range(0, n_train, CHUNK_ROWS):
          yield rows(s, min(s + CHUNK_ROWS, n_train))
        return
      for s in range(n_train, n, CHUNK_ROWS):
        e = min(s + CHUNK_ROWS, n)
        keep = coin[s - n_train:e - n_train] == (split_id == common.VALID)
        yield {k: a[keep] for k, a in rows(s, e).items()}
    return chunks

  return Prepared(_spec([len(k) + 1 for k, _ in vocabs]),
                  {s: gen(i) for s, i in common.SPLIT_IDS.items()}, info)


def prepare(cfg) -> Prepared:
  """The fast path; the exact reader where it cannot read the file exactly."""
  try:
    return prepare_fast(cfg)
  except _Fallback as e:
    logging.info('%s: exact reader (%s)', cfg['path'], str(e)[:200])
    return prepare_exact(cfg)
