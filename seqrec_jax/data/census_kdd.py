"""UCI Census-income (KDD) as the MMoE paper's two-task tables (Ma et al., KDD 2018, Sec. 6.2).

* Source: the UCI files `census-income.data` (199,523 rows) and `census-income.test`
  (99,762 rows), plain or .gz, in the directory or zip `path`; no header; 42 comma-separated
  columns (values follow ', '; see census-income.names): 40 features, the sampling weight
  `instance_weight` (dropped: census-income.names says it must not be used by classifiers) and
  the label `income_50k` ('- 50000.' or '50000+.').
* Tasks (`task_group`, the paper's two groups): 1 = `income` (income_50k is '50000+.') and
  `never_married` (marital_stat == 'Never married'); 2 = `college` (education in
  `college_levels`: some college or any college degree, our reading of the paper's
  "college-level or higher") and `never_married`. labels [B, 2].
* Inputs: income_50k and marital_stat always leave the inputs, education too in group 2
  (`drop_columns` removes more). Categorical columns (33 nominal ones, codes such as
  det_ind_code and year included) -> `sparse` [B, F], one vocabulary per column built on TRAIN
  rows with `min_count` ('?' = missing is a value with its own id; id 0 = unseen/rare); the 7
  continuous ones -> `dense` [B, D]: log(1 + x) for `log_columns`, then standardised with the
  TRAIN mean and std. user_id = 0 (num_users = 1), num_items = max_len = 0.
* Split (the paper): train = census-income.data; census-income.test is split at random 1:1
  into valid and test (`valid_share`, `split_seed`); each split keeps file order.
* Reading: pyarrow splits each file (census.arrow_rows); a file with a malformed line goes
  through the exact line reader, which names the file and line or (skip_bad_rows) counts it.
"""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from seqrec_jax.configs.keys import Key, defaults, integer, names, number, one_of, text
from seqrec_jax.data import census, common, raw
from seqrec_jax.data.common import Prepared
from seqrec_jax.data.features import DataError, DataSpec, FeatureSpec, Task

COLLEGE = ('Some college but no degree', 'Associates degree-occup /vocational',
           'Associates degree-academic program', 'Bachelors degree(BA AB BS)',
           'Masters degree(MA MS MEng MEd MSW MBA)', 'Prof school degree (MD DDS DVM LLB JD)',
           'Doctorate degree(PhD EdD)')
KEYS = (
    Key('path', '', 'directory or zip with census-income.data / .test (or .gz)', text()),
    Key('task_group', 1, '1: income + never_married; 2: college + never_married',
        one_of((1, 2))),
    Key('valid_share', 0.5, 'share of census-income.test rows in valid (the rest: test)',
        number(0, 1)),
    Key('split_seed', 0, 'seed of the valid/test split', integer()),
    Key('min_count', 1, 'categorical values seen fewer times in train -> id 0', integer(0)),
    Key('drop_columns', (), 'inputs removed besides the label columns', names()),
    Key('log_columns', (), 'continuous columns log(1 + x)\'d before standardising',
        names(lambda: CONTINUOUS)),
    Key('college_levels', COLLEGE, "education values that make task group 2's `college` "
        'label 1', names()),
    Key('skip_bad_rows', False, 'True: count and skip malformed rows instead of failing'),
)
DEFAULTS = defaults(KEYS)
HOMEPAGE = 'https://doi.org/10.24432/C5N30T'
CITATION = ('Lane, T. and Kohavi, R. (2000). Census-Income (KDD). UCI Machine Learning '
            'Repository. https://doi.org/10.24432/C5N30T; task groups from Ma, J. et al. (2018). '
            'Modeling Task Relationships in Multi-task Learning with Multi-gate '
            'Mixture-of-Experts. KDD.')
COLUMNS = (
    'age', 'class_worker', 'det_ind_code', 'det_occ_code', 'education', 'wage_per_hour',
    'hs_college', 'marital_stat', 'major_ind_code', 'major_occ_code', 'race', 'hisp_origin',
    'sex', 'union_member', 'unemp_reason', 'full_or_part_emp', 'capital_gains',
    'capital_losses', 'stock_dividends', 'tax_filer_stat', 'region_prev_res', 'state_prev_res',
    'det_hh_fam_stat', 'det_hh_summ', 'instance_weight', 'mig_chg_msa', 'mig_chg_reg',
    'mig_move_reg', 'mig_same', 'mig_prev_sunbelt', 'num_emp', 'fam_under_18',
    'country_father', 'country_mother', 'country_self', 'citizenship', 'own_or_self',
    'vet_question', 'vet_benefits', 'weeks_worked', 'year', 'income_50k')
