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
  out = {}
  for name, gen in p.splits.items():
    chunks = list(gen())
    out[name] = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  return out


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
