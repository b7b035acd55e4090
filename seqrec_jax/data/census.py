"""UCI Adult ("census income") as a two-task ranking table (the MMoE paper's census task pair).

* Tasks: `income` (income >50K) and `never_married` (marital-status == Never-married);
  labels [B, 2]. The label columns and `education` are removed from the inputs
  (`drop_columns` adds more; `educational-num` is the ordinal code of `education` and stays
  unless dropped too).
* Inputs: categorical columns -> `sparse` [B, F] (one vocabulary per column, built on TRAIN
  rows with `min_count`; '?' (missing) is a value with its own id; id 0 = unseen/rare);
  numeric columns -> `dense` [B, D]: log(1 + x) for `log_columns`, then standardised with the
  TRAIN mean and std. No user or item sequence: num_items = max_len = 0, user_id = 0 for all
  rows (num_users = 1), so GAUC equals AUC.
* Split: a seeded permutation of rows (`valid_frac`, `test_frac`), each split in file order.
* Source: the packaged `files/adult.csv.gz` (CC BY 4.0, see files/README.md) or `path`.
  Split into columns by pyarrow (`arrow_rows`); a file with a malformed line goes through the
  exact line reader (raw.read_delimited), which names or skips (skip_bad_rows) each such line.
"""
from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np

from seqrec_jax.configs.keys import Key, defaults, integer, names, number, text
from seqrec_jax.data import common, raw
from seqrec_jax.data.features import DataError, DataSpec, FeatureSpec, Task
from seqrec_jax.data.common import Prepared

KEYS = (
    Key('path', '', "'' = the packaged files/adult.csv.gz", text()),
    Key('valid_frac', 0.1, 'fraction of rows in valid', number(0, 1)),
    Key('test_frac', 0.2, 'fraction of rows in test', number(0, 1)),
    Key('split_seed', 0, 'seed of the row split', integer()),
    Key('min_count', 1, 'categorical values seen fewer times in train -> id 0', integer(0)),
    Key('drop_columns', ('education',), 'inputs removed besides the label columns', names()),
    Key('log_columns', ('capital-gain', 'capital-loss'), 'log(1 + x) before standardising',
        names(lambda: NUMERIC)),
    Key('skip_bad_rows', False, 'True: count and skip malformed rows instead of failing'),
)
DEFAULTS = defaults(KEYS)
HOMEPAGE = 'https://doi.org/10.24432/C5XW20'
CITATION = ('Becker, B. and Kohavi, R. (1996). Adult. UCI Machine Learning Repository. '
            'https://doi.org/10.24432/C5XW20')
COLUMNS = ('age', 'workclass', 'fnlwgt', 'education', 'educational-num', 'marital-status',
           'occupation', 'relationship', 'race', 'gender', 'capital-gain', 'capital-loss',
           'hours-per-week', 'native-country', 'income')
NUMERIC = ('age', 'fnlwgt', 'educational-num', 'capital-gain', 'capital-loss', 'hours-per-week')
LABELS = ('marital-status', 'income')
TASKS = (Task('income'), Task('never_married'))
_INCOME = {'<=50K': 0.0, '<=50K.': 0.0, '>50K': 1.0, '>50K.': 1.0}


def packaged_file() -> str:
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), 'files', 'adult.csv.gz')


def _inputs(cfg):
  drop = set(cfg['drop_columns'])
  unknown = drop - set(COLUMNS)
  if unknown:
    raise ValueError(f'config.data.census.drop_columns has unknown columns {sorted(unknown)}; '
                     f'columns are {COLUMNS}')
  unknown = set(cfg['log_columns']) - set(NUMERIC)
  if unknown:
    raise ValueError(f'config.data.census.log_columns {sorted(unknown)} are not numeric '
                     f'columns {NUMERIC}')
  cats = [c for c in COLUMNS if c not in NUMERIC and c not in LABELS and c not in drop]
  nums = [c for c in NUMERIC if c not in drop]
  return cats, nums


def fields(cfg) -> dict:
  cats, nums = _inputs(cfg)
  return {'user_id': ((), np.int32), 'sparse': ((len(cats),), np.int32),
          'dense': ((len(nums),), np.float32), 'labels': ((len(TASKS),), np.float32)}


def source_fingerprint(cfg) -> list:
  return raw.fingerprint([cfg['path'] or packaged_file()])


def tag(cfg) -> str:
  return 'adult' if not cfg['path'] else os.path.basename(cfg['path']).split('.')[0]


def typed_columns(names, numeric, kind: str, label: str, label_values) -> list[raw.Column]:
  """Typed columns of a census table: `numeric` ones of `kind` ('int' | 'float') and >= 0,
  the `label` column one of `label_values`, every other one a non-empty string (UCI writes a
  missing value as '?'). Shared with census_kdd.py."""
  cols = []
  for c in names:
    if c in numeric:
      cols.append(raw.Column(c, kind, check=lambda v: v < 0, why='must be >= 0'))
    elif c == label:
      cols.append(raw.Column(c, 'str', check=lambda v: ~np.isin(np.char.strip(v.astype(str)),
                                                               list(label_values)),
                             why=f'income must be one of {sorted(label_values)}'))
    else:
      cols.append(raw.Column(c, 'str', check=lambda v: np.char.strip(v.astype(str)) == '',
                             why='empty value (write missing values as ?)'))
  return cols


