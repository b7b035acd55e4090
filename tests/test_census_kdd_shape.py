"""benchmarks/census_kdd_shape: the shaped UCI files are what the census KDD builder reads."""
from __future__ import annotations

import os

import numpy as np

from benchmarks import census_kdd_shape
from seqrec_jax.configs import multitask
from seqrec_jax.data import census_kdd, load_dataset

FIX = os.path.join(os.path.dirname(__file__), 'fixtures', 'census_kdd')


def test_layout_values_and_builder(tmp_path):
  out = str(tmp_path / 'kdd')
  rec = census_kdd_shape.generate(out, scale=0.005, seed=0)
  assert rec['files']['census-income.data']['rows'] == 998
  assert rec['files']['census-income.test']['rows'] == 499
  assert sorted(os.listdir(out)) == sorted(census_kdd.FILES)
  data = open(os.path.join(out, 'census-income.data')).read().splitlines()
  assert len(data) == 998
  for row in data[:50]:
    assert len(row.split(', ')) == len(census_kdd.COLUMNS) == 42
  cols = dict(zip(census_kdd.COLUMNS, zip(*(r.split(', ') for r in data))))
  for c in census_kdd.CONTINUOUS + ('instance_weight',):
    assert all(float(v) >= 0 for v in cols[c]), c
  assert all(v for c in census_kdd.COLUMNS for v in cols[c])
  # Realistic value sets: every value the fixture (census-income.names spellings) uses in a
  # categorical column is one the generator writes.
  many = {c: set(map(str, v)) for c, v in census_kdd_shape.rows(20_000, 0).items()}
  for name in census_kdd.FILES:
    for line in open(os.path.join(FIX, name)):
      for c, v in zip(census_kdd.COLUMNS, line.rstrip('\n').split(', ')):
        if c not in census_kdd.CONTINUOUS and c != 'instance_weight':
          assert v in many[c], (c, v)
  # Seeded: the same bytes again.
  again = census_kdd_shape.generate(str(tmp_path / 'again'), scale=0.005, seed=0)
  assert again['bytes'] == rec['bytes']
  assert open(os.path.join(str(tmp_path / 'again'), 'census-income.data')).read() == \
      '\n'.join(data) + '\n'

  # The builder reads it through pyarrow (not the line reader's fallback), both task groups.
  from seqrec_jax.data import census  # pylint: disable=g-import-not-at-top
  raw = open(os.path.join(out, 'census-income.test'), 'rb').read()
  assert census.arrow_rows(raw, ',', census_kdd.columns()) is not None
  p = census_kdd.prepare({**census_kdd.DEFAULTS, 'path': out})
  assert p.info['rows'] == {'data': 998, 'test': 499}
  assert p.info.get('bad_rows_skipped', 0) == 0
  assert p.spec.dense_dim == 7 and len(p.spec.sparse) == 32
  assert p.info['missing_values']['mig_chg_msa'] > 0
  train = next(p.splits['train']())
  income, never = train['labels'][:, 0], train['labels'][:, 1]
  assert 0 < income.mean() < 0.2 and 0.3 < never.mean() < 0.6
  p2 = census_kdd.prepare({**census_kdd.DEFAULTS, 'path': out, 'task_group': 2})
  college = next(p2.splits['train']())['labels'][:, 0]
  assert 0.05 < college.mean() < 0.5


def test_load_dataset_with_the_mmoe_config(tmp_path):
  out = str(tmp_path / 'kdd')
  census_kdd_shape.generate(out, scale=0.002, seed=1)
  c = multitask.get_config('census_kdd,mmoe')
  c.data.data_dir = str(tmp_path / 'prepared')
  c.data.census_kdd.path = out
  ds = load_dataset(c.data)
  assert {k: len(v) for k, v in ds.splits.items()} == {'train': 399, 'valid': 100, 'test': 100}
  b = ds.splits['train'].__getitems__(np.arange(4))
  assert b['sparse'].shape == (4, 32) and b['dense'].shape == (4, 7)
