"""The planted-interest generator: determinism, contract, leakage-free splits, oracle."""
import numpy as np
import pytest

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


def test_intensity_generator_click_prob_and_doubling(tiny_config):
  """relevance='sum' (dataset synthetic_intensity): p against its definition, computed row by
  row; doubling every behaviour raises p (the max generator's p is unchanged), and a
  softmax-normalised attention's output is unchanged while DIN's unnormalised one is not."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from seqrec_jax.models import builders  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  n, length, k, items = 6, 5, 8, 12
  v = rng.normal(size=(items + 1, k))
  v /= np.linalg.norm(v, axis=1, keepdims=True)
  bias = rng.normal(scale=0.1, size=items + 1)
  target = rng.integers(1, items + 1, n)
  hist = rng.integers(1, items + 1, (n, length))
  hist[:, :2] = target[:, None]                       # two exact matches per row
  mask = rng.random((n, length)) < 0.8
  mask[:, 0] = True
  p = synthetic.click_prob(v, bias, target, hist, mask, 5.0, -2.5, 'sum')
  for i in range(n):
    rel = sum(max(0.0, (v[target[i]] @ v[hist[i, j]] - 0.5) / 0.5)
              for j in range(length) if mask[i, j])
    assert p[i] == pytest.approx(1 / (1 + np.exp(-(5.0 * rel / 10 - 2.5 + bias[target[i]]))))
  hist2, mask2 = np.concatenate([hist, hist], 1), np.concatenate([mask, mask], 1)
  assert (synthetic.click_prob(v, bias, target, hist2, mask2, 5.0, -2.5, 'sum') > p).all()
  np.testing.assert_allclose(synthetic.click_prob(v, bias, target, hist2, mask2, 5.0, -2.5),
                             synthetic.click_prob(v, bias, target, hist, mask, 5.0, -2.5))
  q, keys = jnp.asarray(v[target], jnp.float32), jnp.asarray(v[hist], jnp.float32)
  keys2 = jnp.concatenate([keys, keys], 1)
  out = {}
  tiny_config.model.activation = 'prelu'
  for norm in ('softmax', 'none'):
    tiny_config.model.attention.normalizer = norm
    unit = builders.attention_unit(tiny_config.model)
    w = jax.jit(lambda unit=unit: unit.init(jax.random.key(0), q, keys, jnp.asarray(mask),
                                            False))()
    apply = jax.jit(lambda w, kk, m, unit=unit: unit.apply(w, q, kk, m, False))
    out[norm] = [np.asarray(apply(w, kk, jnp.asarray(m))) for kk, m in ((keys, mask),
                                                                         (keys2, mask2))]
  np.testing.assert_allclose(out['softmax'][0], out['softmax'][1], rtol=1e-5, atol=1e-6)
  assert not np.allclose(out['none'][0], out['none'][1], atol=1e-4)
  with pytest.raises(ValueError, match='relevance'):
    synthetic.click_prob(v, bias, target, hist, mask, 5.0, -2.5, 'mean')


def test_intensity_dataset_oracle():
  ds = synthetic.generate(**SMALL, relevance='sum')
  assert ds.name == 'synthetic_intensity' and ds.info['relevance'] == 'sum'
  y = np.concatenate([ds.splits[s].arrays['label'] for s in ds.splits])
  p = np.concatenate([ds.oracle_prob[s] for s in ds.splits])
  assert abs(y.mean() - p.mean()) < 0.03               # labels are Bernoulli(p)
  assert ds.info['test/oracle_auc'] == pytest.approx(M.auc(ds.splits['test'].arrays['label'],
                                                           ds.oracle_prob['test']))
