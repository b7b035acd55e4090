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
"""
from __future__ import annotations

import itertools
import os

import numpy as np

from seqrec_jax.data import common, raw
from seqrec_jax.data.common import Prepared
from seqrec_jax.data.features import DataError, DataSpec, FeatureSpec, Task

DEFAULTS = dict(
    path='',             # train.txt(.gz) or a directory holding it
    max_rows=0,          # > 0: only the first max_rows lines
    min_count=10,        # categorical values seen fewer times in train -> id 0
    valid_frac=1 / 14, test_frac=1 / 14, split_seed=0,
    skip_bad_rows=False,
)
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


def prepare(cfg) -> Prepared:
  path = _file(cfg)
  v, t = float(cfg['valid_frac']), float(cfg['test_frac'])
  if not (0 <= v and 0 <= t and 0 < v + t < 1):
    raise ValueError(f'config.data.criteo: valid_frac={v}, test_frac={t} must be >= 0 with a '
                     'sum in (0, 1)')
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

  spec = DataSpec(num_users=1, num_items=0, num_cates=0, max_len=0,
                  sparse=tuple(FeatureSpec(c, len(vc) + 1) for c, vc in zip(CATS, vocabs)),
                  dense_dim=len(INTS), tasks=(Task('click'),))
  return Prepared(spec, {s: gen(i) for s, i in common.SPLIT_IDS.items()}, info)
