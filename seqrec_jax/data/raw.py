"""Raw-file readers shared by the real datasets: plain / gzip / zip-member text, delimited
tables with typed columns, and JSON-lines files whose lines are strict JSON or python
literals (older Amazon dumps).

Every malformed row either raises `DataError` naming the file, the line and the reason, or
(when the user sets `skip_bad_rows=True`) is counted and skipped; the count is reported in
the dataset info, so nothing is lost silently. Empty lines carry no data and are ignored.
"""
from __future__ import annotations

import ast
import collections
import contextlib
import csv
import dataclasses
import gzip
import hashlib
import io
import json
import os
import zipfile
import zlib
from typing import Any, Callable, Iterator, Sequence

from absl import logging
import numpy as np

from seqrec_jax.data.features import DataError


class BadRows:
  """Raises on a malformed row (strict) or counts it and keeps a few examples (skip=True)."""

  def __init__(self, skip: bool, config_key: str = 'skip_bad_rows', max_examples: int = 5):
    self.skip = skip
    self.config_key = config_key
    self.count: collections.Counter = collections.Counter()
    self.examples: list[str] = []
    self.max_examples = max_examples

  def __call__(self, where: str, line: int, reason: str, unit: str = 'line') -> None:
    msg = f'{where}, {unit} {line}: {reason}'
    if not self.skip:
      raise DataError(f'{msg} (set {self.config_key}=True to count and skip malformed rows)')
    self.count[where] += 1
    if len(self.examples) < self.max_examples:
      self.examples.append(msg)

  @property
  def total(self) -> int:
    return int(sum(self.count.values()))

  def report(self) -> dict[str, Any]:
    if self.total:
      logging.warning('skipped %d malformed rows (%s); first: %s', self.total,
                      dict(self.count), self.examples[:1])
    return {'bad_rows_skipped': self.total, 'bad_rows_by_file': dict(self.count),
            'bad_row_examples': list(self.examples)}


# What a damaged compressed file raises while it is opened or read.
_CORRUPT = (zlib.error, EOFError, zipfile.BadZipFile, gzip.BadGzipFile)


def corrupt_error(where: str, e: BaseException) -> DataError:
  kind = type(e).__name__
  if type(e).__module__ != 'builtins':
    kind = f'{type(e).__module__}.{kind}'       # zlib.error, gzip.BadGzipFile, ...
  return DataError(f'{where}: the file is corrupt or truncated ({kind}: {e}); '
                   'download or extract it again')


def unreadable_error(path: str, e: OSError) -> DataError:
  """A DataError naming `path`; says so when it is a link that does not resolve."""
  if os.path.islink(path):
    return DataError(f'{path}: a symbolic link to {os.readlink(path)!r} that does not resolve '
                     f'({e.strerror}: it dangles or loops); point it at the real file')
  return DataError(f'{path}: cannot be read ({type(e).__name__}: {e.strerror or e})')


def _open(stack: contextlib.ExitStack, path: str, member: str | None):
  if member is not None:
    zf = stack.enter_context(zipfile.ZipFile(path))
    f = stack.enter_context(zf.open(member))
    return stack.enter_context(gzip.open(f)) if member.endswith('.gz') else f
  if path.endswith('.gz'):
    return stack.enter_context(gzip.open(path, 'rb'))
  return stack.enter_context(open(path, 'rb'))


@contextlib.contextmanager
def open_binary(path: str, member: str | None = None) -> Iterator[io.BufferedIOBase]:
  """Opens a plain, .gz, or zip-member file for binary line iteration. A file that cannot be
  opened, or whose compressed data is damaged (while opened or read), is a DataError naming
  the file (and member)."""
  where = display_name(path, member)
  with contextlib.ExitStack() as stack:
    try:
      f = _open(stack, path, member)
    except _CORRUPT as e:
      raise corrupt_error(where, e) from e
    except OSError as e:
      raise unreadable_error(path, e) from e
    try:
      yield f
    except _CORRUPT as e:
      raise corrupt_error(where, e) from e


def display_name(path: str, member: str | None = None) -> str:
  return f'{path}!{member}' if member else path


HASH_MAX_BYTES = 32 << 20   # files up to this size also enter the cache key by content


