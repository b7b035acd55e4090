"""Bucketing: a stable, uniform hash; orthogonal layers; exclusive experiments; holdback;
SRM and the Welch read-out on simulated users."""
import numpy as np
import pytest

from seqrec_jax import bucketing as bk

IDS = np.arange(1, 100_001)


def test_hash_is_deterministic_and_stable():
  a = bk.hash64(IDS[:1000], 'layer_a')
  assert (a == bk.hash64(IDS[:1000].astype(np.int32), 'layer_a')).all()
  assert (a != bk.hash64(IDS[:1000], 'layer_b')).mean() > 0.99
  # Pinned values: a change of hash would silently reshuffle every running experiment.
  assert bk.buckets([1, 2, 3], 'layer_a', 1000).tolist() == PINNED_INT
  assert bk.buckets(np.array(['u1', 'u2', 'u3']), 'layer_a', 1000).tolist() == PINNED_STR
  assert bk.splitmix64(np.array([0], np.uint64))[0] == np.uint64(0xE220A8397B1DCDAF)


PINNED_INT = [40, 876, 267]
PINNED_STR = [304, 446, 305]


def test_uniformity_passes_for_the_hash_and_fails_for_a_biased_one():
  b = bk.buckets(IDS, 'layer_a', 1000)
  assert bk.uniformity_test(b, 1000)[1] > 0.01
  s = bk.buckets(IDS.astype(str), 'layer_a', 100)
  assert bk.uniformity_test(s, 100)[1] > 0.01
  # ids handed out in steps of 4 (say, by sharded counters) with a plain id % B: only every
  # fourth bucket is ever used.
  ids4 = IDS * 4
  assert bk.uniformity_test(ids4 % 1000, 1000)[1] < 1e-6
  assert bk.uniformity_test(bk.buckets(ids4, 'layer_a', 1000), 1000)[1] > 0.01


def test_layers_are_independent_unless_they_share_a_salt():
  a, b = bk.buckets(IDS, 'ranking', 1000), bk.buckets(IDS, 'rerank', 1000)
  assert bk.independence_test(a, b, 1000)[1] > 0.01
  assert bk.independence_test(a, bk.buckets(IDS, 'ranking', 1000), 1000)[1] < 1e-6
  # Users of one experiment in layer A spread over layer B as everyone does.
  la = bk.Layer('ranking', experiments={'x': (0, 100)})
  lb = bk.Layer('rerank', experiments={'c': (0, 500), 't': (500, 1000)})
  in_x = la.assign(IDS) == 0
  share_t = (lb.assign(IDS[in_x]) == 1).mean()
  assert abs(share_t - 0.5) < 0.02
  with pytest.raises(ValueError, match='share the salt'):
    bk.layers_named([la, bk.Layer('ranking')])


def test_experiments_are_exclusive_and_the_holdback_is_in_none():
  layer = bk.Layer('rerank', 1000, {'control': (0, 100), 'mmr': (100, 200), 'dpp': (200, 300)},
                   holdback=(900, 1000))
  arm = layer.assign(IDS)
  b = layer.buckets(IDS)
  hold = layer.in_holdback(IDS)
  assert set(np.unique(arm)) == {-1, 0, 1, 2}
  assert ((arm >= 0) == (b < 300)).all()                   # each user in at most one
  assert (arm[hold] == -1).all() and abs(hold.mean() - 0.1) < 0.005
  for k, name in enumerate(layer.names):
    assert abs((arm == k).mean() - layer.share(name)) < 0.005
  with pytest.raises(ValueError, match='overlap'):
    bk.Layer('x', 100, {'a': (0, 50), 'b': (40, 60)})
  with pytest.raises(ValueError, match='overlap'):
    bk.Layer('x', 100, {'a': (0, 50)}, holdback=(45, 55))
  with pytest.raises(ValueError, match=r'b=\[90, 101\)'):
    bk.Layer('x', 100, {'b': (90, 101)})


def test_srm_detects_51_49_and_accepts_50_50():
  assert bk.srm_test([51_000, 49_000], [1, 1])[1] < 1e-6
  assert bk.srm_test([50_000, 50_000], [1, 1])[1] == pytest.approx(1.0)
  assert bk.srm_test([50_100, 49_900], [1, 1])[1] > 0.01    # noise of a fair split
  # Hash-assigned 50/50 arms pass; dropping 4% of treatment users (a logging bug) fails.
  layer = bk.Layer('ab', 1000, {'c': (0, 500), 't': (500, 1000)})
  arm = layer.assign(IDS)
  counts = np.array([(arm == 0).sum(), (arm == 1).sum()])
  assert bk.srm_test(counts, [0.5, 0.5])[1] > 0.01
  assert bk.srm_test(counts * [1, 0.96], [0.5, 0.5])[1] < 1e-6


def test_welch_interval_covers_a_known_effect_in_simulation():
  rng = np.random.default_rng(0)
  effect, hits, reps = 0.03, 0, 400
  for _ in range(reps):
    c = rng.binomial(1, 0.20, 3000)                          # clicks, unequal variances
    t = rng.binomial(1, 0.20 + effect, 2000)
    r = bk.welch_readout(t, c)
    hits += r['lo'] <= effect <= r['hi']
  assert 0.92 <= hits / reps <= 0.98
  r = bk.welch_readout(rng.normal(1.0, 1, 50_000), rng.normal(0.0, 2, 50_000))
  assert abs(r['diff'] - 1.0) < 4 * r['se'] and r['p'] < 1e-12 and r['hi'] - r['lo'] < 0.1
  assert r['hi'] - r['diff'] == pytest.approx(r['diff'] - r['lo'])


def test_ab_readout_on_bucketed_users():
  rng = np.random.default_rng(1)
  layer = bk.Layer('ab', 100, {'c': (0, 40), 't': (40, 80)}, holdback=(90, 100))
  arm = layer.assign(IDS)
  y = rng.normal(0.0, 1.0, len(IDS)) + 0.05 * (arm == 1)
  r = bk.ab_readout(layer, IDS, y, 'c', 't')
  assert r['lo'] < 0.05 < r['hi'] and r['srm_p'] > 0.01
  with pytest.raises(ValueError, match="'x' is not an experiment"):
    bk.ab_readout(layer, IDS, y, 'c', 'x')