CONTINUOUS = ('age', 'wage_per_hour', 'capital_gains', 'capital_losses', 'stock_dividends',
              'num_emp', 'weeks_worked')
NOT_INPUTS = ('instance_weight', 'income_50k', 'marital_stat')
TASK_GROUPS = {1: (Task('income'), Task('never_married')),
               2: (Task('college'), Task('never_married'))}
FILES = ('census-income.data', 'census-income.test')
_INCOME = {'- 50000.': 0.0, '- 50000': 0.0, '50000+.': 1.0, '50000+': 1.0}


def _group(cfg) -> int:
  g = cfg['task_group']
  if g not in TASK_GROUPS:
    raise ValueError(f'config.data.census_kdd.task_group={g!r}: must be 1 (income, '
                     'never_married) or 2 (college, never_married)')
  return int(g)


def _inputs(cfg) -> tuple[list[str], list[str]]:
  """(categorical, continuous) input columns of the config."""
  drop = set(cfg['drop_columns']) | set(NOT_INPUTS) | ({'education'} if _group(cfg) == 2 else set())
  unknown = set(cfg['drop_columns']) - set(COLUMNS)
  if unknown:
    raise ValueError(f'config.data.census_kdd.drop_columns has unknown columns {sorted(unknown)}'
                     f'; columns are {COLUMNS}')
  unknown = set(cfg['log_columns']) - set(CONTINUOUS)
  if unknown:
    raise ValueError(f'config.data.census_kdd.log_columns {sorted(unknown)} are not continuous '
                     f'columns {CONTINUOUS}')
  cats = [c for c in COLUMNS if c not in CONTINUOUS and c not in drop]
  return cats, [c for c in CONTINUOUS if c not in drop]


def fields(cfg) -> dict:
  cats, nums = _inputs(cfg)
  return {'user_id': ((), np.int32), 'sparse': ((len(cats),), np.int32),
          'dense': ((len(nums),), np.float32), 'labels': ((2,), np.float32)}


def _path(cfg) -> str:
  path = cfg['path']
  if not path:
    raise DataError('config.data.census_kdd.path is empty: point it at the directory (or zip) '
                    f'holding {FILES[0]} and {FILES[1]} (or .gz) from {HOMEPAGE}; nothing is '
                    'downloaded')
  if not os.path.exists(path):
    raise DataError(f'config.data.census_kdd.path={path!r} does not exist')
  return path


def sources(path: str) -> list[tuple[str, str | None]]:
  """(file, zip member or None) of census-income.data and census-income.test."""
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as zf:
      names = zf.namelist()
    by_base = {os.path.basename(m): m for m in names}
    found = [next((by_base[n] for n in (f, f + '.gz') if n in by_base), None) for f in FILES]
    where, listing = path, names
    out = [(path, m) for m in found]
  elif os.path.isdir(path):
    listing = sorted(os.listdir(path))
    found = [next((n for n in (f, f + '.gz') if n in listing), None) for f in FILES]
    where, out = path, [(os.path.join(path, n), None) for n in found if n]
  else:
    raise DataError(f'config.data.census_kdd.path={path!r}: expected a directory or a zip '
                    f'holding {FILES[0]} and {FILES[1]}')
  missing = [f for f, n in zip(FILES, found) if n is None]
  if missing:
    raise DataError(f'{where}: no {" or ".join(missing)} (or .gz); has {listing[:10]}')
  return out


def source_fingerprint(cfg) -> list:
  return raw.fingerprint([_path(cfg)])


def tag(cfg) -> str:
  return os.path.basename(os.path.normpath(cfg['path'])).split('.')[0] or 'census_kdd'


def columns() -> list[raw.Column]:
  """42 typed columns: continuous ones finite and >= 0, the label from _INCOME, no empty
  strings (UCI writes missing values as '?')."""
  return census.typed_columns(COLUMNS, CONTINUOUS + ('instance_weight',), 'float',
                              'income_50k', _INCOME)


