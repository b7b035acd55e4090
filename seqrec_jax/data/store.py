"""Column files: how prepared datasets are stored and read (one fixed-width .npy per field).

Layout of a prepared dataset directory (written by data/tfds_source.ColumnBuilder):
  <split>/<field>.npy         per-example columns, rows in split order
  behaviours/<field>.npy      sequence datasets: the flat behaviour sequence of all users
                              (hist_items, hist_cates [M]), stored once for every split

Sequence rows store `hist_start, hist_end` (int64 offsets into the behaviour sequence) instead
of materialised [L] histories: storage grows with the ratings, not ratings x L, and the length-L
window is cut at batch time (`cut_windows`), right-aligned, newest at position L-1, padding id 0
and mask False. Writing appends each chunk's bytes to its column file (the cost is per chunk,
not per row; the .npy header is rewritten with the final shape when the file closes). Reading
memory-maps the files (`np.load(mmap_mode='r')`) or loads them whole, and a batch is one
fancy-index gather per column plus the window cut, the same code either way, so a split read
from disk and the same split in memory return identical batches.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from seqrec_jax.data.features import DataError, DataSpec, validate_arrays

BEHAVIOURS = 'behaviours'
RANGE_KEYS = ('hist_start', 'hist_end')
WINDOW_KEYS = ('hist_items', 'hist_cates')   # behaviour fields cut into [B, L] windows
_HEADER = 256   # bytes reserved for the .npy header (magic, version, length, dict, padding)


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
  d = {'descr': np.lib.format.dtype_to_descr(np.dtype(dtype)), 'fortran_order': False,
       'shape': tuple(int(s) for s in shape)}
  text = repr(d).encode('latin1')
  pad = _HEADER - 10 - len(text) - 1
  if pad < 0:
    raise ValueError(f'.npy header for shape {shape} does not fit {_HEADER} bytes')
  body = text + b' ' * pad + b'\n'
  return b'\x93NUMPY\x01\x00' + len(body).to_bytes(2, 'little') + body


class ColumnWriter:
  """Appends [n, *row_shape] chunks of one dtype to a .npy file (shape fixed on close)."""

  def __init__(self, path: str, dtype, row_shape: tuple[int, ...] = ()):
    self.path, self.dtype, self.row_shape, self.rows = path, np.dtype(dtype), tuple(row_shape), 0
    os.makedirs(os.path.dirname(path), exist_ok=True)
    self._f = open(path, 'wb')
    self._f.write(_header(self.dtype, (0,) + self.row_shape))

  def append(self, arr: np.ndarray) -> None:
    arr = np.asarray(arr)
    if arr.shape[1:] != self.row_shape or arr.dtype != self.dtype:
      raise DataError(f'{self.path}: chunk of shape {arr.shape} dtype {arr.dtype}, expected '
                      f'[n, {", ".join(map(str, self.row_shape))}] {self.dtype}')
    self._f.write(np.ascontiguousarray(arr).tobytes())
    self.rows += len(arr)

  def close(self) -> None:
    self._f.seek(0)
    self._f.write(_header(self.dtype, (self.rows,) + self.row_shape))
    self._f.close()


def write_columns(directory: str, fields: Mapping[str, tuple[tuple[int, ...], object]],
                  chunks) -> int:
  """Writes an iterator of chunks (dicts keyed by `fields`) to directory/<field>.npy; returns
  the row count."""
  writers = {k: ColumnWriter(os.path.join(directory, f'{k}.npy'), t, s)
             for k, (s, t) in fields.items()}
  try:
    for c in chunks:
      for k, w in writers.items():
        w.append(c[k])
  finally:
    for w in writers.values():
      w.close()
  return next(iter(writers.values())).rows if writers else 0


def read_columns(directory: str, names, in_memory: bool) -> dict[str, np.ndarray]:
  """Opens directory/<name>.npy for each name: memory-mapped, or read whole."""
  out = {}
  for k in names:
    path = os.path.join(directory, f'{k}.npy')
    try:
      out[k] = np.load(path, mmap_mode=None if in_memory else 'r')
    except (OSError, ValueError) as e:
      raise DataError(f'{path}: cannot read the stored column ({e}); delete the prepared '
                      f'copy {os.path.dirname(directory)} to rebuild it') from e
  return out


def cut_windows(hist_start: np.ndarray, hist_end: np.ndarray,
                behaviours: Mapping[str, np.ndarray], max_len: int) -> dict[str, np.ndarray]:
  """Length-L history windows of a batch.

  Args:
    hist_start, hist_end: [B] int64: the example's user's first behaviour and one past its
      newest history behaviour, offsets into the flat behaviour arrays.
    behaviours: {field: [M]} flat behaviour sequence (e.g. hist_items, hist_cates).
    max_len: L.
  Returns:
    {field: [B, L] (the behaviours [max(start, end - L), end), right-aligned, 0 elsewhere),
     'hist_mask': [B, L] bool}.
  """
  m = len(next(iter(behaviours.values()))) if behaviours else 0
  dt = np.int32 if m < 2**31 - max_len else np.int64   # int32 halves the memory traffic
  start = np.asarray(hist_start).astype(dt)[:, None]
  pos = np.asarray(hist_end).astype(dt)[:, None] + np.arange(-max_len, 0, dtype=dt)
  mask = pos >= start
  np.maximum(pos, start, out=pos)   # padding positions read a valid behaviour, then zeroed
  if m:
    np.minimum(pos, m - 1, out=pos)
  out = {'hist_mask': mask}
  for k, beh in behaviours.items():
    v = np.asarray(np.take(beh, pos)) if m else np.zeros(pos.shape, beh.dtype)
    v *= mask
    out[k] = v
  return out


class ColumnSplit:
  """A split served from stored columns (the `Split` protocol of data/pipeline.py, batched).

  columns: {field: [N, ...]} stored rows (memory-mapped or in memory); behaviours: the flat
  behaviour sequence (sequence datasets) or None; max_len: L of the windows cut per batch.
  """

  def __init__(self, columns: Mapping[str, np.ndarray], behaviours: Mapping[str, np.ndarray] | None,
               max_len: int, where: str = ''):
    self.columns, self.behaviours = dict(columns), dict(behaviours or {})
    self.max_len, self.where = int(max_len), where
    self._n = len(next(iter(self.columns.values())))
    self._all = None

  def __len__(self) -> int:
    return self._n

  @property
  def on_disk(self) -> bool:
    return any(isinstance(v, np.memmap) for v in self.columns.values())

  def __getitems__(self, indices) -> dict[str, np.ndarray]:
    idx = np.asarray(indices, np.int64)
    out = {k: np.asarray(v[idx]) for k, v in self.columns.items() if k not in RANGE_KEYS}
    if self.behaviours:
      out.update(cut_windows(self.columns['hist_start'][idx], self.columns['hist_end'][idx],
                             self.behaviours, self.max_len))
    return out

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    return {k: v[0] for k, v in self.__getitems__([int(i)]).items()}

  def all(self) -> dict[str, np.ndarray]:
    """Every row with its history window materialised (cached; for small splits)."""
    if self._all is None:
      self._all = self.__getitems__(np.arange(self._n))
    return self._all

  @property
  def arrays(self) -> dict[str, np.ndarray]:
    return self.all()

  def validate(self, spec: DataSpec, allow_empty_history: bool = True,
               chunk: int = 1 << 20) -> None:
    """Checks every stored value once (ids against the vocabularies, finite values, labels,
    behaviour ranges) in chunks, without cutting windows: every window is then valid."""
    m = validate_behaviours(self.behaviours, spec, self.where) if self.behaviours else None
    for s in range(0, self._n, chunk):
      rows = {k: np.asarray(v[s:s + chunk]) for k, v in self.columns.items()}
      validate_rows(rows, m, spec, f'{self.where} (rows from {s})', allow_empty_history)


def validate_behaviours(behaviours: Mapping[str, np.ndarray], spec: DataSpec, where: str,
                        chunk: int = 1 << 22) -> int:
  """Checks the flat behaviour ids against the vocabularies; returns M, their length."""
  vocab = {'hist_items': spec.num_items, 'hist_cates': spec.num_cates}
  lens = {len(v) for v in behaviours.values()}
  if len(lens) != 1:
    raise DataError(f'{where}: behaviour fields have different lengths {lens}')
  for k, v in behaviours.items():
    if k not in vocab:
      raise DataError(f'{where}: unknown behaviour field {k!r} (expected {sorted(vocab)})')
    for s in range(0, len(v), chunk):
      b = np.asarray(v[s:s + chunk])
      bad = (b < 0) | (b >= max(vocab[k], 1))
      if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f'{where}: behaviour {k!r} has id {int(b[i])} at position {s + i}, '
                        f'outside the vocabulary [0, {vocab[k]})')
  return lens.pop()


def validate_rows(rows: Mapping[str, np.ndarray], m: int | None, spec: DataSpec, where: str,
                  allow_empty_history: bool = True) -> None:
  """Checks stored rows; m = the behaviour sequence's length for sequence rows (None: rows
  without behaviour ranges, checked as the batch contract)."""
  rows = dict(rows)
  if m is not None:
    a, e = (np.asarray(rows.pop(k)) for k in RANGE_KEYS)
    bad = (a < 0) | (a > e) | (e > m)
    if bad.any():
      i = int(np.argmax(bad))
      raise DataError(f'{where}: row {i} has behaviour range [{int(a[i])}, {int(e[i])}) '
                      f'outside [0, {m}]')
    if not allow_empty_history and (a == e).any():
      i = int(np.argmax(a == e))
      raise DataError(f'{where}: row {i} has an empty history ({int((a == e).sum())} such '
                      'rows); set data.allow_empty_history=True to accept them')
  validate_arrays(rows, spec, where, history=m is None)


def nbytes(directory: str, names) -> int:
  return int(sum(os.path.getsize(os.path.join(directory, f'{k}.npy')) for k in names))
