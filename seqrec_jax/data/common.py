"""Vocabularies, deterministic splits and history windows shared by the real datasets."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import numpy as np

from seqrec_jax.data.features import DataSpec
from seqrec_jax.data.store import cut_windows

TRAIN, VALID, TEST = 0, 1, 2
SPLIT_IDS = {'train': TRAIN, 'valid': VALID, 'test': TEST}


@dataclasses.dataclass
class Prepared:
  """What a recipe's `prepare(cfg)` returns.

  splits: name -> a function returning an iterator of chunks (dicts of the recipe's stored
    fields, equal row counts; make them large: the writer costs per chunk); called once, when
    that split is written (data/store.py).
  info: JSON-able protocol facts (vocabulary sizes, dropped rows, ...). Generators may add to
    it while they run (e.g. malformed-row counts); it is saved after every split is written.
  behaviours: sequence datasets only: {'hist_items': [M] int32, 'hist_cates': [M] int32}, the
    flat behaviour sequence of all users (each user's contiguous, in time order), stored once;
    rows hold `hist_start, hist_end` offsets into it (`window_chunks`).
  """
  spec: DataSpec
  splits: dict[str, Callable[[], Iterator[dict[str, np.ndarray]]]]
  info: dict[str, Any]
  behaviours: dict[str, np.ndarray] | None = None

  def rows(self, split: str) -> dict[str, np.ndarray]:
    """A split's rows in the batch contract (history windows cut), all in memory: for tests
    and small data."""
    chunks = list(self.splits[split]())
    out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    if self.behaviours is not None:
      a, e = out.pop('hist_start'), out.pop('hist_end')
      out.update(cut_windows(a, e, self.behaviours, self.spec.max_len))
    return out


def build_vocab(values: np.ndarray, min_count: int = 1) -> np.ndarray:
  """Sorted distinct values seen at least `min_count` times; value v gets id 1 + its position.

  Id 0 is reserved for padding and out-of-vocabulary values.
  """
  if len(values) == 0:
    return np.asarray(values)[:0]
  uniq, counts = np.unique(values, return_counts=True)
  return uniq[counts >= max(1, int(min_count))]


def lookup(vocab: np.ndarray, values: np.ndarray) -> np.ndarray:
  """Ids (int32) of `values` in a sorted `vocab`; 0 where a value is not in it."""
  values = np.asarray(values)
  if len(vocab) == 0:
    return np.zeros(values.shape, np.int32)
  pos = np.minimum(np.searchsorted(vocab, values), len(vocab) - 1)
  return np.where(vocab[pos] == values, pos + 1, 0).astype(np.int32)


def split_ids(n: int, valid_frac: float, test_frac: float, seed: int) -> np.ndarray:
  """A deterministic random assignment of n units (users or rows) to train/valid/test (int8).

  A seeded permutation puts the first round(n * test_frac) units in test, the next
  round(n * valid_frac) in valid and the rest in train.
  """
  if not (0 <= valid_frac < 1 and 0 <= test_frac < 1 and valid_frac + test_frac < 1):
    raise ValueError(f'valid_frac={valid_frac}, test_frac={test_frac}: each must be in [0, 1) '
                     'and their sum below 1')
  perm = np.random.default_rng(seed).permutation(n)
  n_test, n_valid = int(round(n * test_frac)), int(round(n * valid_frac))
  out = np.full(n, TRAIN, np.int8)
  out[perm[:n_test]] = TEST
  out[perm[n_test:n_test + n_valid]] = VALID
  return out


def group_starts(keys: np.ndarray) -> np.ndarray:
  """For keys sorted so equal keys are adjacent: index of the first row of each row's run."""
  n = len(keys)
  if n == 0:
    return np.zeros(0, np.int64)
  new = np.ones(n, bool)
  new[1:] = keys[1:] != keys[:-1]
  starts = np.flatnonzero(new)
  return starts[np.cumsum(new) - 1]


def window_chunks(rows: np.ndarray, hist_end: np.ndarray, seq_start: np.ndarray,
                  columns: dict[str, np.ndarray], chunk: int = 1 << 20
                  ) -> Iterator[dict[str, np.ndarray]]:
  """Stored sequence rows (`sequence_fields`) for the example indices `rows`, in that order.

  Example r's history is behaviours [seq_start[r], hist_end[r]) of the flat behaviour arrays;
  the reader keeps the newest L of them (data/store.cut_windows).
  """
  for s in range(0, len(rows), chunk):
    r = rows[s:s + chunk]
    out = {k: v[r] for k, v in columns.items()}
    out['hist_start'] = np.asarray(seq_start[r], np.int64)
    out['hist_end'] = np.asarray(hist_end[r], np.int64)
    yield out


def history_chunks(rows: np.ndarray, hist_end: np.ndarray, seq_start: np.ndarray,
                   beh_items: np.ndarray, beh_cates: np.ndarray, columns: dict[str, np.ndarray],
                   max_len: int, chunk: int = 8192) -> Iterator[dict[str, np.ndarray]]:
  """`window_chunks` with the right-aligned [L] histories materialised (hist_items,
  hist_cates, hist_mask; data/store.cut_windows), for callers that hold rows in memory."""
  beh = {'hist_items': beh_items, 'hist_cates': beh_cates}
  for c in window_chunks(rows, hist_end, seq_start, columns, chunk):
    a, e = c.pop('hist_start'), c.pop('hist_end')
    w = cut_windows(a, e, beh, max_len)
    c.update({k: w[k].astype(np.int32) for k in beh}, hist_mask=w['hist_mask'])
    yield c


def hist_len_summary(lengths: np.ndarray) -> dict[str, float]:
  if len(lengths) == 0:
    return {}
  return {'mean': float(lengths.mean()), 'p50': float(np.median(lengths)),
          'p90': float(np.quantile(lengths, 0.9)), 'max': int(lengths.max())}


def sequence_fields(max_len: int) -> dict[str, tuple[tuple[int, ...], type]]:
  """Stored row layout of the sequence datasets; the reader adds hist_items, hist_cates and
  hist_mask [L] (the docs/design.md batch contract) cut from the behaviour sequence."""
  del max_len   # windows are cut at read time
  return {'user_id': ((), np.int32), 'target_item': ((), np.int32),
          'target_cate': ((), np.int32), 'label': ((), np.float32),
          'hist_start': ((), np.int64), 'hist_end': ((), np.int64)}


BEHAVIOUR_FIELDS = {'hist_items': ((), np.int32), 'hist_cates': ((), np.int32)}