def read(path: str, member: str | None, bad: raw.BadRows) -> dict[str, np.ndarray]:
  """All 42 columns of one file; strings stripped, continuous ones float64."""
  where = raw.display_name(path, member)
  with raw.open_binary(path, member) as f:
    data = f.read()
  cols = columns()
  out = census.arrow_rows(data, ',', cols)
  if out is None:   # the exact line reader names (or skips) the malformed lines
    lines = raw.iter_lines(io.BytesIO(data), where, bad)
    out = raw.concat_chunks(raw.read_delimited(lines, where, ',', cols, bad))
  if not out or not len(out['_line']):
    raise DataError(f'{where}: no data rows')
  for c in COLUMNS:
    if c not in CONTINUOUS and c != 'instance_weight':
      out[c] = np.char.strip(out[c].astype(str))
  return out


def _labels(t: dict[str, np.ndarray], group: int, college) -> np.ndarray:
  first = (np.vectorize(_INCOME.get, otypes=[np.float32])(t['income_50k']) if group == 1
           else np.isin(t['education'], list(college)))
  return np.stack([first, t['marital_stat'] == 'Never married'], 1).astype(np.float32)


def prepare(cfg) -> Prepared:
  cats, nums = _inputs(cfg)
  group, share = _group(cfg), float(cfg['valid_share'])
  if not 0 < share < 1:
    raise ValueError(f'config.data.census_kdd.valid_share={share}: must be in (0, 1)')
  bad = raw.BadRows(bool(cfg['skip_bad_rows']), 'config.data.census_kdd.skip_bad_rows')
  (train_file, test_file) = sources(_path(cfg))
  tr, te = read(*train_file, bad), read(*test_file, bad)
  t = {c: np.concatenate([tr[c], te[c]]) for c in COLUMNS}
  n_train, n_test = len(tr['_line']), len(te['_line'])
  perm = np.random.default_rng(int(cfg['split_seed'])).permutation(n_test)
  split = np.full(n_train + n_test, common.TRAIN, np.int8)
  split[n_train:] = common.TEST
  split[n_train + perm[:int(round(n_test * share))]] = common.VALID
  train = split == common.TRAIN
  vocabs = {c: common.build_vocab(t[c][train], cfg['min_count']) for c in cats}
  n = n_train + n_test
  sparse = (np.stack([common.lookup(vocabs[c], t[c]) for c in cats], 1) if cats
            else np.zeros((n, 0), np.int32)).astype(np.int32)
  dense = np.stack([t[c] for c in nums], 1) if nums else np.zeros((n, 0))
  for j, c in enumerate(nums):
    if c in cfg['log_columns']:
      dense[:, j] = np.log1p(dense[:, j])
  mean, std = dense[train].mean(0), dense[train].std(0)
  std = np.where(std > 0, std, 1.0)
  arrays = {'user_id': np.zeros(n, np.int32), 'sparse': sparse,
            'dense': ((dense - mean) / std).astype(np.float32),
            'labels': _labels(t, group, cfg['college_levels'])}

  def gen(split_id):
    rows = np.flatnonzero(split == split_id)
    return lambda: iter([{k: v[rows] for k, v in arrays.items()}])

  spec = DataSpec(num_users=1, num_items=0, num_cates=0, max_len=0,
                  sparse=tuple(FeatureSpec(c, len(vocabs[c]) + 1) for c in cats),
                  dense_dim=len(nums), tasks=TASK_GROUPS[group])
  info = {'source': [raw.display_name(*s) for s in (train_file, test_file)],
          'rows': {'data': n_train, 'test': n_test}, 'task_group': group,
          'sparse_fields': cats, 'dense_fields': nums, 'log_columns': list(cfg['log_columns']),
          'vocab_sizes': {c: len(vocabs[c]) + 1 for c in cats},
          'train_mean': dict(zip(nums, mean.tolist())), 'train_std': dict(zip(nums, std.tolist())),
          'missing_values': {c: int((t[c] == '?').sum()) for c in cats}}
  info.update(bad.report())
  return Prepared(spec, {s: gen(i) for s, i in common.SPLIT_IDS.items()}, info)
