"""Column files (data/store.py): writer, windows cut at read time, disk == memory, validation,
and a disk-backed run that resumes bit-identically."""
import os

import numpy as np
import pytest

from seqrec_jax import train
from seqrec_jax.data import DataError, store
from seqrec_jax.data.features import DataSpec
from seqrec_jax.data.pipeline import train_batches

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_sequence_rows(n=500, users=40, L=7, seed=0):
  """Random stored sequence rows: behaviours of `users` users and rows pointing into them
  (also used by tests/test_device_split.py)."""
  rng = np.random.default_rng(seed)
  lens = rng.integers(1, 30, users)
  starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
  m = int(lens.sum())
  beh = {'hist_items': rng.integers(0, 50, m).astype(np.int32),
         'hist_cates': rng.integers(0, 6, m).astype(np.int32)}
  u = rng.integers(0, users, n)
  start = starts[u]
  end = start + rng.integers(0, lens[u] + 1)
  rows = {'user_id': (u + 1).astype(np.int32),
          'target_item': rng.integers(0, 50, n).astype(np.int32),
          'target_cate': rng.integers(0, 6, n).astype(np.int32),
          'label': rng.integers(0, 2, n).astype(np.float32),
          'hist_start': start.astype(np.int64), 'hist_end': end.astype(np.int64)}
  return rows, beh, DataSpec(num_users=users + 1, num_items=50, num_cates=6, max_len=L)


def _random_store(tmp_path, n=500):
  """random_sequence_rows written as column files (in chunks of 97 rows)."""
  rows, beh, spec = random_sequence_rows(n)
  fields = {k: (v.shape[1:], v.dtype) for k, v in rows.items()}
  chunks = [{k: v[s:s + 97] for k, v in rows.items()} for s in range(0, n, 97)]
  assert store.write_columns(str(tmp_path / 'train'), fields, iter(chunks)) == n
  store.write_columns(str(tmp_path / 'beh'), {k: ((), np.int32) for k in beh}, [beh])
  return rows, beh, spec


def _brute_force_window(start, end, seq, L):
  h = list(seq[max(start, end - L):end])
  return [0] * (L - len(h)) + h, [False] * (L - len(h)) + [True] * len(h)


def test_columns_round_trip_and_windows_match_brute_force(tmp_path):
  rows, beh, spec = _random_store(tmp_path)
  for in_memory in (False, True):
    cols = store.read_columns(str(tmp_path / 'train'), list(rows), in_memory)
    b = store.read_columns(str(tmp_path / 'beh'), list(beh), in_memory)
    for k, v in rows.items():
      np.testing.assert_array_equal(cols[k], v)
      assert isinstance(cols[k], np.memmap) != in_memory
    split = store.ColumnSplit(cols, b, spec.max_len)
    split.validate(spec)
    idx = np.sort(np.random.default_rng(1).choice(len(split), 64, replace=False))
    batch = split.__getitems__(idx)
    for j, r in enumerate(idx):
      items, mask = _brute_force_window(rows['hist_start'][r], rows['hist_end'][r],
                                        beh['hist_items'], spec.max_len)
      cates, _ = _brute_force_window(rows['hist_start'][r], rows['hist_end'][r],
                                     beh['hist_cates'], spec.max_len)
      assert batch['hist_items'][j].tolist() == items
      assert batch['hist_cates'][j].tolist() == cates
      assert batch['hist_mask'][j].tolist() == mask
      # A block read equals the same row read alone (TFDS's data-source protocol).
      one = split[int(r)]
      for k in batch:
        np.testing.assert_array_equal(one[k], batch[k][j])
    assert 'hist_start' not in batch and batch['hist_items'].dtype == np.int32


