"""`python -m seqrec_jax.data` and the raw readers' shared behaviour."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from seqrec_jax.data import DataError, raw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CENSUS = os.path.join(ROOT, 'tests', 'fixtures', 'census', 'adult_head40.csv')


def test_describe_and_prepare_cli(tmp_path):
  base = [sys.executable, '-m', 'seqrec_jax.data']
  flags = ['--dataset=census', f'--config.data.data_dir={tmp_path}',
           f'--config.data.census.path={CENSUS}', '--config.data.census.test_frac=0.25']
  out = subprocess.run(base + ['prepare'] + flags, capture_output=True, text=True, cwd=ROOT,
                       check=True, timeout=300).stdout
  assert 'census: built' in out
  out = subprocess.run(base + ['describe', '--format=json'] + flags, capture_output=True,
                       text=True, cwd=ROOT, check=True, timeout=300).stdout
  rows = {r['split']: r for r in json.loads(out)}
  assert rows['test']['rows'] == 10 and rows['train']['rows'] == 26
  assert set(rows['train']['pos_rate']) == {'income', 'never_married'}
  bad = subprocess.run(base + ['describe', '--config.data.census.pth=x'], capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
  assert bad.returncode != 0 and 'pth' in bad.stderr


def test_open_binary_plain_gzip_zip_member(tmp_path):
  text = b'a\tb\n\n1\t2\n'
  (tmp_path / 'f.txt').write_bytes(text)
  with gzip.open(tmp_path / 'f.txt.gz', 'wb') as f:
    f.write(text)
  with zipfile.ZipFile(tmp_path / 'f.zip', 'w') as z:
    z.writestr('dir/f.txt', text)
  for path, member in ((tmp_path / 'f.txt', None), (tmp_path / 'f.txt.gz', None),
                       (tmp_path / 'f.zip', 'dir/f.txt')):
    with raw.open_binary(str(path), member) as f:
      assert list(raw.iter_lines(f, 'x', raw.BadRows(False))) == [(1, 'a\tb'), (3, '1\t2')]


def test_records_json_or_python_literal():
  assert raw.parse_record('{"a": [1, "x"]}') == {'a': [1, 'x']}
  assert raw.parse_record("{'a': [1, 'x'], 'b': None, 'c': True}") == {'a': [1, 'x'], 'b': None,
                                                                      'c': True}
  with pytest.raises(ValueError, match='neither JSON'):
    raw.parse_record("{'a': __import__('os')}")     # literal_eval never executes code


def test_bad_rows_strict_reports_the_first_bad_line_and_skip_counts():
  lines = [(1, '1,2'), (2, 'x,2'), (3, '1'), (4, '3,4')]
  cols = [raw.Column('a', 'int'), raw.Column('b', 'int')]
  with pytest.raises(DataError, match=r"f, line 2: 'a' is 'x'"):
    raw.concat_chunks(raw.read_delimited(iter(lines), 'f', ',', cols, raw.BadRows(False)))
  bad = raw.BadRows(True)
  out = raw.concat_chunks(raw.read_delimited(iter(lines), 'f', ',', cols, bad, chunk_rows=2))
  np.testing.assert_array_equal(out['a'], [1, 3])
  np.testing.assert_array_equal(out['_line'], [1, 4])
  assert bad.report()['bad_rows_skipped'] == 2
