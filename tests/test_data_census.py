"""Census (UCI Adult): packaged file, multi-task labels, train-only statistics, bad input."""
from __future__ import annotations

import gzip
import io
import os

import numpy as np
import pytest

from seqrec_jax.configs import default
from seqrec_jax.data import DataError, census, load_dataset, raw

FIX = os.path.join(os.path.dirname(__file__), 'fixtures', 'census', 'adult_head40.csv')


def collect(p):
  return {name: p.rows(name) for name in p.splits}


@pytest.fixture(scope='module')
def packaged():
  p = census.prepare(dict(census.DEFAULTS))
  return p, collect(p)


def test_packaged_file_tasks_and_counts(packaged):
  p, rows = packaged
  n = sum(len(r['labels']) for r in rows.values())
  assert n == p.info['rows'] == 48842
  labels = np.concatenate([r['labels'] for r in rows.values()])
  # data/README.md: income >50K 11,687; Never-married 16,117.
  assert labels.sum(0).tolist() == [11687, 16117]
  assert [t.name for t in p.spec.tasks] == ['income', 'never_married']
  names = [f.name for f in p.spec.sparse] + list(p.info['dense_fields'])
  for gone in ('income', 'marital-status', 'education'):
    assert gone not in names
  assert p.spec.num_items == p.spec.max_len == 0 and p.spec.num_users == 1
  assert all((r['user_id'] == 0).all() for r in rows.values())
  assert {k: len(v['labels']) for k, v in rows.items()} == {
      'train': 34190, 'valid': 4884, 'test': 9768}


def test_dense_uses_train_statistics_and_missing_has_own_id(packaged):
  p, rows = packaged
  d = rows['train']['dense']
  np.testing.assert_allclose(d.mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(d.std(0), 1, atol=1e-3)
  assert np.abs(rows['test']['dense'].mean(0)).max() > 1e-4   # test is not re-standardised
  j = [f.name for f in p.spec.sparse].index('workclass')
  # '?' is a real value with an id > 0 (a few thousand rows), not OOV 0.
  ids = np.concatenate([r['sparse'][:, j] for r in rows.values()])
  assert p.info['missing_values']['workclass'] > 1000
  assert (ids == 0).sum() < 5 and len(np.unique(ids)) == p.spec.sparse[j].vocab_size - 1
  # capital-gain is log1p'd before standardising (raw train mean ~1,000 dollars).
  plain = census.prepare(dict(census.DEFAULTS, log_columns=()))
  plain_mean = plain.info['train_mean']['capital-gain']
  assert 0 < p.info['train_mean']['capital-gain'] < 2 < 500 < plain_mean


def test_config_controls_inputs_and_split_is_deterministic():
  c = dict(census.DEFAULTS, path=FIX, drop_columns=('education', 'educational-num'),
           log_columns=(), valid_frac=0.2, test_frac=0.2, split_seed=3)
  a, b = collect(census.prepare(c)), collect(census.prepare(c))
  for s in a:
    for k in a[s]:
      np.testing.assert_array_equal(a[s][k], b[s][k])
  assert census.fields(c)['dense'][0] == (5,)
  other = collect(census.prepare(dict(c, split_seed=4)))
  assert not np.array_equal(other['test']['dense'], a['test']['dense'])
  with pytest.raises(ValueError, match='unknown columns'):
    census.prepare(dict(c, drop_columns=('educaton',)))


def _broken(tmp_path, edit, gz=False):
  lines = open(FIX).read().splitlines(keepends=True)
  text = ''.join(edit(lines))
  path = tmp_path / ('adult.csv.gz' if gz else 'adult.csv')
  if gz:
    with gzip.open(path, 'wt') as f:
      f.write(text)
  else:
    path.write_text(text)
  return str(path)


GOOD = ('25,Private,226802,11th,7,Never-married,Machine-op-inspct,Own-child,Black,Male,0,0,40,'
        'United-States,<=50K\n')


@pytest.mark.parametrize('row,reason', [
    (GOOD.replace('226802', '?'), "'fnlwgt' is '?', not an integer"),
    (GOOD.replace('<=50K', '50K+'), 'income must be one of'),
    (GOOD.replace(',40,', ',-4,'), "'hours-per-week' is '-4': must be >= 0"),
    (GOOD.replace(',Male,', ',,'), 'empty value'),
    (GOOD.replace(',Male,', ','), 'expected 15 fields'),
])
def test_malformed_rows(tmp_path, row, reason):
  path = _broken(tmp_path, lambda l: l[:7] + [row] + l[7:], gz=True)
  with pytest.raises(DataError) as e:
    census.prepare(dict(census.DEFAULTS, path=path))
  assert f'{path}, line 8: ' in str(e.value) and reason in str(e.value)
  p = census.prepare(dict(census.DEFAULTS, path=path, skip_bad_rows=True))
  assert p.info['bad_rows_skipped'] == 1 and p.info['rows'] == 40


def test_wrong_header(tmp_path):
  path = _broken(tmp_path, lambda l: [l[0].replace('gender', 'sex')] + l[1:])
  with pytest.raises(DataError, match='line 1: header'):
    census.prepare(dict(census.DEFAULTS, path=path))


def test_load_dataset_multitask_batches(tmp_path):
  c = default.get_config()
  c.data.name = 'census'
  c.data.data_dir = str(tmp_path)
  c.data.census.path = FIX
  c.data.census.valid_frac = c.data.census.test_frac = 0.25
  ds = load_dataset(c.data)
  b = ds.splits['valid'].__getitems__(np.arange(3))
  assert sorted(b) == ['dense', 'labels', 'sparse', 'user_id']
  assert b['labels'].shape == (3, 2) and b['sparse'].shape == (3, len(ds.spec.sparse))
  assert ds.info['train/rows'] == 20 and 'income' in ds.info['train/pos_rate']


@pytest.mark.parametrize('edit', [lambda l: l, lambda l: l[:5] + ['\n', '\r\n'] + l[5:] + ['\n'],
                                  lambda l: [x.replace('\n', '\r\n') for x in l]])
@pytest.mark.parametrize('source', ['fixture', 'packaged'])
def test_arrow_rows_equal_the_line_reader(tmp_path, edit, source):
  """census.arrow_rows (pyarrow) gives the rows of raw.read_delimited, blank lines and CRLF
  included (line numbers too)."""
  lines = (open(FIX).read() if source == 'fixture' else
           gzip.open(census.packaged_file(), 'rt').read()).splitlines(keepends=True)
  path = tmp_path / 'adult.csv'
  path.write_text(''.join(edit(lines)), newline='')
  bad = raw.BadRows(False)
  with raw.open_binary(str(path)) as f:
    first = raw.check_header(f, str(path), census.COLUMNS, ',')
    data = f.read()
  fast = census.arrow_rows(data, ',', census.columns(), first)
  exact = raw.concat_chunks(raw.read_delimited(
      raw.iter_lines(io.BytesIO(data), str(path), bad, first_line=first), str(path), ',',
      census.columns(), bad))
  assert fast is not None and sorted(fast) == sorted(exact)
  for k in exact:
    assert fast[k].dtype == exact[k].dtype, k
    np.testing.assert_array_equal(fast[k], exact[k], err_msg=k)
  assert census.arrow_rows(data.replace(b',Male,', b',,', 1), ',', census.columns(), first) is None
