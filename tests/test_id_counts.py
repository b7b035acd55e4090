"""MBA's n_j stored with the prepared dataset (data/id_counts.py, data/tfds_source.py)."""
import json
import os

import numpy as np
import pytest

from seqrec_jax.configs import default
from seqrec_jax.data import DataError, id_counts, load_dataset, tfds_source
from seqrec_jax.data.builders import SeqrecMovielens

FIX = os.path.join(os.path.dirname(__file__), 'fixtures', 'movielens', 'ml-latest-small')


def _data_cfg(tmp_path, **kw):
  c = default.get_config()
  c.data.name = 'movielens'
  c.data.data_dir = str(tmp_path / 'data')
  c.data.movielens.path = FIX
  c.data.movielens.max_len = 4
  c.data.update(kw)
  return c.data


def _eq(a, b):
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_stored_counts_equal_a_recount_of_the_train_split_only(tmp_path):
  dc = _data_cfg(tmp_path)
  ds = tfds_source.load(SeqrecMovielens, dc, dc.movielens.to_dict(), 'movielens')
  assert ds.info['built_now'] and ds.info['id_counts'] == 'stored with the dataset'
  assert os.path.exists(os.path.join(ds.info['data_path'], id_counts.COUNTS_FILE))
  train = id_counts.count_split(ds.splits['train'], ds.spec)
  _eq(ds.id_counts, train)
  assert set(train) == {'item', 'cate', 'user'} and all(v[0] == 0 for v in train.values())
  # Valid/test never counted: their users (split by user) and held-out items add nothing.
  held_out = {k: sum(id_counts.count_split(ds.splits[s], ds.spec)[k] for s in ('valid', 'test'))
              for k in train}
  assert held_out['user'].sum() > 0 and not (ds.id_counts['user'] * held_out['user']).any()
  # Through data.load_dataset the model reads the stored counts; the top-k filter moves the
  # dropped items' counts to OOV 0 (never counted), equal to a recount of the filtered split.
  for top_k in (0, 5):
    dc.item_top_k = top_k
    loaded = load_dataset(dc)
    n = loaded.spec.id_counts
    assert n.source == 'stored with the dataset'
    _eq({k: n.counts(k) for k in train}, id_counts.count_split(loaded.splits['train'],
                                                               loaded.spec))
  assert (n.counts('item') > 0).sum() == 5


def test_cache_from_before_stored_counts_is_recounted_and_a_broken_file_is_an_error(tmp_path):
  dc = _data_cfg(tmp_path)
  ds = tfds_source.load(SeqrecMovielens, dc, dc.movielens.to_dict(), 'movielens')
  path = os.path.join(ds.info['data_path'], 'metadata.json')
  with open(path) as f:
    md = json.load(f)
  with open(path, 'w') as f:     # what a build before this change left: no `id_counts`
    json.dump({k: v for k, v in md.items() if k != 'id_counts'}, f)
  os.remove(os.path.join(ds.info['data_path'], id_counts.COUNTS_FILE))
  old = tfds_source.load(SeqrecMovielens, dc, dc.movielens.to_dict(), 'movielens')
  assert not old.info['built_now'] and old.id_counts is None
  assert old.info['id_counts'].startswith('recounted from the train split')
  n = load_dataset(dc).spec.id_counts
  assert n.source == 'counted from the train split at first use'
  _eq({k: n.counts(k) for k in ds.id_counts}, ds.id_counts)
  # Listed in metadata.json but missing or not matching the spec: a clear error, no zeros.
  with open(path, 'w') as f:
    json.dump(md, f)
  with pytest.raises(DataError, match='cannot be used.*delete'):
    tfds_source.load(SeqrecMovielens, dc, dc.movielens.to_dict(), 'movielens')
  id_counts.save_counts(os.path.join(ds.info['data_path'], id_counts.COUNTS_FILE),
                        dict(ds.id_counts, item=ds.id_counts['item'][:-1]))
  with pytest.raises(DataError, match="table 'item'"):
    tfds_source.load(SeqrecMovielens, dc, dc.movielens.to_dict(), 'movielens')


def _spec():
  from seqrec_jax.data.features import DataSpec, FeatureSpec  # pylint: disable=g-import-not-at-top
  return DataSpec(num_users=4, num_items=6, num_cates=3, max_len=2,
                  sparse=(FeatureSpec('f', 5),))


def _counts():
  return {'user': np.arange(4) * 0, 'item': np.array([0, 1, 2, 0, 1, 1]),
          'cate': np.array([0, 3, 1]), 'sparse_f': np.array([0, 1, 1, 1, 1])}


@pytest.mark.parametrize('fault', ['truncate', 'garbage', 'empty', 'drop_table', 'extra_table',
                                   'short_table', 'negative', 'float', '2d'])
def test_unreadable_or_incomplete_counts_file_is_a_data_error(tmp_path, fault):
  """Issue 28.9: a truncated npz was a raw BadZipFile; a dropped table loaded and failed later."""
  path = str(tmp_path / id_counts.COUNTS_FILE)
  counts = _counts()
  if fault == 'drop_table':
    counts.pop('cate')
  elif fault == 'extra_table':
    counts['sparse_g'] = np.zeros(3)
  elif fault == 'short_table':
    counts['item'] = counts['item'][:-1]
  elif fault == 'negative':
    counts['item'][2] = -1
  elif fault == 'float':
    counts['item'] = counts['item'] + 0.5
  elif fault == '2d':
    counts['user'] = counts['user'][:, None]
  if fault == 'float':
    np.savez_compressed(path, **counts)
  else:
    id_counts.save_counts(path, counts)
  data = open(path, 'rb').read()
  if fault in ('truncate', 'garbage', 'empty'):
    data = {'truncate': data[:len(data) // 2], 'garbage': b'not a zip' * 9, 'empty': b''}[fault]
    with open(path, 'wb') as f:
      f.write(data)
  with pytest.raises(DataError) as e:
    id_counts.load_counts(path, _spec(), 'seqrec_x')
  assert path in str(e.value) and 'seqrec_x' in str(e.value), str(e.value)


def test_a_complete_counts_file_loads():
  import tempfile  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, id_counts.COUNTS_FILE)
    id_counts.save_counts(path, _counts())
    _eq(id_counts.load_counts(path, _spec(), 'x'), _counts())
