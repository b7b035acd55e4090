"""Census-income (KDD): UCI file layout, the MMoE paper's task groups, split, bad input."""
from __future__ import annotations

import gzip
import os
import zipfile

import numpy as np
import pytest

from seqrec_jax.configs import default
from seqrec_jax.data import DataError, census_kdd, load_dataset

FIX = os.path.join(os.path.dirname(__file__), 'fixtures', 'census_kdd')

# A few values per column as census-income.names spells them (the fixture is synthetic).
VALUES = {
    'class_worker': ['Not in universe', 'Private', 'Self-employed-not incorporated'],
    'det_ind_code': ['0', '33', '4'], 'det_occ_code': ['0', '12', '2'],
    'education': ['High school graduate', 'Children', 'Bachelors degree(BA AB BS)',
                  'Some college but no degree', '10th grade',
                  'Masters degree(MA MS MEng MEd MSW MBA)'],
    'hs_college': ['Not in universe', 'High school'],
    'marital_stat': ['Never married', 'Married-civilian spouse present', 'Divorced', 'Widowed'],
    'major_ind_code': ['Not in universe or children', 'Retail trade', 'Construction'],
    'major_occ_code': ['Not in universe', 'Sales', 'Handlers equip cleaners etc '],
    'race': ['White', 'Black'], 'hisp_origin': ['All other', 'Mexican-American', 'NA'],
    'sex': ['Female', 'Male'], 'union_member': ['Not in universe', 'No'],
    'unemp_reason': ['Not in universe'], 'full_or_part_emp': ['Children or Armed Forces',
                                                            'Full-time schedules'],
    'tax_filer_stat': ['Nonfiler', 'Single', 'Joint both under 65'],
    'region_prev_res': ['Not in universe', 'South'],
    'state_prev_res': ['Not in universe', 'Utah', '?'],
    'det_hh_fam_stat': ['Householder', 'Child <18 never marr not in subfamily'],
    'det_hh_summ': ['Householder', 'Child under 18 never married'],
    'mig_chg_msa': ['?', 'Nonmover'], 'mig_chg_reg': ['?', 'Nonmover'],
    'mig_move_reg': ['?', 'Nonmover'], 'mig_same': ['Not in universe under 1 year old', 'Yes'],
    'mig_prev_sunbelt': ['?', 'Not in universe'], 'fam_under_18': ['Not in universe',
                                                                  'Both parents present'],
    'country_father': ['United-States', 'Mexico', '?'], 'country_mother': ['United-States', '?'],
    'country_self': ['United-States', 'Mexico'],
    'citizenship': ['Native- Born in the United States', 'Foreign born- Not a citizen of U S '],
    'own_or_self': ['0', '2'], 'vet_question': ['Not in universe'], 'vet_benefits': ['2', '0'],
    'year': ['94', '95'], 'income_50k': ['- 50000.', '- 50000.', '50000+.'],
}


def kdd_lines(n: int, seed: int) -> list[str]:
  """Rows in the UCI layout: 42 values joined by ', ' (numbers as UCI writes them)."""
  rng = np.random.default_rng(seed)
  nums = {'age': lambda: rng.integers(0, 90), 'wage_per_hour': lambda: rng.choice([0, 0, 1200]),
          'capital_gains': lambda: rng.choice([0, 0, 0, 7688]),
          'capital_losses': lambda: rng.choice([0, 0, 1902]),
          'stock_dividends': lambda: rng.choice([0, 100, 2500]),
          'instance_weight': lambda: round(float(rng.uniform(100, 5000)), 2),
          'num_emp': lambda: rng.integers(0, 7), 'weeks_worked': lambda: rng.integers(0, 53)}
  lines = []
  for _ in range(n):
    row = [str(nums[c]()) if c in nums else VALUES[c][rng.integers(len(VALUES[c]))]
           for c in census_kdd.COLUMNS]
    lines.append(', '.join(row) + '\n')
  return lines


def test_fixture_is_the_generator_output():
  for name, n, seed in (('census-income.data', 40, 0), ('census-income.test', 30, 1)):
    assert open(os.path.join(FIX, name)).readlines() == kdd_lines(n, seed), name


def cfg(**kw):
  return {**census_kdd.DEFAULTS, 'path': FIX, **kw}


def collect(p):
  return {name: p.rows(name) for name in p.splits}


def _column(name, fname='census-income.data'):
  j = census_kdd.COLUMNS.index(name)
  return [l.rstrip('\n').split(', ')[j].strip() for l in open(os.path.join(FIX, fname))]


def test_task_group_1_rows_labels_and_inputs():
  p = census_kdd.prepare(cfg())
  rows = collect(p)
  assert {k: len(v['labels']) for k, v in rows.items()} == {'train': 40, 'valid': 15, 'test': 15}
  assert [t.name for t in p.spec.tasks] == ['income', 'never_married']
  # Train keeps file order: income '50000+.' -> 1, marital 'Never married' -> 1.
  income = [float(v == '50000+.') for v in _column('income_50k')]
  never = [float(v == 'Never married') for v in _column('marital_stat')]
  np.testing.assert_array_equal(rows['train']['labels'], np.stack([income, never], 1))
  assert 0 < sum(income) < 40 and 0 < sum(never) < 40
  names = [f.name for f in p.spec.sparse] + p.info['dense_fields']
  for gone in ('income_50k', 'marital_stat', 'instance_weight'):
    assert gone not in names
  assert 'education' in names and len(names) == 40 - 1 and p.spec.dense_dim == 7
  assert len(p.spec.sparse) == 32
  # '?' is a value with its own id; dense standardised with train statistics.
  assert p.info['missing_values']['mig_chg_msa'] > 0
  j = [f.name for f in p.spec.sparse].index('mig_chg_msa')
  assert (rows['train']['sparse'][:, j] > 0).all()
  np.testing.assert_allclose(rows['train']['dense'].mean(0), 0, atol=1e-5)
  ages = np.array(_column('age'), float)
  np.testing.assert_allclose(rows['train']['dense'][:, 0], (ages - ages.mean()) / ages.std(),
                             rtol=1e-5)
  assert p.spec.num_users == 1 and p.spec.max_len == 0


