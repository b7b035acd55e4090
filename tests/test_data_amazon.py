"""Amazon: strict JSON and python-literal (gzip) lines, the DIN code protocol, bad input."""
from __future__ import annotations

import gzip
import json
import os
import shutil

import numpy as np
import pytest

from seqrec_jax.configs import default
from seqrec_jax.data import DataError, amazon, load_dataset

FIX = os.path.join(os.path.dirname(__file__), 'fixtures', 'amazon')


def cfg(**kw):
  c = dict(amazon.DEFAULTS, path=os.path.join(FIX, 'json'), category='Toys', max_len=4)
  c.update(kw)
  return c


def collect(p):
  return {name: p.rows(name) for name in p.splits}


def test_json_and_python_literal_gzip_give_identical_rows():
  a = collect(amazon.prepare(cfg()))
  b = collect(amazon.prepare(cfg(path=os.path.join(FIX, 'literal'))))
  for s in a:
    for k in a[s]:
      np.testing.assert_array_equal(a[s][k], b[s][k], err_msg=f'{s}/{k}')


def _reviews():
  with open(os.path.join(FIX, 'json', 'reviews_Toys_5.json')) as f:
    recs = [json.loads(l) for l in f]
  by_user = {}
  for r in sorted(recs, key=lambda r: (r['reviewerID'], r['unixReviewTime'], r['asin'])):
    by_user.setdefault(r['reviewerID'], []).append(r['asin'])
  return by_user


