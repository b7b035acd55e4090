"""Two-tower losses (retrieval/losses.py) and samplers (retrieval/negatives.py) against NumPy
written from the formulas, on hand-sized cases."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import stats

from seqrec_jax.retrieval import losses as L
from seqrec_jax.retrieval import negatives as NEG

# Jitted once per function: on CPU one small jit compiles ~10x faster than the same ops eagerly.
pointwise_bce = jax.jit(L.pointwise_bce)
triplet_hinge = jax.jit(L.triplet_hinge, static_argnames='margin')
triplet_log = jax.jit(L.triplet_log, static_argnames='scale')
in_batch_softmax = jax.jit(L.in_batch_softmax)
RNG = np.random.default_rng(0)
B, N = 4, 3
POS = RNG.normal(size=B).astype(np.float32)
NEG_S = RNG.normal(size=(B, N)).astype(np.float32)
MASK = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 1, 1]], bool)


def _softplus(x):
  return np.log1p(np.exp(x))


def test_pointwise_bce_matches_numpy():
  want = (sum(-np.log(1 / (1 + np.exp(-p))) for p in POS)
          + sum(-np.log(1 - 1 / (1 + np.exp(-x))) for x in NEG_S[MASK])) / (B + MASK.sum())
  np.testing.assert_allclose(pointwise_bce(POS, NEG_S, MASK), want, rtol=1e-5)


def test_triplet_hinge_matches_numpy():
  pairs = [max(0.0, NEG_S[i, j] - POS[i] + 0.3) for i in range(B) for j in range(N) if MASK[i, j]]
  np.testing.assert_allclose(triplet_hinge(POS, NEG_S, MASK, margin=0.3), np.mean(pairs),
                             rtol=1e-5)
  # A margin met everywhere gives exactly zero loss and zero gradient.
  far = triplet_hinge(np.full(B, 5.0, np.float32), NEG_S, MASK, margin=0.3)
  assert float(far) == 0.0


def test_triplet_log_matches_numpy():
  pairs = [_softplus(2.0 * (NEG_S[i, j] - POS[i])) for i in range(B) for j in range(N)
           if MASK[i, j]]
  np.testing.assert_allclose(triplet_log(POS, NEG_S, MASK, scale=2.0), np.mean(pairs),
                             rtol=1e-5)


def _np_in_batch(logits, item, log_q):
  """Yi et al. 2019 eq. 3 by loops: row i's softmax over columns j with item_j != item_i
  (plus its own column i), logits corrected by log Q of the column's item."""
  total = 0.0
  for i in range(len(item)):
    cols = [j for j in range(len(item)) if j == i or item[j] != item[i]]
    z = np.array([logits[i, j] - log_q[j] for j in cols], np.float64)
    total += np.log(np.exp(z).sum()) - (logits[i, i] - log_q[i])
  return total / len(item)


def test_in_batch_softmax_log_q_and_false_negatives_match_numpy():
  item = np.array([3, 5, 3, 7, 5, 9], np.int32)            # items 3 and 5 repeat in the batch
  logits = RNG.normal(size=(6, 6)).astype(np.float32) * 2
  lq = np.log(np.array([0.3, 0.2, 0.3, 0.05, 0.2, 0.01], np.float32))
  np.testing.assert_allclose(in_batch_softmax(logits, item, lq),
                             _np_in_batch(logits, item, lq), rtol=1e-5)
  np.testing.assert_allclose(in_batch_softmax(logits, item),
                             _np_in_batch(logits, item, np.zeros(6)), rtol=1e-5)


def test_false_negative_column_has_no_effect():
  # Row 0's positive (item 3) also sits in column 2: changing that logit must change nothing
  # for row 0, and the loss must differ from the unmasked softmax.
  item = np.array([3, 5, 3, 7], np.int32)
  logits = RNG.normal(size=(4, 4)).astype(np.float32)
  per_row = jax.jit(jax.grad(lambda x: in_batch_softmax(x, item)))(logits)
  assert float(per_row[0, 2]) == 0.0 and float(per_row[2, 0]) == 0.0
  assert float(per_row[0, 1]) > 0.0
  np.testing.assert_array_equal(L.in_batch_mask(item)[0], [False, True, False, True])


def test_log_q_with_uniform_sampler_is_plain_in_batch_softmax():
  item = np.arange(1, 9, dtype=np.int32)
  logits = RNG.normal(size=(8, 8)).astype(np.float32)
  lq_all = NEG.log_q(np.array([0] + [7] * 20), batch_size=8)          # uniform counts
  assert np.ptp(lq_all[1:]) == 0.0
  np.testing.assert_allclose(in_batch_softmax(logits, item, lq_all[item]),
                             in_batch_softmax(logits, item), rtol=1e-6, atol=1e-6)
  # With mixed catalogue negatives from a uniform count^0.75 sampler too.
  lq_mix = NEG.log_q(np.array([0] + [7] * 20), batch_size=8, num_catalogue=5)
  cat = np.array([2, 11, 4, 19, 20], np.int32)
  extra = RNG.normal(size=(8, 5)).astype(np.float32)
  emask = cat[None, :] != item[:, None]
  np.testing.assert_allclose(
      in_batch_softmax(logits, item, lq_mix[item], extra, emask, lq_mix[cat]),
      in_batch_softmax(logits, item, None, extra, emask, None), rtol=1e-6, atol=1e-6)


