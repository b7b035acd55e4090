"""Vocabularies, deterministic splits and history windows shared by the real datasets."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import numpy as np

from seqrec_jax.data.features import DataSpec

TRAIN, VALID, TEST = 0, 1, 2
SPLIT_IDS = {'train': TRAIN, 'valid': VALID, 'test': TEST}


@dataclasses.dataclass
class Prepared:
  """What a recipe's `prepare(cfg)` returns.

  splits: name -> a function returning an iterator of chunks (dicts of batch-contract arrays
    with equal row counts); called once, when TFDS writes that split.
  info: JSON-able protocol facts (vocabulary sizes, dropped rows, ...). Generators may add to
    it while they run (e.g. malformed-row counts); it is saved after every split is written.
  """
  spec: DataSpec
  splits: dict[str, Callable[[], Iterator[dict[str, np.ndarray]]]]
  info: dict[str, Any]


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


def history_chunks(rows: np.ndarray, hist_end: np.ndarray, seq_start: np.ndarray,
                   beh_items: np.ndarray, beh_cates: np.ndarray, columns: dict[str, np.ndarray],
                   max_len: int, chunk: int = 8192) -> Iterator[dict[str, np.ndarray]]:
  """Materialises right-aligned histories for the example rows `rows`.

  Example r's history is behaviours [max(seq_start[r], hist_end[r] - max_len), hist_end[r])
  of the flat behaviour arrays, oldest first, newest at position max_len - 1; earlier
  positions are padding (id 0, mask False).

  Args:
    rows: example indices to emit, in output order.
    hist_end, seq_start: per example, one past its newest behaviour and its user's first one.
    beh_items, beh_cates: the flat behaviour sequence (all users, each user's in time order).
    columns: other per-example fields (user_id, target_item, target_cate, label, ...).
    max_len: L.
    chunk: rows per yielded chunk.
  """
  offs = np.arange(max_len, dtype=np.int64) - max_len
  for s in range(0, len(rows), chunk):
    r = rows[s:s + chunk]
    pos = hist_end[r, None] + offs[None, :]
    mask = pos >= seq_start[r, None]
    pos = np.where(mask, pos, 0)
    out = {k: v[r] for k, v in columns.items()}
    out['hist_items'] = np.where(mask, beh_items[pos], 0).astype(np.int32)
    out['hist_cates'] = np.where(mask, beh_cates[pos], 0).astype(np.int32)
    out['hist_mask'] = mask
    yield out


def hist_len_summary(lengths: np.ndarray) -> dict[str, float]:
  if len(lengths) == 0:
    return {}
  return {'mean': float(lengths.mean()), 'p50': float(np.median(lengths)),
          'p90': float(np.quantile(lengths, 0.9)), 'max': int(lengths.max())}


def sequence_fields(max_len: int) -> dict[str, tuple[tuple[int, ...], type]]:
  """Row layout of the sequence datasets (the docs/design.md batch contract)."""
  return {'user_id': ((), np.int32), 'target_item': ((), np.int32),
          'target_cate': ((), np.int32), 'hist_items': ((max_len,), np.int32),
          'hist_cates': ((max_len,), np.int32), 'hist_mask': ((max_len,), np.bool_),
          'label': ((), np.float32)}