def test_din_code_protocol_positions_negatives_and_categories():
  p = amazon.prepare(cfg())
  rows = collect(p)
  by_user = _reviews()
  users = sorted(by_user)
  # Rows come in (positive, negative) pairs with the same user and history.
  for r in rows.values():
    assert (r['label'][0::2] == 1).all() and (r['label'][1::2] == 0).all()
    for k in ('user_id', 'hist_items', 'hist_mask'):
      np.testing.assert_array_equal(r[k][0::2], r[k][1::2])
  # Positions: test = last review, valid = second-to-last, train = 1..n-3.
  counts = {s: np.bincount(rows[s]['user_id'], minlength=len(users) + 1)[1:] // 2 for s in rows}
  for u, items in enumerate(by_user.values()):
    n = len(items)
    assert (counts['train'][u], counts['valid'][u], counts['test'][u]) == (
        max(n - 3, 0), int(n >= 3), 1)
  # Histories are the sorted prefix, newest last, capped at L=4: the newest behaviour of the
  # test row is the valid target, the newest of the valid row the last train target.
  last_pos = {s: {} for s in rows}
  for s, r in rows.items():
    for i in np.flatnonzero(r['label'] == 1):
      last_pos[s][r['user_id'][i]] = i
  test, valid, train = rows['test'], rows['valid'], rows['train']
  for uid, i in last_pos['test'].items():
    n = len(by_user[users[uid - 1]])
    assert test['hist_mask'][i].sum() == min(n - 1, 4)
    if n >= 3:
      j = last_pos['valid'][uid]
      assert test['hist_items'][i][-1] == valid['target_item'][j]
      np.testing.assert_array_equal(test['hist_items'][i][:-1], valid['hist_items'][j][1:])
    if n >= 4:
      assert valid['hist_items'][j][-1] == train['target_item'][last_pos['train'][uid]]
  # Negatives: never an item the user reviewed, always in the vocabulary.
  owned = {}
  for r in rows.values():
    for uid, item, lab in zip(r['user_id'], r['target_item'], r['label']):
      if lab == 1:
        owned.setdefault(uid, set()).add(item)
    for uid, h, m in zip(r['user_id'], r['hist_items'], r['hist_mask']):
      owned.setdefault(uid, set()).update(h[m].tolist())
  for r in rows.values():
    neg = r['target_item'][r['label'] == 0]
    assert (neg >= 1).all() and (neg < p.spec.num_items).all()
    for uid, item in zip(r['user_id'][r['label'] == 0], neg):
      assert item not in owned[uid] or item == 0
  # The record without metadata and the empty `categories` one have no category.
  assert p.info['reviews_without_category'] > 0
  # Puzzles, Board Games, Dolls, Building Toys
  assert p.spec.num_cates == p.info['cate_vocab'] >= 4


def test_negatives_are_deterministic_and_strict_time_history_is_shorter():
  a, b = collect(amazon.prepare(cfg())), collect(amazon.prepare(cfg()))
  np.testing.assert_array_equal(a['train']['target_item'], b['train']['target_item'])
  c = collect(amazon.prepare(cfg(neg_seed=7)))
  assert not np.array_equal(a['train']['target_item'], c['train']['target_item'])
  strict = collect(amazon.prepare(cfg(same_time_history=False, max_len=50)))
  prefix = collect(amazon.prepare(cfg(max_len=50)))
  ls, lp = strict['train']['hist_mask'].sum(1), prefix['train']['hist_mask'].sum(1)
  assert (ls <= lp).all() and (ls < lp).any()


def _broken(tmp_path, which, edit, gz=False):
  d = tmp_path / 'amz'
  shutil.copytree(os.path.join(FIX, 'json'), d)
  name = 'reviews_Toys_5.json' if which == 'reviews' else 'meta_Toys.json'
  lines = (d / name).read_text().splitlines(keepends=True)
  text = ''.join(edit(lines))
  if gz:
    os.remove(d / name)
    with gzip.open(d / (name + '.gz'), 'wt') as f:
      f.write(text)
    name += '.gz'
  else:
    (d / name).write_text(text)
  return str(d), str(d / name)


@pytest.mark.parametrize('which,row,reason,gz', [
    ('reviews', '{"reviewerID": "A1", "asin": "B1", "unixReviewTime": 12\n', 'unparseable record',
     False),
    ('reviews', '{"reviewerID": "A1", "asin": "B1"}\n', "'unixReviewTime' is None", False),
    ('reviews', "{'reviewerID': 'A1', 'asin': '', 'unixReviewTime': 5}\n", "'asin' is ''", True),
    ('reviews', '["A1", "B1", 5]\n', 'record is a list', False),
    ('meta', "{'asin': 'B1', 'categories': 'Toys'}\n", "'categories' is 'Toys'", True),
])
def test_malformed_records(tmp_path, which, row, reason, gz):
  path, f = _broken(tmp_path, which, lambda l: l[:2] + [row] + l[2:], gz)
  with pytest.raises(DataError) as e:
    amazon.prepare(cfg(path=path))
  assert f'{f}, line 3: ' in str(e.value) and reason in str(e.value), str(e.value)
  p = amazon.prepare(cfg(path=path, skip_bad_rows=True))
  assert p.info['bad_rows_skipped'] == 1 and p.info['reviews'] == 43


def test_missing_inputs_are_explained(tmp_path):
  with pytest.raises(DataError, match='path is empty'):
    amazon.prepare(dict(amazon.DEFAULTS))
  with pytest.raises(DataError, match=r'meta_Books.json\(.gz\)'):
    shutil.copytree(os.path.join(FIX, 'json'), tmp_path / 'b')
    os.rename(tmp_path / 'b' / 'reviews_Toys_5.json', tmp_path / 'b' / 'reviews_Books_5.json')
    amazon.prepare(cfg(path=str(tmp_path / 'b'), category='Books'))


def test_load_dataset(tmp_path):
  c = default.get_config()
  c.data.name = 'amazon'
  c.data.data_dir = str(tmp_path)
  c.data.amazon.update(path=os.path.join(FIX, 'literal'), category='Toys', max_len=4)
  ds = load_dataset(c.data)
  assert len(ds.splits['test']) == 2 * 10 and ds.info['test/pos_rate']['click'] == 0.5
  b = ds.splits['train'].__getitems__(np.arange(2))
  assert b['hist_items'].shape == (2, 4) and b['label'].tolist() == [1.0, 0.0]


# ---------------------------------------------------------------- issue 28: rows and files
DEEP = '[' * 100000 + ']' * 100000


@pytest.mark.parametrize('which,row,reason', [
    ('reviews', '{"reviewerID": "A1", "asin": "B1", "unixReviewTime": 1e999}\n',
     "'unixReviewTime' is inf"),
    ('reviews', '{"reviewerID": "A1", "asin": "B1", "unixReviewTime": 1' + '0' * 30 + '}\n',
     "'unixReviewTime' is 1" + '0' * 30),
    ('reviews', '{"reviewerID": "A1", "asin": "B1", "unixReviewTime": 5, "x": ' + DEEP + '}\n',
     'nested too deeply'),
    ('reviews', "{[1]: 2}\n", 'unparseable record'),
    ('meta', '{"asin": "B1", "categories": ' + DEEP + '}\n', 'nested too deeply'),
])
def test_overflow_and_deep_nesting_are_malformed_rows(tmp_path, which, row, reason):
  """Issue 28.9: OverflowError / RecursionError / TypeError escaped as raw exceptions."""
  test_malformed_records(tmp_path, which, row, reason, False)


def _corrupt_gz(data: bytes, kind: str) -> bytes:
  if kind == 'truncate':
    return data[:len(data) // 2]
  if kind == 'flip':
    mid = len(data) // 2
    return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
  return b'\x1f\x8b' + b'garbage' * 50    # a gzip magic number, then no gzip stream


@pytest.mark.parametrize('which', ['reviews_Toys_5.json.gz', 'meta_Toys.json.gz'])
@pytest.mark.parametrize('kind', ['truncate', 'flip', 'garbage'])
def test_corrupt_gzip_is_an_error_naming_the_file(tmp_path, which, kind):
  d = tmp_path / 'amz'
  shutil.copytree(os.path.join(FIX, 'literal'), d)
  (d / which).write_bytes(_corrupt_gz((d / which).read_bytes(), kind))
  for skip in (False, True):   # a corrupt file is not a row: skipping does not hide it
    with pytest.raises(DataError, match=r'corrupt') as e:
      amazon.prepare(cfg(path=str(d), skip_bad_rows=skip))
    assert str(d / which) in str(e.value)


def test_links_in_the_data_directory(tmp_path):
  """Issue 28.9: links the loader never reads do not matter; a dangling one it reads is named."""
  d = tmp_path / 'amz'
  shutil.copytree(os.path.join(FIX, 'json'), d)
  os.symlink(tmp_path / 'nowhere', d / 'dangling')
  os.symlink(d / 'loop', d / 'loop')
  want = collect(amazon.prepare(cfg(path=str(d))))
  assert amazon.source_fingerprint(cfg(path=str(d)))
  assert want['test']['label'].size
  os.remove(d / 'reviews_Toys_5.json')
  os.symlink(tmp_path / 'gone.json', d / 'reviews_Toys_5.json')
  for call in (amazon.prepare, amazon.source_fingerprint):
    with pytest.raises(DataError, match='reviews_Toys_5.json.*link'):
      call(cfg(path=str(d)))


# ---------------------------------------------------------------- issue 25: fast == exact
def _both(monkeypatch, path, **kw):
  """(fast, exact): (rows per split, behaviours, info) of amazon.prepare on each path."""
  out = []
  for fast in (True, False):
    monkeypatch.setattr(amazon, 'FAST_PARSE', fast)
    p = amazon.prepare(cfg(path=str(path), **kw))
    out.append((collect(p), p.behaviours, p.info))
  return out


def _assert_same(a, b):
  (ra, ba, ia), (rb, bb, ib) = a, b
  assert ia == ib
  for k in ba:
    np.testing.assert_array_equal(ba[k], bb[k], err_msg=k)
  for s in ra:
    for k in ra[s]:
      np.testing.assert_array_equal(ra[s][k], rb[s][k], err_msg=f'{s}/{k}')


@pytest.mark.parametrize('fixture', ['json', 'literal'])
def test_fast_and_exact_parsing_give_identical_prepared_arrays(monkeypatch, fixture):
  _assert_same(*_both(monkeypatch, os.path.join(FIX, fixture)))


TEXT = ['fine', "It's", 'say "hi"', 'tab\there', 'caf\u00e9', '\u2603 \U0001F600', '[x]',
        "{'categories': [['Fake']]}", '"asin": "B0"', 'back\\slash', 'NaN or Infinity',
        '\x0c\x1e\u2028', '']


def _py(v):
  return repr(v)


def _review_line(r, user, item, t, form):
  rec = [('reviewerID', user), ('asin', item), ('unixReviewTime', t),
         ('helpful', [int(r.integers(3)), int(r.integers(9))]),
         ('reviewText', str(r.choice(TEXT)) + ' ' + str(r.choice(TEXT))),
         ('overall', float(r.integers(1, 6))), ('summary', str(r.choice(TEXT)))]
  rec = [rec[i] for i in r.permutation(len(rec))]
  if form == 'json':
    return json.dumps(dict(rec), ensure_ascii=bool(r.integers(2)))
  return '{' + ', '.join(f'{_py(k)}: {_py(v)}' for k, v in rec) + '}'


def _meta_line(r, asin, form):
  paths = [['Toys & Games'] + [str(r.choice(TEXT)) or 'Top' for _ in range(r.integers(0, 3))]
           for _ in range(r.integers(0, 3))]
  rec = [('asin', asin), ('title', str(r.choice(TEXT))), ('price', float(r.integers(1, 99)) / 4),
         ('related', {'also_bought': [f'B{int(x):05d}' for x in r.integers(0, 99, 3)],
                      'bought_together': []}),
         ('salesRank', {'Toys & Games': int(r.integers(1, 10**6))}),
         ('description', ' '.join(str(r.choice(TEXT)) for _ in range(4)))]
  if r.random() < 0.9:
    rec.append(('categories', paths))
  elif r.random() < 0.5:
    rec.append(('category', [p[-1] for p in paths]))
  if r.random() < 0.05:
    rec.append(('asin', asin))        # a repeated key: the last one counts
  rec = [rec[i] for i in r.permutation(len(rec))]
  if form == 'json':
    return json.dumps(dict(rec))
  return '{' + ', '.join(f'{_py(k)}: {_py(v)}' for k, v in rec) + '}'


BAD_REVIEWS = ['{"reviewerID": "A1", "asin": "B1", "unixReviewTime": 1e999}',
               '{"reviewerID": "A1", "asin": "B1", "unixReviewTime": -4}',
               '{"reviewerID": "A1", "asin": "", "unixReviewTime": 4}',
               '{"reviewerID": "A1", "asin": "B1", "unixReviewTime": 4, "x": Inf}',
               '{"reviewerID": "A1", "asin": "B1", "unixReviewTime": 4} {"a": 1}',
               '{"reviewerID": "A1", "asin": "B1", "unixReviewTime": 4, "x": ' + '[' * 3000 +
               ']' * 3000 + '}', '   ', '{"reviewerID": "A1", "asin": "B1"}',
               "{'reviewerID': 'A1', 'asin': 'B1', 'unixReviewTime': True}"]
BAD_META = ["{'asin': 'B1', 'categories': 'Toys'}", "{'asin': 'B1', 'categories': [['a'], 3]}",
            "{'asin': '', 'categories': [['a']]}", "{'asin': 'B1', 'x': \"\\N{nope}\"}",
            "{'asin': 'B1', 'categories': [['a']]", "{'asin': 'B1', 'x': [1, 2,, 3]}"]


def _random_files(d, r, n_users, form, bad=False, gz=False):
  os.makedirs(d, exist_ok=True)
  items = [f'B{i:05d}' + ('\\u00e9' if i % 17 == 0 and form == 'json' else '')
           for i in range(max(8, n_users // 2))]
  lines, bad_lines = [], 0
  for u in range(n_users):
    user = f'A{u:04d}' + ('\u00e9' if u % 13 == 0 else '')
    for item in r.choice(items, int(r.integers(2, 7)), replace=False):
      if form == 'json' and '\\u' in item:
        item = json.loads(f'"{item}"')
      lines.append(_review_line(r, user, str(item), int(r.integers(10**9, 10**9 + 50)),
                                form if form != 'mixed' else r.choice(['json', 'python'])))
  if bad:
    for row in r.choice(BAD_REVIEWS, 3):
      lines.insert(int(r.integers(len(lines))), str(row))
      bad_lines += 1
  meta = [_meta_line(r, str(a), 'python' if form != 'json' else 'json')
          for a in items if r.random() < 0.9]
  if bad:
    for row in r.choice(BAD_META, 2):
      meta.insert(int(r.integers(len(meta))), str(row))
      bad_lines += 1
  for name, rows in (('reviews_Toys_5.json', lines), ('meta_Toys.json', meta)):
    data = ('\n'.join(rows) + '\n').encode()
    if gz:
      with gzip.open(os.path.join(d, name + '.gz'), 'wb') as f:
        f.write(data)
    else:
      with open(os.path.join(d, name), 'wb') as f:
        f.write(data)
  return bad_lines


@pytest.mark.parametrize('seed,form,gz', [(0, 'json', False), (1, 'python', True),
                                          (2, 'mixed', False)])
def test_fast_and_exact_parsing_agree_on_random_files(tmp_path, monkeypatch, seed, form, gz):
  r = np.random.default_rng(seed)
  _random_files(tmp_path / 'ok', r, 400, form, gz=gz)
  _assert_same(*_both(monkeypatch, tmp_path / 'ok', max_len=5))
  n_bad = _random_files(tmp_path / 'bad', r, 100, form, bad=True, gz=gz)
  fast, exact = _both(monkeypatch, tmp_path / 'bad', max_len=5, skip_bad_rows=True)
  _assert_same(fast, exact)
  assert fast[2]['bad_rows_skipped'] == n_bad
  for f in (True, False):        # strict: the same first bad line named
    monkeypatch.setattr(amazon, 'FAST_PARSE', f)
    with pytest.raises(DataError) as e:
      amazon.prepare(cfg(path=str(tmp_path / 'bad')))
    if f:
      first = str(e.value)
    else:
      assert str(e.value) == first


def test_the_fast_paths_are_taken(monkeypatch):
  calls = []
  monkeypatch.setattr(amazon.raw, 'read_records',
                      lambda *a: calls.append(a[1]) or iter(()))
  user, _, _ = amazon.read_reviews(os.path.join(FIX, 'json', 'reviews_Toys_5.json'),
                                   amazon.raw.BadRows(False))
  meta = amazon.read_meta(os.path.join(FIX, 'literal', 'meta_Toys.json.gz'),
                          amazon.raw.BadRows(False))
  assert len(user) == 43 and len(meta) == 23 and calls == []


MUTATIONS = list('\'"\\[]{},: 0aN\tTu') + ['True', 'null', 'NaN', '1e999', ', ', "'asin': 'Z'",
                                           '"categories": [["Q"]]', "'category': ['W']", '\\x4']


def test_the_line_grammar_never_accepts_what_the_exact_reader_reads_differently():
  """Random edits of record lines: whenever a fast line parser answers, the exact reader
  parses the line and extracts the same value."""
  r = np.random.default_rng(0)
  checked = 0
  for trial in range(3000):
    form = ['json', 'python'][trial % 2]
    if trial % 4 < 2:
      line, fast, extract = (_review_line(r, 'A1', 'B1', 5, form), amazon._review_fast,
                             amazon._review)
    else:
      line, fast, extract = _meta_line(r, 'B1', form), amazon._meta_fast, amazon._meta
    for _ in range(int(r.integers(0, 4))):
      i = int(r.integers(len(line) + 1))
      cut = int(r.integers(0, 3))
      line = line[:i] + str(r.choice(MUTATIONS)) + line[i + cut:]
    got = fast(line)
    if got is None:
      continue
    checked += 1
    assert extract(amazon.raw.parse_record(line)) == got, line
  assert checked > 500


def test_the_arrow_block_reader_never_accepts_what_the_exact_reader_reads_differently():
  """Random edits of JSON review lines: whenever a pyarrow block is accepted, every line
  parses exactly and gives the same (user, item, time)."""
  r = np.random.default_rng(1)
  accepted = 0
  for _ in range(1500):
    lines = [_review_line(r, f'A{i}', 'B1', 5, 'json') for i in range(3)]
    for _ in range(int(r.integers(0, 3))):
      j = int(r.integers(3))
      i = int(r.integers(len(lines[j]) + 1))
      lines[j] = lines[j][:i] + str(r.choice(MUTATIONS + ['\n', '\r\n', '\\ud800', ' '])) + (
          lines[j][i + int(r.integers(0, 3)):])
    data = '\n'.join(lines).encode('utf-8', 'surrogatepass') + b'\n'
    got = amazon._arrow_block(data)
    if got is None:
      continue
    accepted += 1
    want = [amazon._review(amazon.raw.parse_record(l.decode()))
            for l in data.replace(b'\r\n', b'\n').split(b'\n') if l]
    assert list(zip(got[0].to_pylist(), got[1].to_pylist(), got[2].tolist())) == want, data
  assert accepted > 300
