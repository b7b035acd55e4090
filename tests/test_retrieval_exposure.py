"""Exposure Bloom filter: sizing, no false negatives, measured false-positive rate, expiry."""
import math

import numpy as np
import pytest

from seqrec_jax.retrieval.exposure import BloomFilter, bloom_size, filter_exposed


def test_bloom_size_matches_the_textbook_optimum():
  m, k = bloom_size(1000, 0.01)
  assert m == math.ceil(-1000 * math.log(0.01) / math.log(2) ** 2) == 9586 and k == 7
  with pytest.raises(ValueError, match='fp_rate=1.5'):
    bloom_size(10, 1.5)


def _unique_pairs(rng, n, lo=0):
  keys = rng.choice(1 << 40, size=n, replace=False) + (lo << 41)
  return keys >> 20, keys & ((1 << 20) - 1)         # user, item


@pytest.mark.parametrize('fp_rate', [0.01, 0.05])
def test_no_false_negatives_and_false_positive_rate(fp_rate):
  rng = np.random.default_rng(0)
  n = 20_000
  bf = BloomFilter(n, fp_rate)
  user, item = _unique_pairs(rng, n)
  bf.add(user, item)
  assert bf.contains(user, item).all()                        # no false negatives, ever
  pu, pi = _unique_pairs(rng, 100_000, lo=1)                  # disjoint from the added keys
  measured = bf.contains(pu, pi).mean()
  # Binomial sd at 1e5 probes is <= 7e-4; the m, k rounding moves the rate by a few percent.
  assert abs(measured - fp_rate) < 0.15 * fp_rate + 3 * math.sqrt(fp_rate / 1e5), measured


def test_window_false_positive_rate_with_all_generations_full():
  rng = np.random.default_rng(1)
  bf = BloomFilter(8_000, 0.02, window=4.0, generations=4)
  for t in range(5):                                          # 5 live buckets of 2000 each
    user, item = _unique_pairs(rng, 2_000, lo=t + 2)
    bf.add(user, item, t)
    assert bf.contains(user, item, 4.5).all()
  pu, pi = _unique_pairs(rng, 100_000, lo=1)
  measured = bf.contains(pu, pi, 4.5).mean()
  assert abs(measured - 0.02) < 0.15 * 0.02 + 3 * math.sqrt(0.02 / 1e5), measured


def test_expiry_after_the_window():
  bf = BloomFilter(100, 0.001, window=10.0, generations=2)    # span 5
  bf.add([1, 2], [7, 8], t=3.0)
  for t in (3.0, 9.9, 12.9):                                  # t < 3 + window: always found
    assert bf.contains([1, 2], [7, 8], t).all(), t
  assert not bf.contains([1, 2], [7, 8], 3.0 + 10 + 5).any()  # t >= t0 + window + span: gone
  bf.add([3], [9], t=[20.0])
  bf.add([4], [9], t=[1.0])                                   # older than the window: dropped
  assert bf.contains([3, 4], [9, 9], 20.0).tolist() == [True, False]
  # per-element times and broadcasting
  assert bf.contains(np.array([[3], [4]]), np.array([[9, 8]]), np.array([[20.0], [20.0]])
                     ).tolist() == [[True, False], [False, False]]


def test_filter_exposed_keeps_order_and_pads():
  bf = BloomFilter(100, 1e-6)
  bf.add([1, 1, 2], [5, 7, 6])
  ids = np.array([[5, 6, 7, 8], [5, 6, 0, 9]], np.int32)
  out = filter_exposed(ids, np.array([1, 2]), bf)
  assert out.tolist() == [[6, 8, 0, 0], [5, 9, 0, 0]] and out.dtype == np.int32
