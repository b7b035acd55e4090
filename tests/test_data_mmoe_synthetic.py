"""The MMoE paper's synthetic generator (data/mmoe_synthetic.py): pinned constants, the task
correlation set by cos(w1, w2), the measured label Pearson per setting, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from seqrec_jax.data import mmoe_synthetic as M

CORRELATIONS = (0.5, 0.8, 0.9, 1.0)


def _gen(**kw):
  return M.generate(**dict(M.DEFAULTS, **kw))


def test_pinned_constants():
  d = M.DEFAULTS
  assert (d['dim'], d['scale'], d['num_sin'], d['noise_std']) == (100, 1.0, 10, 0.1)
  assert d['num_train'] >= 200_000 and d['num_valid'] >= 50_000 and d['num_test'] >= 50_000
  # The literal alpha_i, beta_i are the documented draw, rounded to 6 decimals.
  rng = np.random.default_rng([0, 1])
  np.testing.assert_allclose(M.ALPHAS, rng.normal(size=10), atol=5.1e-7)
  np.testing.assert_allclose(M.BETAS, rng.normal(size=10), atol=5.1e-7)
  a, b = M.shape_params(3)
  np.testing.assert_array_equal(a, M.ALPHAS[:3])
  np.testing.assert_array_equal(b, M.BETAS[:3])
  with pytest.raises(ValueError, match='num_sin=11'):
    M.shape_params(11)


@pytest.mark.parametrize('p', CORRELATIONS)
def test_cosine_and_label_pearson_per_correlation(p):
  ds = _gen(correlation=p, num_train=10, num_valid=10)
  assert ds.info['cosine(w1,w2)'] == pytest.approx(p, abs=1e-12)
  w = M.task_weights(100, p, M.DEFAULTS['scale'], np.random.default_rng(0))
  np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, rtol=1e-12)
  # Measured on the 50k test rows vs the quadrature value; SE(r) <= 1/sqrt(n) ~ 0.0045.
  measured = ds.info['test/label_pearson']
  expected = M.expected_label_pearson(p)
  assert abs(measured - expected) < 0.02, (p, measured, expected)
  # Pinned expectations (documented in the module): the label correlation is not p.
  assert expected == pytest.approx({0.5: 0.177, 0.8: 0.475, 0.9: 0.675, 1.0: 0.992}[p],
                                   abs=2e-3)
  # Label variance ~1.30 per task (the MSE of predicting the mean); noise variance 0.01.
  assert ds.info['test/y1_var'] == pytest.approx(1.30, abs=0.05)
  assert ds.info['noise_var'] == pytest.approx(0.01)


def test_label_pearson_rises_with_correlation():
  r = [M.expected_label_pearson(p) for p in (0.0,) + CORRELATIONS]
  assert np.all(np.diff(r) > 0) and abs(r[0]) < 0.02


def test_deterministic_from_seed_and_paired_across_correlations():
  small = dict(num_train=300, num_valid=50, num_test=70)
  a, b = _gen(seed=3, **small), _gen(seed=3, **small)
  for s in M.SPLITS:
    for k in ('dense', 'labels'):
      np.testing.assert_array_equal(a.splits[s].arrays[k], b.splits[s].arrays[k])
  c = _gen(seed=4, **small)
  assert not np.allclose(a.splits['train'].arrays['dense'], c.splits['train'].arrays['dense'])
  # Another correlation, same seed: same x, same y1 (w1 = c u1); only y2 changes.
  d = _gen(seed=3, correlation=0.9, **small)
  np.testing.assert_array_equal(a.splits['test'].arrays['dense'], d.splits['test'].arrays['dense'])
  np.testing.assert_allclose(a.splits['test'].arrays['labels'][:, 0],
                             d.splits['test'].arrays['labels'][:, 0], rtol=1e-6)
  assert not np.allclose(a.splits['test'].arrays['labels'][:, 1],
                         d.splits['test'].arrays['labels'][:, 1])
  # A split's rows do not depend on the other splits' sizes.
  e = _gen(seed=3, **dict(small, num_train=1000))
  np.testing.assert_array_equal(a.splits['test'].arrays['labels'],
                                e.splits['test'].arrays['labels'])


def test_labels_follow_the_construction():
  ds = _gen(seed=1, correlation=0.8, num_train=5, num_valid=5, num_test=2000, noise_std=0.0)
  x, y = ds.splits['test'].arrays['dense'], ds.splits['test'].arrays['labels']
  # Without noise, y_k = f(w_k^T x) exactly, with w drawn from the seed's first stream.
  w = M.task_weights(100, 0.8, 1.0, np.random.default_rng(np.random.SeedSequence(1).spawn(4)[0]))
  z = x.astype(np.float64) @ w.T
  np.testing.assert_allclose(y, M.label_fn(z, *M.shape_params(10)), atol=1e-4)
  assert x.dtype == np.float32 and y.dtype == np.float32 and x.shape == (2000, 100)


def test_bad_correlation_names_the_key():
  with pytest.raises(ValueError, match='correlation'):
    _gen(correlation=1.5, num_train=5, num_valid=5, num_test=5)