def test_sampled_softmax_with_extra_columns_matches_numpy():
  item = np.array([1, 2, 3], np.int32)
  logits = RNG.normal(size=(3, 3)).astype(np.float32)
  extra = RNG.normal(size=(3, 2)).astype(np.float32)
  emask = np.array([[1, 0], [1, 1], [0, 1]], bool)
  lq, elq = np.array([-1.0, -2.0, -0.5], np.float32), np.array([-3.0, -0.1], np.float32)
  want = 0.0
  for i in range(3):
    z = [logits[i, j] - lq[j] for j in range(3)] + [extra[i, e] - elq[e] for e in range(2)
                                                     if emask[i, e]]
    want += np.log(np.exp(z).sum()) - (logits[i, i] - lq[i])
  np.testing.assert_allclose(in_batch_softmax(logits, item, lq, extra, emask, elq), want / 3,
                             rtol=1e-5)


@pytest.mark.parametrize('loss', ['bce', 'hinge', 'log'])
def test_gradients_push_positive_up_and_negatives_down(loss):
  fn = jax.jit({'bce': L.pointwise_bce, 'hinge': lambda p, n, m: L.triplet_hinge(p, n, m, 10.0),
                'log': L.triplet_log}[loss])
  gp, gn = jax.jit(jax.grad(fn, argnums=(0, 1)))(POS, NEG_S, MASK)
  assert (np.asarray(gp) < 0).all()                    # raising a positive lowers the loss
  assert (np.asarray(gn)[MASK] > 0).all() and (np.asarray(gn)[~MASK] == 0).all()
  # Central finite differences agree with autodiff.
  eps, d = 1e-2, np.zeros(B, np.float32)
  d[1] = eps
  fd = (fn(POS + d, NEG_S, MASK) - fn(POS - d, NEG_S, MASK)) / (2 * eps)
  np.testing.assert_allclose(fd, gp[1], rtol=2e-2, atol=1e-4)


def test_softmax_gradient_is_softmax_minus_onehot():
  item = np.array([1, 2, 3], np.int32)
  logits = RNG.normal(size=(3, 3)).astype(np.float32)
  g = np.asarray(jax.jit(jax.grad(lambda x: in_batch_softmax(x, item)))(logits))
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  np.testing.assert_allclose(g, (p - np.eye(3)) / 3, rtol=1e-5, atol=1e-7)


def test_catalogue_sampler_frequencies_follow_count_power():
  count = np.array([50, 1, 4, 16, 81, 0, 256])            # item 0 (padding) and item 5 unseen
  p = NEG.catalogue_probs(count, 0.75)
  want = np.array([0, 1, 4 ** .75, 16 ** .75, 81 ** .75, 0, 256 ** .75])
  np.testing.assert_allclose(p, want / want.sum())
  draws = NEG.CatalogueSampler(count, 0.75).sample(np.random.default_rng(0), (40000,))
  obs = np.bincount(draws, minlength=len(count))
  assert obs[0] == 0 and obs[5] == 0
  real = p > 0
  chi2 = (((obs[real] - 40000 * p[real]) ** 2) / (40000 * p[real])).sum()
  assert chi2 < stats.chi2.ppf(1 - 1e-4, real.sum() - 1), (obs, 40000 * p)


def test_log_q_mixture_and_hard_mask():
  count = np.array([9, 2, 6, 0])
  lq = NEG.log_q(count, batch_size=4, num_catalogue=2, power=0.75)
  pc = NEG.catalogue_probs(count, 0.75)
  np.testing.assert_allclose(np.exp(lq[1:3]), 4 * count[1:3] / 8 + 2 * pc[1:3], rtol=1e-6)
  hard = np.array([[2, 0, 5], [7, 7, 1]], np.int32)
  pos = np.array([5, 3], np.int32)
  rng = np.random.default_rng(1)
  np.testing.assert_array_equal(NEG.hard_mask(rng, hard, pos, 1.0),
                                [[True, False, False], [True, True, True]])
  assert not NEG.hard_mask(rng, hard, pos, 0.0).any()
  kept = NEG.hard_mask(rng, np.ones((2000, 5), np.int32), np.zeros(2000, np.int32), 0.3)
  assert abs(kept.mean() - 0.3) < 0.02                       # 10000 slots: std 0.0046
  with pytest.raises(ValueError, match='negative entry at item 2'):
    NEG.catalogue_probs(np.array([0, 1, -1]))
