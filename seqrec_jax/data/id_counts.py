"""Per-id occurrence counts n_j over the training split (DIN paper Sec. 4.3.1, eq. 4).

n_j is the number of training samples in which id j occurs (a sample counts once even when the
id repeats in its history). One count vector per embedding table, keyed by the table's name in
`layers.embedding.Embedder`:
  item  <- target_item and the real positions of hist_items
  cate  <- target_cate and the real positions of hist_cates
  user  <- user_id
  sparse_<field> <- sparse[:, j]
Id 0 (padding / OOV) is not an id: its count is always 0 (the regulariser skips it), which
keeps the counts of a top-k filtered split (data/id_filter.py) derivable from the unfiltered
ones: dropped ids read as 0 and keep nothing else.

Where they come from (`data.load_dataset` attaches an `IdCounts` to `DataSpec.id_counts`):
* TFDS-prepared datasets (movielens, amazon, census, criteo): counted once while the builder
  writes the train split (`CountAccumulator`), stored beside the dataset as `COUNTS_FILE` and
  listed in its metadata.json (`id_counts`); loading reads them back (data/tfds_source.py).
* Fallback, counted lazily from the loaded train split on first use (only models with
  model.mba_lambda > 0 ask), in chunks for splits on disk: sources generated in memory on
  every load (synthetic, mmoe_synthetic, video: nothing on disk to carry them) and TFDS caches
  written before the counts were stored (their metadata has no `id_counts`; the load logs it).
`IdCounts` is hashable by identity, so a jitted model never reuses another dataset's counts.
"""
from __future__ import annotations

import io
from typing import Mapping
import zipfile
import zlib

import numpy as np

from seqrec_jax.data.features import DataError

COUNTS_FILE = 'id_counts_train.npz'   # in the TFDS dataset directory, beside metadata.json


def _rows_with_id(ids: np.ndarray, vocab: int) -> np.ndarray:
  """ids [N, K] -> [vocab]: number of rows holding each id at least once (id 0: 0)."""
  s = np.sort(ids.reshape(len(ids), -1), axis=1)
  first = s != 0
  first[:, 1:] &= s[:, 1:] != s[:, :-1]
  return np.bincount(s[first], minlength=vocab)[:vocab].astype(np.int64)


def count_ids(arrays: Mapping[str, np.ndarray], spec) -> dict[str, np.ndarray]:
  """Counts for one chunk of batch-contract rows: {table: counts [vocab]}."""
  out = {}
  mask = arrays.get('hist_mask')
  for table, key, hist_key, vocab in (('item', 'target_item', 'hist_items', spec.num_items),
                                      ('cate', 'target_cate', 'hist_cates', spec.num_cates)):
    if not vocab or key not in arrays:
      continue
    cols = [np.asarray(arrays[key])[:, None]]
    if spec.max_len and hist_key in arrays:
      # Padding positions hold 0 already; masking keeps a stray id there from counting.
      cols.append(np.where(mask, arrays[hist_key], 0) if mask is not None
                  else arrays[hist_key])
    out[table] = _rows_with_id(np.concatenate(cols, axis=1), vocab)
  if 'user_id' in arrays:
    out['user'] = _rows_with_id(np.asarray(arrays['user_id'])[:, None], spec.num_users)
  for j, f in enumerate(spec.sparse):
    out[f'sparse_{f.name}'] = _rows_with_id(np.asarray(arrays['sparse'])[:, j:j + 1],
                                            f.vocab_size)
  return out


class CountAccumulator:
  """count_ids summed over the chunks of a split as they stream past (the TFDS writer)."""

  def __init__(self, spec):
    self.spec, self.total = spec, {}

  def update(self, chunk: Mapping[str, np.ndarray]) -> None:
    for k, v in count_ids(chunk, self.spec).items():
      self.total[k] = self.total[k] + v if k in self.total else v