def _file_fingerprint(p: str) -> list[Any]:
  try:
    st = os.stat(p)
    out = [os.path.abspath(p), st.st_size, st.st_mtime_ns, st.st_ino]
    if st.st_size <= HASH_MAX_BYTES:
      h = hashlib.sha1()
      with open(p, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
          h.update(block)
      out.append(h.hexdigest())
  except OSError as e:
    raise unreadable_error(p, e) from e
  return out


def fingerprint(paths: Sequence[str]) -> list[list[Any]]:
  """(path, size, mtime_ns, inode[, sha1 of the content]) of every input file; a directory
  contributes every file under it except links that do not resolve (nothing can read them).
  A file changed in any of these (even rewritten in place with the old size and mtime, when
  it is small enough to hash) yields a new cache key. Pass the files the loader reads: a named
  file that cannot be read (e.g. a dangling link) is a DataError naming it."""
  out = []
  for p in paths:
    if os.path.isdir(p):
      files = sorted(os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs)
      out.extend(_file_fingerprint(f) for f in files if os.path.exists(f))
    else:
      out.append(_file_fingerprint(p))
  return out


def iter_lines(f, where: str, bad: BadRows, encoding: str = 'utf-8', first_line: int = 1,
               keep: Callable[[int], bool] | None = None) -> Iterator[tuple[int, str]]:
  """Yields (line_number, text without newline) for non-blank lines; 1-based numbers.

  `first_line` is the number of the next line of `f` (2 after `check_header`); `keep(line)`
  selects lines before they are decoded (others are neither decoded nor reported).
  """
  for lineno, raw in enumerate(f, first_line):
    if keep is not None and not keep(lineno):
      continue
    try:
      line = raw.decode(encoding)
    except UnicodeDecodeError as e:
      bad(where, lineno, f'not valid {encoding} text ({e.reason} at byte {e.start})')
      continue
    line = line.rstrip('\r\n')
    if line:   # an empty line holds no data; whitespace-only lines are malformed rows
      yield lineno, line


def check_header(f, where: str, expected: Sequence[str], sep: str,
                 encoding: str = 'utf-8') -> int:
  """Reads the first line and checks it names `expected` columns (in order); returns 2, the
  number of the next line."""
  first = f.readline().decode(encoding, errors='replace').rstrip('\r\n')
  got = [c.strip().strip('"') for c in first.split(sep)]
  if got != list(expected):
    raise DataError(f'{where}, line 1: header {got} does not match the expected columns '
                    f'{list(expected)}')
  return 2


@dataclasses.dataclass(frozen=True)
class Column:
  """A typed column. kind: 'int' | 'float' | 'str'. `empty` is the value of an empty int or
  float field (None = an empty field is malformed). `check(values) -> bad mask` and `why`
  describe an extra per-value constraint."""
  name: str
  kind: str = 'str'
  empty: float | None = None
  check: Callable[[np.ndarray], np.ndarray] | None = None
  why: str = ''


def _convert(strings: list[str], col: Column) -> tuple[np.ndarray, np.ndarray]:
  """Returns (values, bad mask) for one column of one chunk."""
  s = np.asarray(strings, dtype=object)
  if col.kind == 'str':
    vals = s
  else:
    dtype = np.int64 if col.kind == 'int' else np.float64
    empty = s == ''
    fill = s.copy()
    fill[empty] = '0'
    try:
      vals = fill.astype(str).astype(dtype)
      bad = np.zeros(len(s), bool)
    except (ValueError, OverflowError):   # locate the bad values one by one (rare path)
      conv = int if col.kind == 'int' else float
      vals = np.zeros(len(s), dtype)
      bad = np.zeros(len(s), bool)
      for i, x in enumerate(fill):
        try:
          vals[i] = conv(x)
        except (ValueError, OverflowError):
          bad[i] = True
    if col.kind == 'float':
      bad |= ~np.isfinite(vals)
    if col.empty is None:
      bad |= empty
    elif empty.any():
      vals[empty] = col.empty
    if col.check is not None:
      bad |= np.asarray(col.check(vals), bool) & ~bad
    return vals, bad
  bad = np.zeros(len(s), bool)
  if col.check is not None:
    bad |= np.asarray(col.check(vals), bool)
  return vals, bad


_INT64 = (-2**63, 2**63)


def _reason(col: Column, value: str) -> str:
  if col.kind != 'str' and value == '' and col.empty is None:
    return f'empty {col.name!r} field'
  if col.kind != 'str':
    try:
      x = float(value) if col.kind == 'float' else int(value)
    except (ValueError, OverflowError):
      return f'{col.name!r} is {value!r}, not {"an integer" if col.kind == "int" else "a number"}'
    if col.kind == 'int' and not _INT64[0] <= x < _INT64[1]:
      return f'{col.name!r} is {value!r}, outside the 64-bit integer range [-2^63, 2^63)'
    if col.kind == 'float' and not np.isfinite(x):
      return f'{col.name!r} is {value!r}, not a finite number'
  return f'{col.name!r} is {value!r}' + (f': {col.why}' if col.why else '')


def read_delimited(lines: Iterator[tuple[int, str]], where: str, sep: str,
                   columns: Sequence[Column], bad: BadRows, chunk_rows: int = 1 << 17,
                   quoted: bool = False) -> Iterator[dict[str, np.ndarray]]:
  """Parses delimited rows into typed column chunks (plus '_line': source line numbers).

  Args:
    lines: (line_number, text) pairs, e.g. from `iter_lines`.
    where: file name for messages.
    sep: field separator ('::' allowed).
    columns: expected columns, in order.
    bad: malformed-row policy.
    chunk_rows: rows per yielded chunk.
    quoted: parse CSV quoting (titles with commas); otherwise a plain split.
  """
  n_cols = len(columns)
  names = ', '.join(c.name for c in columns)

  def split_fields(text):
    if quoted:
      return next(csv.reader([text]))
    return text.split(sep)

  def flush(buf, line_nos):
    line_nos = np.asarray(line_nos, np.int64)
    out, bad_any = {}, np.zeros(len(line_nos), bool)
    raw_cols = list(zip(*buf))
    for j, col in enumerate(columns):
      vals, b = _convert(list(raw_cols[j]), col)
      for i in np.flatnonzero(b & ~bad_any):
        bad(where, int(line_nos[i]), _reason(col, raw_cols[j][i]))
      bad_any |= b
      out[col.name] = vals
    keep = ~bad_any
    out = {k: v[keep] for k, v in out.items()}
    out['_line'] = line_nos[keep]
    return out

  buf, line_nos = [], []
  for lineno, text in lines:
    try:
      fields = split_fields(text)
      reason = None if len(fields) == n_cols else (
          f'expected {n_cols} fields ({names}) separated by {sep!r}, got {len(fields)}')
    except csv.Error as e:
      reason = f'unparseable CSV ({e})'
    if reason is not None:
      if buf and not bad.skip:   # strict: an earlier bad value must be reported first
        flush(buf, line_nos)
      bad(where, lineno, reason)
      continue
    buf.append(fields)
    line_nos.append(lineno)
    if len(buf) >= chunk_rows:
      yield flush(buf, line_nos)
      buf, line_nos = [], []
  if buf:
    yield flush(buf, line_nos)


def concat_chunks(chunks: Iterator[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  chunks = list(chunks)
  if not chunks:
    return {}
  return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def parse_record(text: str) -> Any:
  """A JSON object, or a python literal dict (the 2014 Amazon dumps use `eval`-able lines).
  Anything else, including a line nested too deeply to parse, is a ValueError with a reason."""
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    why = f'{e.msg} at column {e.colno}'
  except RecursionError:
    raise ValueError('nested too deeply to parse (RecursionError)') from None
  try:
    return ast.literal_eval(text)
  except RecursionError:
    raise ValueError('nested too deeply to parse (RecursionError)') from None
  except (ValueError, SyntaxError, MemoryError, TypeError, OverflowError) as e:
    raise ValueError(f'neither JSON ({why}) nor a python literal ({type(e).__name__})') from None


def read_records(lines: Iterator[tuple[int, str]], where: str, bad: BadRows,
                 extract: Callable[[dict], tuple]) -> Iterator[tuple[int, tuple]]:
  """Parses JSON / python-literal lines; `extract(record)` returns the needed fields or raises
  ValueError with a reason. Yields (line_number, extracted)."""
  for lineno, text in lines:
    try:
      rec = parse_record(text)
    except ValueError as e:
      bad(where, lineno, f'unparseable record: {e}')
      continue
    if not isinstance(rec, dict):
      bad(where, lineno, f'record is a {type(rec).__name__}, expected an object')
      continue
    try:
      yield lineno, extract(rec)
    except (ValueError, KeyError, TypeError, OverflowError) as e:
      bad(where, lineno, f'missing field {e.args[0]!r}' if isinstance(e, KeyError) else str(e))