def columns() -> list[raw.Column]:
  """The 15 typed columns (numerics >= 0, incomes from _INCOME, no empty strings)."""
  return typed_columns(COLUMNS, NUMERIC, 'int', 'income', _INCOME)


def arrow_rows(data: bytes, sep: str, cols: Sequence[raw.Column],
               first_line: int = 1) -> dict[str, np.ndarray] | None:
  """The rows raw.read_delimited would give for `data` (all lines well formed), split by
  pyarrow and converted by raw's own column conversion; None where any line or value is
  malformed (the caller then runs raw.read_delimited, which names or skips those lines)."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.csv as pacsv  # pylint: disable=g-import-not-at-top
  names = [c.name for c in cols]
  lines = data.split(b'\n')
  if lines and not lines[-1]:
    lines.pop()
  line_nos = first_line + np.flatnonzero([bool(x.rstrip(b'\r')) for x in lines])
  if not len(line_nos):
    return None
  try:
    table = pacsv.read_csv(
        pa.py_buffer(data), read_options=pacsv.ReadOptions(column_names=names),
        parse_options=pacsv.ParseOptions(delimiter=sep, quote_char=False),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in names},
                                             strings_can_be_null=False))
  except pa.ArrowInvalid:      # a wrong field count, bad UTF-8, ...
    return None
  if table.num_rows != len(line_nos):    # e.g. a lone '\r' inside a line
    return None
  out = {}
  for col in cols:
    vals, bad = raw._convert(table.column(col.name).to_numpy(zero_copy_only=False), col)  # pylint: disable=protected-access
    if bad.any():
      return None
    out[col.name] = vals
  out['_line'] = line_nos.astype(np.int64)
  return out


def read(path: str, bad: raw.BadRows) -> dict[str, np.ndarray]:
  """All 15 columns; strings stripped; numerics int64; labels validated."""
  if not os.path.exists(path):
    raise DataError(f'config.data.census.path={path!r} does not exist')
  cols = columns()
  with raw.open_binary(path) as f:
    first = raw.check_header(f, path, COLUMNS, ',')
    data = f.read()
  out = arrow_rows(data, ',', cols, first)
  if out is None:   # the exact line reader names (or skips) the malformed lines
    lines = raw.iter_lines(io.BytesIO(data), path, bad, first_line=first)
    out = raw.concat_chunks(raw.read_delimited(lines, path, ',', cols, bad))
  if not out or not len(out['_line']):
    raise DataError(f'{path}: no data rows')
  for c in COLUMNS:
    if c not in NUMERIC:
      out[c] = np.char.strip(out[c].astype(str))
  return out


def prepare(cfg) -> Prepared:
  cats, nums = _inputs(cfg)
  bad = raw.BadRows(bool(cfg['skip_bad_rows']), 'config.data.census.skip_bad_rows')
  path = cfg['path'] or packaged_file()
  t = read(path, bad)
  n = len(t['_line'])
  split = common.split_ids(n, cfg['valid_frac'], cfg['test_frac'], cfg['split_seed'])
  train = split == common.TRAIN
  vocabs = {c: common.build_vocab(t[c][train], cfg['min_count']) for c in cats}
  sparse = np.stack([common.lookup(vocabs[c], t[c]) for c in cats], 1).astype(np.int32)
  dense = np.stack([t[c].astype(np.float64) for c in nums], 1) if nums else np.zeros((n, 0))
  for j, c in enumerate(nums):
    if c in cfg['log_columns']:
      dense[:, j] = np.log1p(dense[:, j])
  mean, std = dense[train].mean(0), dense[train].std(0)
  std = np.where(std > 0, std, 1.0)
  dense = ((dense - mean) / std).astype(np.float32)
  labels = np.stack([np.vectorize(_INCOME.get, otypes=[np.float32])(t['income']),
                     (t['marital-status'] == 'Never-married').astype(np.float32)], 1)
  arrays = {'user_id': np.zeros(n, np.int32), 'sparse': sparse, 'dense': dense,
            'labels': labels.astype(np.float32)}

  def gen(split_id):
    rows = np.flatnonzero(split == split_id)
    return lambda: iter([{k: v[rows] for k, v in arrays.items()}])

  spec = DataSpec(num_users=1, num_items=0, num_cates=0, max_len=0,
                  sparse=tuple(FeatureSpec(c, len(vocabs[c]) + 1) for c in cats),
                  dense_dim=len(nums), tasks=TASKS)
  info = {'source': path, 'rows': n, 'sparse_fields': cats, 'dense_fields': nums,
          'log_columns': list(cfg['log_columns']),
          'vocab_sizes': {c: len(vocabs[c]) + 1 for c in cats},
          'train_mean': dict(zip(nums, mean.tolist())), 'train_std': dict(zip(nums, std.tolist())),
          'missing_values': {c: int((t[c] == '?').sum()) for c in cats}}
  info.update(bad.report())
  return Prepared(spec, {s: gen(i) for s, i in common.SPLIT_IDS.items()}, info)