def count_split(split, spec, chunk: int = 1 << 16) -> dict[str, np.ndarray]:
  """count_ids over a whole split (in memory via .all(), else read in chunks)."""
  if hasattr(split, 'all'):
    return count_ids(split.all(), spec)
  acc = CountAccumulator(spec)
  n = len(split)
  for start in range(0, n, chunk):
    acc.update(split.__getitems__(np.arange(start, min(n, start + chunk))))
  return acc.total


def save_counts(path: str, counts: Mapping[str, np.ndarray]) -> None:
  """{table: [vocab]} -> a compressed .npz (written whole: the TFDS build dir is renamed into
  place only after every split is written)."""
  buf = io.BytesIO()
  np.savez_compressed(buf, **{k: np.asarray(v, np.int64) for k, v in counts.items()})
  with open(path, 'wb') as f:
    f.write(buf.getvalue())


def expected_tables(spec) -> dict[str, int]:
  """{table: vocabulary} of every table count_ids writes for rows of `spec`."""
  out = {'user': spec.num_users}
  if spec.num_items:
    out['item'] = spec.num_items
  if spec.num_cates:
    out['cate'] = spec.num_cates
  out.update({f'sparse_{f.name}': f.vocab_size for f in spec.sparse})
  return out


def _read_npz(path: str, where: str) -> dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as z:
      return {k: np.asarray(z[k]) for k in z.files}
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
    raise DataError(f'{where}: stored id counts {path!r} are unreadable (truncated or not a '
                    f'save_counts file: {type(e).__name__}: {e})') from e


def load_counts(path: str, spec, where: str) -> dict[str, np.ndarray]:
  """Reads save_counts' file; every table the spec implies must be there, 1-D integers of its
  vocabulary's length, >= 0, with id 0 counted 0. Anything else (truncated, unreadable, a
  table missing, extra or of the wrong length) is a DataError naming `where` and the file."""
  counts = _read_npz(path, where)
  vocab = expected_tables(spec)
  if sorted(counts) != sorted(vocab):
    raise DataError(f'{where}: stored id counts {path!r} hold tables {sorted(counts)}, the '
                    f'DataSpec needs {sorted(vocab)}')
  for k, v in counts.items():
    if (v.ndim != 1 or len(v) != vocab[k] or v.dtype.kind not in 'iu' or (len(v) and v[0] != 0)
        or (v < 0).any()):
      raise DataError(f'{where}: stored id counts {path!r} table {k!r} ({v.dtype} {v.shape}) do '
                      f'not match the DataSpec (vocabularies {vocab}; 1-D, integers >= 0, id 0 '
                      'counted 0)')
  return {k: v.astype(np.int64) for k, v in counts.items()}


class IdCounts:
  """Training-split counts n_j per table; `counts(table) -> [vocab] int64`.

  `IdCounts(split, spec)` counts lazily on first use (the fallback); `from_counts` wraps
  counts read from disk or given directly. `source` says which (shown in the run's info).
  """

  def __init__(self, split, spec, source: str = 'counted from the train split at first use'):
    self._split, self._spec, self.source = split, spec, source
    self._counts: dict[str, np.ndarray] | None = None

  @classmethod
  def from_counts(cls, counts: Mapping[str, np.ndarray], source: str = 'given') -> IdCounts:
    """Counts given directly (stored with the dataset, tests, hand-made batches)."""
    out = cls(None, None, source)
    out._counts = {k: np.asarray(v, np.int64) for k, v in counts.items()}
    return out

  def counts(self, table: str) -> np.ndarray:
    if self._counts is None:
      self._counts = count_split(self._split, self._spec)
    if table not in self._counts:
      raise KeyError(f'no id counts for embedding table {table!r}; have {sorted(self._counts)}')
    return self._counts[table]

  def __hash__(self):
    return id(self)

  def __eq__(self, other):
    return self is other

  def __repr__(self):
    state = 'counted' if self._counts is not None else 'not counted yet'
    return f'IdCounts({state}; {self.source})'
