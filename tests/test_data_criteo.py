"""Criteo: tab-separated text (plain / gzip / directory), transforms, vocabularies, bad input."""
from __future__ import annotations

import gc
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
  return {name: p.rows(name) for name in p.splits}


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
    ('0\t0x1f' + '\t' * 38 + '\n', "'I1' is '0x1f', not an integer"),   # pyarrow reads 31
    ('0\t' * 40 + '\n', 'got 41'),
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


def _assert_same(fast, exact):
  a, b = collect(fast), collect(exact)
  assert fast.spec == exact.spec and fast.info == exact.info   # info once all splits are read
  for s in b:
    for k in b[s]:
      assert a[s][k].dtype == b[s][k].dtype, (s, k)
      np.testing.assert_array_equal(a[s][k], b[s][k], err_msg=f'{s}/{k}')


@pytest.mark.parametrize('kw', [{}, {'max_rows': 140}, {'min_count': 1, 'split_seed': 2}])
def test_fast_path_equals_exact_path_on_the_fixture(kw):
  _assert_same(criteo.prepare_fast(cfg(**kw)), criteo.prepare_exact(cfg(**kw)))


def test_fast_path_equals_exact_path_on_odd_tokens(tmp_path):
  """Missing values, negative and zero-padded ints, rare tokens, and tokens that are not
  8 lowercase hex characters (sorting among the hex ones), plain and gzip, blank lines."""
  rng = np.random.default_rng(7)
  odd = ['', 'ABCDEF01', '0000abc', 'zzzzzzzz', '~', '0000abcd0', 'é1234567', '12345678 ',
         '+', 'deadbeef', '00000000', 'ffffffff']
  lines = []
  for i in range(3000):
    ints = [str(x) for x in rng.integers(-5, 100, 13)]
    ints[3] = '007'
    cats = [f'{int(x):08x}' for x in rng.zipf(1.3, 26) % 300 * 2654435761 % 2**32]
    for j in np.flatnonzero(rng.random(26) < 0.2):
      cats[j] = odd[rng.integers(len(odd))]
    fields = ints + cats
    for j in np.flatnonzero(rng.random(39) < 0.1):
      fields[j] = ''
    lines.append('\t'.join([str(i % 2)] + fields) + ('\r\n' if i % 7 == 0 else '\n'))
    if i % 500 == 0:
      lines.append('\n')
  path = tmp_path / 'train.txt'
  path.write_text(''.join(lines), encoding='utf-8')
  with gzip.open(tmp_path / 'train.txt.gz', 'wt', encoding='utf-8') as f:
    f.writelines(lines)
  for p in (path, tmp_path / 'train.txt.gz'):
    for kw in ({'min_count': 2}, {'min_count': 1, 'max_rows': 1000}):
      c = cfg(path=str(p), **kw)
      _assert_same(criteo.prepare_fast(c), criteo.prepare_exact(c))


def test_fast_path_cleans_its_temporary_files(monkeypatch, tmp_path):
  monkeypatch.setattr(criteo.tempfile, 'tempdir', str(tmp_path))
  p = criteo.prepare_fast(cfg())
  (d,) = os.listdir(tmp_path)
  assert sorted(os.listdir(tmp_path / d))[:3] == ['C1', 'C10', 'C11']
  collect(p)
  del p
  gc.collect()
  assert not os.listdir(tmp_path)


def test_malformed_line_after_max_rows_is_not_read(tmp_path):
  lines = criteo_lines(60, seed=5)
  path = tmp_path / 'train.txt'
  path.write_text(''.join(lines[:50] + ['0\tbad' + '\t' * 38 + '\n'] + lines[50:]))
  p = criteo.prepare(cfg(path=str(path), max_rows=50))
  assert p.info['lines'] == 50 and p.info['bad_rows_skipped'] == 0
  _assert_same(p, criteo.prepare_exact(cfg(path=str(path), max_rows=50)))
