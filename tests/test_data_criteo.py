"""Criteo: tab-separated text (plain / gzip / directory), transforms, vocabularies, bad input."""
from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from seqrec_jax.configs import default
from seqrec_jax.data import DataError, criteo, load_dataset

FIX = os.path.join(os.path.dirname(__file__), 'fixtures', 'criteo', 'train.txt')


def criteo_lines(n: int, seed: int = 0) -> list[str]:
  """Clicks depend on I1 and C1 so a model can learn something; ~10% of fields are missing."""
  rng = np.random.default_rng(seed)
  lines = []
  for _ in range(n):
    ints = rng.poisson(3.0, 13) * rng.integers(1, 20, 13)
    ints[1] = rng.integers(-3, 50)             # I2 has negatives in the real data
    c = [f'{int(x):08x}' for x in rng.zipf(1.6, 26) % 4000 * 2654435761 % 2**32]
    score = 0.3 * np.log1p(ints[0]) + (1.0 if c[0] == f'{2654435761:08x}' else -0.5)
    label = int(rng.random() < 1 / (1 + np.exp(-(score - 1.0))))
    fields = [str(v) for v in ints] + c
    for j in np.flatnonzero(rng.random(39) < 0.1):
      fields[j] = ''
    lines.append('\t'.join([str(label)] + fields) + '\n')
  return lines



def test_fixture_is_the_generator_output():
  """fixtures/criteo/train.txt was written by criteo_lines(300, seed=0)."""
  assert open(FIX).readlines() == criteo_lines(300, seed=0)


def cfg(**kw):
  c = dict(criteo.DEFAULTS, path=FIX, min_count=3)
  c.update(kw)
  return c


def collect(p):
  out = {}
  for name, gen in p.splits.items():
    chunks = list(gen())
    out[name] = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  return out


def _raw_rows():
  return [l.rstrip('\n').split('\t') for l in open(FIX)]


def test_transforms_vocab_and_sequential_split():
  p = criteo.prepare(cfg())
  rows = collect(p)
  lines = _raw_rows()
  n_train = int(300 * (1 - 2 / 14))
  assert len(rows['train']['label']) == n_train == p.info['train_lines']
  assert len(rows['valid']['label']) + len(rows['test']['label']) == 300 - n_train
  assert len(rows['valid']['label']) > 5 and len(rows['test']['label']) > 5
  train = lines[:n_train]
  # Train keeps file order: labels and dense log(max(x, 0) + 1), missing -> 0.
  np.testing.assert_array_equal(rows['train']['label'], [float(r[0]) for r in train])
  ints = np.array([[int(x) if x else 0 for x in r[1:14]] for r in train])
  np.testing.assert_allclose(rows['train']['dense'], np.log1p(np.maximum(ints, 0)), rtol=1e-6)
  assert p.info['negative_ints_clamped'] == sum(int(x) < 0 for r in lines for x in r[1:14] if x)
  # Vocabularies: train values seen >= min_count get ids 1.. in sorted order, others 0.
  for j in range(26):
    vals = [r[14 + j] for r in train]
    kept = sorted(v for v in set(vals) if vals.count(v) >= 3)
    assert p.spec.sparse[j].vocab_size == len(kept) + 1
    expect = [kept.index(v) + 1 if v in kept else 0 for v in vals]
    np.testing.assert_array_equal(rows['train']['sparse'][:, j], expect)
  assert p.spec.num_users == 1 and p.spec.dense_dim == 13 and len(p.spec.sparse) == 26


def test_gzip_directory_max_rows_and_deterministic_tail(tmp_path):
  d = tmp_path / 'dac'
  d.mkdir()
  with gzip.open(d / 'train.txt.gz', 'wt') as f:
    f.writelines(open(FIX).readlines())
  a, b = collect(criteo.prepare(cfg())), collect(criteo.prepare(cfg(path=str(d))))
  for s in a:
    for k in a[s]:
      np.testing.assert_array_equal(a[s][k], b[s][k])
  c = collect(criteo.prepare(cfg(split_seed=1)))
  assert not np.array_equal(c['valid']['dense'], a['valid']['dense'])
  np.testing.assert_array_equal(c['train']['dense'], a['train']['dense'])
  small = criteo.prepare(cfg(max_rows=140))
  assert small.info['lines'] == 140 and small.info['train_lines'] == 120


@pytest.mark.parametrize('row,reason', [
    ('1\t2\t3\n', 'expected 40 fields'),
    ('2' + '\t' * 39 + '\n', 'label must be 0 or 1'),
    ('\t' * 39 + '\n', "empty 'label'"),
    ('0\tx1' + '\t' * 38 + '\n', "'I1' is 'x1', not an integer"),
    ('0\t1.5' + '\t' * 38 + '\n', "'I1' is '1.5', not an integer"),
])
def test_malformed_lines(tmp_path, row, reason):
  lines = criteo_lines(60, seed=3)
  path = tmp_path / 'train.txt'
  path.write_text(''.join(lines[:10] + [row] + lines[10:]))
  with pytest.raises(DataError) as e:
    criteo.prepare(cfg(path=str(path)))
  assert f'{path}, line 11: ' in str(e.value) and reason in str(e.value), str(e.value)
  p = criteo.prepare(cfg(path=str(path), skip_bad_rows=True))
  rows = collect(p)
  assert p.info['bad_rows_skipped'] == 1      # counted once, not once per pass
  assert sum(len(r['label']) for r in rows.values()) == 60


def test_bad_line_in_the_tail_fails_the_build_and_leaves_no_dataset(tmp_path):
  lines = criteo_lines(60, seed=4)
  path = tmp_path / 'train.txt'
  path.write_text(''.join(lines[:58] + ['0\tbad' + '\t' * 38 + '\n'] + lines[58:]))
  c = default.get_config()
  c.data.name = 'criteo'
  c.data.data_dir = str(tmp_path / 'data')
  c.data.criteo.update(path=str(path), min_count=1)
  with pytest.raises(DataError, match=r'line 59: .I1. is .bad.'):
    load_dataset(c.data)
  c.data.criteo.skip_bad_rows = True
  ds = load_dataset(c.data)
  assert ds.info['protocol/bad_rows_skipped'] == 1
  assert sum(len(s) for s in ds.splits.values()) == 60
  b = ds.splits['train'].__getitems__(np.arange(5))
  assert b['sparse'].shape == (5, 26) and b['dense'].dtype == np.float32
