"""The planted-interest generator: determinism, contract, leakage-free splits, oracle."""
import numpy as np

from seqrec_jax import metrics as M
from seqrec_jax.data import synthetic
from seqrec_jax.data.features import validate_arrays

SMALL = dict(synthetic.DEFAULTS, num_users=300, num_items=80, num_cates=6, max_len=10,
             impressions_per_user=5)


def test_deterministic_from_seed():
  a = synthetic.generate(**SMALL)
  b = synthetic.generate(**SMALL)
  c = synthetic.generate(**dict(SMALL, seed=1))
  for k in a.splits['train'].arrays:
    np.testing.assert_array_equal(a.splits['train'].arrays[k], b.splits['train'].arrays[k])
  assert not np.array_equal(a.splits['train'].arrays['label'], c.splits['train'].arrays['label'])


def test_contract_and_user_split():
  ds = synthetic.generate(**SMALL)
  users = {}
  for name, split in ds.splits.items():
    arr = split.arrays
    validate_arrays(arr, ds.spec, name)
    mask = arr['hist_mask']
    # Right-aligned: once a position is real, every later one is too (newest last).
    assert (np.diff(mask.astype(int), axis=1) >= 0).all()
    assert (arr['hist_items'][~mask] == 0).all()
    assert (arr['hist_cates'][mask] > 0).all()
    users[name] = set(arr['user_id'].tolist())
  assert not users['train'] & users['valid'] and not users['train'] & users['test']
  assert sum(len(s) for s in ds.splits.values()) == 300 * 5


def test_histories_are_prefixes_of_one_sequence():
  ds = synthetic.generate(**SMALL)
  arr = ds.splits['train'].arrays
  u = arr['user_id']
  first = np.flatnonzero(u == u[0])
  h0, h1 = arr['hist_items'][first[0]], arr['hist_items'][first[1]]
  m0 = arr['hist_mask'][first[0]]
  # The next impression's history is the previous one shifted by one new behaviour.
  n = m0.sum()
  if n < SMALL['max_len']:
    np.testing.assert_array_equal(h1[-n - 1:-1], h0[-n:])
  else:
    np.testing.assert_array_equal(h1[:-1], h0[1:])


def test_oracle_auc_is_auc_of_true_probabilities():
  ds = synthetic.generate(**SMALL)
  for name in ('train', 'valid', 'test'):
    y = ds.splits[name].arrays['label']
    assert ds.info[f'{name}/oracle_auc'] == M.auc(y, ds.oracle_prob[name])
  assert ds.info['train/oracle_auc'] > 0.7


def test_local_activation_matters():
  """Given that the target's category is in the history at all, how much of the history it
  fills barely predicts the click: the signal is the most relevant behaviour, not the mean."""
  ds = synthetic.generate(**dict(SMALL, num_users=2000))
  arr = ds.splits['train'].arrays
  y = arr['label']
  same = (arr['hist_cates'] == arr['target_cate'][:, None]) & arr['hist_mask']
  present = same.any(1)
  share = same.sum(1) / np.maximum(arr['hist_mask'].sum(1), 1)
  assert M.auc(y, present) > 0.75                  # presence is a strong signal
  assert abs(M.auc(y[present], share[present]) - 0.5) < 0.06   # the share is not
