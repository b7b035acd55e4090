"""Reliability of raw-data handling (issue 14.1, 14.9): the prepared-data cache key follows
every input file's content; ids outside the integer range are row errors."""
import os
import shutil

import pytest

from seqrec_jax.data import DataError, movielens, tfds_source
from seqrec_jax.data.builders import SeqrecMovielens

FIX = os.path.join(os.path.dirname(__file__), 'fixtures', 'movielens', 'ml-latest-small')


def _cache_name(path, data_dir):
  cfg = dict(movielens.DEFAULTS, path=str(path), max_len=3, min_history=0)
  return tfds_source.make_builder(SeqrecMovielens, cfg, str(data_dir)).builder_config.name


def test_cache_key_changes_when_a_file_inside_the_directory_changes(tmp_path):
  """Issue 14.1: rewriting ratings.csv in place (same size, same mtime) or replacing it by
  another file (rename) must not reuse the old build."""
  src = tmp_path / 'ml'
  shutil.copytree(FIX, src)
  ratings = src / 'ratings.csv'
  key0 = _cache_name(src, tmp_path / 'cache')
  assert _cache_name(src, tmp_path / 'cache') == key0          # unchanged input: same build
  st = os.stat(ratings)
  text = ratings.read_text()
  changed = text.replace('1,999,2.0,', '1,999,3.0,', 1)
  assert changed != text and len(changed) == len(text)
  with open(ratings, 'w') as f:        # in place: same inode, size; mtime put back
    f.write(changed)
  os.utime(ratings, ns=(st.st_atime_ns, st.st_mtime_ns))
  os.utime(src, ns=(os.stat(src).st_atime_ns, os.stat(src).st_mtime_ns))
  key1 = _cache_name(src, tmp_path / 'cache')
  assert key1 != key0
  # Replaced by another file through a rename (the usual way tools write).
  (src / 'new.csv').write_text(text)
  os.replace(src / 'new.csv', ratings)
  assert _cache_name(src, tmp_path / 'cache') not in (key1,)


@pytest.mark.parametrize('value', ['12345678901234567890', '-99999999999999999999',
                                   '9223372036854775808'])
@pytest.mark.parametrize('column', [0, 1, 3])     # userId, movieId, timestamp
def test_ids_outside_the_integer_range_are_row_errors(tmp_path, value, column):
  """Issue 14.9: a 20-digit id is a malformed row naming file, line and reason (strict), or is
  counted and skipped (skip_bad_rows=True) - never a numpy TypeError."""
  src = tmp_path / 'ml'
  shutil.copytree(FIX, src)
  lines = (src / 'ratings.csv').read_text().split('\n')
  fields = lines[2].split(',')
  name = ['userId', 'movieId', 'rating', 'timestamp'][column]
  fields[column] = value
  lines[2] = ','.join(fields)
  (src / 'ratings.csv').write_text('\n'.join(lines))
  cfg = dict(movielens.DEFAULTS, path=str(src), max_len=3, min_history=0)
  want = (f"ratings.csv, line 3: '{name}' is '{value}', outside the 64-bit integer range")
  with pytest.raises(DataError, match=want):
    movielens.prepare(cfg)
  p = movielens.prepare(dict(cfg, skip_bad_rows=True))
  assert p.info['bad_rows_skipped'] == 1 and want in p.info['bad_row_examples'][0]


# ---------------------------------------------------------------- issue 28.9: raw exceptions
def _zip_with_corrupt_ratings(tmp_path):
  import zipfile  # pylint: disable=g-import-not-at-top
  z = tmp_path / 'ml.zip'
  with zipfile.ZipFile(z, 'w', zipfile.ZIP_DEFLATED) as zf:
    for name in ('ratings.csv', 'movies.csv'):
      zf.write(os.path.join(FIX, name), f'ml/{name}')
  data = bytearray(z.read_bytes())
  start = data.find(b'ml/ratings.csv') + len('ml/ratings.csv')
  for i in range(start + 10, start + 40):     # inside the deflated ratings member
    data[i] ^= 0x5A
  z.write_bytes(bytes(data))
  return z


def test_corrupt_zip_member_is_an_error_naming_file_and_member(tmp_path):
  z = _zip_with_corrupt_ratings(tmp_path)
  for skip in (False, True):
    with pytest.raises(DataError, match='corrupt') as e:
      movielens.prepare(dict(movielens.DEFAULTS, path=str(z), max_len=3, skip_bad_rows=skip))
    assert f'{z}!ml/ratings.csv' in str(e.value)


def test_links_the_loader_does_not_read_do_not_block_the_build(tmp_path):
  src = tmp_path / 'ml'
  shutil.copytree(FIX, src)
  key = _cache_name(src, tmp_path / 'cache')
  os.symlink(tmp_path / 'nowhere', src / 'dangling')
  os.symlink(src / 'loop', src / 'loop')
  (src / 'README.txt').write_text('not read')
  assert _cache_name(src, tmp_path / 'cache') == key     # only the files it reads count
  os.remove(src / 'ratings.csv')
  os.symlink(tmp_path / 'gone.csv', src / 'ratings.csv')
  with pytest.raises(DataError, match='ratings.csv.*link'):
    _cache_name(src, tmp_path / 'cache')