def test_disk_and_memory_give_the_same_training_batches(tmp_path):
  rows, beh, spec = _random_store(tmp_path)
  splits = [store.ColumnSplit(store.read_columns(str(tmp_path / 'train'), list(rows), m),
                              store.read_columns(str(tmp_path / 'beh'), list(beh), m), 7)
            for m in (False, True)]
  a, b = (list(train_batches(s, 64, 3, 0, 20, prefetch=0)) for s in splits)
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  # Each of 2 processes reads only its own half of every global batch (rows sorted per
  # process): together the same rows as one process.
  halves = [list(train_batches(splits[0], 64, 3, 0, 20, p, 2, prefetch=0)) for p in (0, 1)]
  key = lambda b: sorted(zip(b['target_item'].tolist(), b['hist_end'].tolist()  # noqa: E731
                             if 'hist_end' in b else b['hist_items'].sum(1).tolist()))
  for full, h0, h1 in zip(a, *halves):
    assert len(h0['label']) == len(h1['label']) == 32
    both = {k: np.concatenate([h0[k], h1[k]]) for k in h0}
    assert key(both) == key(full)


def test_header_holds_large_shapes_and_is_a_valid_npy(tmp_path):
  w = store.ColumnWriter(str(tmp_path / 'x.npy'), np.float32, (3,))
  w.append(np.ones((5, 3), np.float32))
  with pytest.raises(DataError, match=r'chunk of shape \(2, 4\)'):
    w.append(np.ones((2, 4), np.float32))
  w.close()
  assert np.load(tmp_path / 'x.npy').shape == (5, 3)
  assert len(store._header(np.int64, (10**15, 200))) == store._HEADER   # pylint: disable=protected-access


def test_validation_names_the_bad_row_and_range(tmp_path):
  rows, beh, spec = _random_store(tmp_path)
  cols = store.read_columns(str(tmp_path / 'train'), list(rows), True)
  bad = dict(cols, hist_end=cols['hist_end'].copy())
  bad['hist_end'][17] = len(beh['hist_items']) + 5
  with pytest.raises(DataError, match='row 17 has behaviour range'):
    store.ColumnSplit(bad, beh, 7, 'x/train').validate(spec)
  bad = dict(cols, target_item=cols['target_item'].copy())
  bad['target_item'][3] = 50
  with pytest.raises(DataError, match="'target_item' has id 50 at row 3"):
    store.ColumnSplit(bad, beh, 7, 'x/train').validate(spec)
  wrong = dict(beh, hist_cates=beh['hist_cates'].copy())
  wrong['hist_cates'][9] = 6
  with pytest.raises(DataError, match="behaviour 'hist_cates' has id 6 at position 9"):
    store.ColumnSplit(cols, wrong, 7, 'x/train').validate(spec)
  empty = dict(cols, hist_end=cols['hist_start'])
  with pytest.raises(DataError, match='empty history'):
    store.ColumnSplit(empty, beh, 7, 'x/train').validate(spec, allow_empty_history=False)


def _movielens_config(tmp_path, steps, in_memory):
  from seqrec_jax.configs import load_config
  c = load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py'))
  c.data.name = 'movielens'
  c.data.data_dir = str(tmp_path / 'data')
  c.data.in_memory = in_memory
  c.data.movielens.max_len = 10
  c.data.batch_size = 64
  c.data.eval_batch_size = 4096
  c.train.num_steps = steps
  c.train.eval_every = 2
  c.train.checkpoint_every = 2
  c.data.pack_buckets = 2   # 2 packed shapes, not ~1 compiled step per batch (conftest)
  return c


def test_disk_backed_run_resumes_bit_identically_and_equals_in_memory(tmp_path):
  keys = ('eval/valid/auc', 'eval/test/auc', 'eval/test/logloss')
  full = train.train_and_evaluate(_movielens_config(tmp_path, 4, 'always'),
                                  str(tmp_path / 'mem'))
  cut = train.train_and_evaluate(_movielens_config(tmp_path, 2, 'never'), str(tmp_path / 'disk'))
  assert cut['steps'] == 2
  resumed = train.train_and_evaluate(_movielens_config(tmp_path, 4, 'never'),
                                     str(tmp_path / 'disk'))
  assert resumed['steps'] == 4
  for k in keys:
    assert resumed[k] == full[k], k