def test_task_group_2_drops_education_and_predicts_college():
  p = census_kdd.prepare(cfg(task_group=2))
  rows = collect(p)
  assert [t.name for t in p.spec.tasks] == ['college', 'never_married']
  assert 'education' not in [f.name for f in p.spec.sparse] and len(p.spec.sparse) == 31
  college = [float(v in census_kdd.COLLEGE) for v in _column('education')]
  assert 0 < sum(college) < 40
  np.testing.assert_array_equal(rows['train']['labels'][:, 0], college)
  with pytest.raises(ValueError, match='task_group=3'):
    census_kdd.prepare(cfg(task_group=3))


def test_test_file_split_in_halves_by_seed(tmp_path):
  a, b = collect(census_kdd.prepare(cfg())), collect(census_kdd.prepare(cfg(split_seed=1)))
  np.testing.assert_array_equal(a['train']['dense'], b['train']['dense'])
  assert not np.array_equal(a['valid']['dense'], b['valid']['dense'])
  test_rows = np.concatenate([a['valid']['dense'], a['test']['dense']])
  assert len(np.unique(test_rows, axis=0)) == len(np.unique(
      np.concatenate([b['valid']['dense'], b['test']['dense']]), axis=0))
  # gzip files in a zip (the UCI download) read the same.
  z = tmp_path / 'census.zip'
  with zipfile.ZipFile(z, 'w') as zf:
    for name in census_kdd.FILES:
      zf.writestr(f'census/{name}.gz', gzip.compress(open(os.path.join(FIX, name), 'rb').read()))
  c = collect(census_kdd.prepare(cfg(path=str(z))))
  for s in a:
    for k in a[s]:
      np.testing.assert_array_equal(a[s][k], c[s][k])
  (tmp_path / 'd').mkdir()
  (tmp_path / 'd' / 'census-income.data').write_text('x')
  with pytest.raises(DataError, match='no census-income.test'):
    census_kdd.prepare(cfg(path=str(tmp_path / 'd')))


def _broken(tmp_path, row):
  d = tmp_path / 'kdd'
  d.mkdir()
  lines = open(os.path.join(FIX, 'census-income.test')).readlines()
  (d / 'census-income.test').write_text(''.join(lines[:4] + [row] + lines[4:]))
  (d / 'census-income.data').write_text(open(os.path.join(FIX, 'census-income.data')).read())
  return str(d)


GOOD = kdd_lines(1, 5)[0].rstrip('\n').split(', ')


@pytest.mark.parametrize('row,reason', [
    (GOOD[:-1] + ['40000.'], 'income must be one of'),
    (['?'] + GOOD[1:], "'age' is '?', not a number"),
    (['-3'] + GOOD[1:], "'age' is '-3': must be >= 0"),
    (GOOD[:-1], 'expected 42 fields'),
    (GOOD + ['x'], 'got 43'),
    (GOOD[:1] + ['  '] + GOOD[2:], 'empty value'),
])
def test_malformed_rows(tmp_path, row, reason):
  d = _broken(tmp_path, ', '.join(row) + '\n')
  where = os.path.join(d, 'census-income.test')
  with pytest.raises(DataError) as e:
    census_kdd.prepare(cfg(path=d))
  assert f'{where}, line 5: ' in str(e.value) and reason in str(e.value), str(e.value)
  p = census_kdd.prepare(cfg(path=d, skip_bad_rows=True))
  assert p.info['bad_rows_skipped'] == 1 and p.info['rows'] == {'data': 40, 'test': 30}


def test_arrow_rows_equal_the_line_reader():
  """The pyarrow split gives the exact reader's rows on the fixture files."""
  from seqrec_jax.data import census, raw  # pylint: disable=g-import-not-at-top
  for name in census_kdd.FILES:
    path = os.path.join(FIX, name)
    data = open(path, 'rb').read()
    fast = census.arrow_rows(data, ',', census_kdd.columns())
    bad = raw.BadRows(False)
    exact = raw.concat_chunks(raw.read_delimited(
        raw.iter_lines(open(path, 'rb'), path, bad), path, ',', census_kdd.columns(), bad))
    assert fast is not None and sorted(fast) == sorted(exact)
    for k in exact:
      np.testing.assert_array_equal(fast[k], exact[k], err_msg=k)


def test_load_dataset_and_multitask_config(tmp_path):
  from seqrec_jax.configs import multitask  # pylint: disable=g-import-not-at-top
  c = multitask.get_config('census_kdd,mmoe')
  assert c.data.name == 'census_kdd' and c.model.name == 'mmoe'
  c.data.data_dir = str(tmp_path)
  c.data.census_kdd.path = FIX
  ds = load_dataset(c.data)
  b = ds.splits['valid'].__getitems__(np.arange(3))
  assert sorted(b) == ['dense', 'labels', 'sparse', 'user_id']
  assert b['labels'].shape == (3, 2) and b['sparse'].shape == (3, 32)
  assert ds.info['train/rows'] == 40
  assert default.get_config().data.census_kdd.task_group == 1
