"""Random batches in the batch contract, identical for every system (same seed -> same arrays).

Histories are right-aligned (newest at L-1) with lengths uniform in [1, L] (LENGTHS =
'uniform', the default) or all of length L (LENGTHS = 'full': no padding, set by
`--lengths=full`); ids are uniform over the vocabulary (id 0 only at padding). DeepCTR-style
peers get the same ids plus the lengths.
"""
from __future__ import annotations

import numpy as np

# Reference configuration of issue 10.
NUM_ITEMS, NUM_CATES, NUM_USERS = 100_000, 1_000, 10_000
EMBED_DIM, ATT_HIDDEN, HIDDEN, BATCH = 64, (80, 40), (200, 80), 1024
LENGTHS = 'uniform'          # or 'full' (benchmarks/worker.py --lengths)


def _lengths(rng, seq_len: int, n: int):
  if LENGTHS == 'full':
    return np.full(n, seq_len)
  if LENGTHS != 'uniform':
    raise ValueError(f"LENGTHS must be 'uniform' or 'full', got {LENGTHS!r}")
  return rng.integers(1, seq_len + 1, n)


def make_batches(seq_len: int, batch: int | None = None, count: int = 4, seed: int = 0):
  """`count` training batches: dicts of numpy arrays (label float32 [B]); B = batch or BATCH
  (read at call time: benchmarks/worker.py --batch sets BATCH)."""
  batch = batch or BATCH
  rng = np.random.default_rng([seed, seq_len, batch])
  out = []
  for _ in range(count):
    lens = _lengths(rng, seq_len, batch)
    mask = np.arange(seq_len)[None, :] >= (seq_len - lens)[:, None]
    out.append(dict(
        user_id=rng.integers(1, NUM_USERS, batch).astype(np.int32),
        target_item=rng.integers(1, NUM_ITEMS, batch).astype(np.int32),
        target_cate=rng.integers(1, NUM_CATES, batch).astype(np.int32),
        hist_items=(rng.integers(1, NUM_ITEMS, (batch, seq_len)) * mask).astype(np.int32),
        hist_cates=(rng.integers(1, NUM_CATES, (batch, seq_len)) * mask).astype(np.int32),
        hist_mask=mask,
        label=rng.integers(0, 2, batch).astype(np.float32)))
  return out


def make_requests(seq_len: int, num_candidates: int, count: int = 4, seed: int = 1):
  """`count` serving requests: one user's history [1, L] and N candidates [N]."""
  rng = np.random.default_rng([seed, seq_len, num_candidates])
  out = []
  for _ in range(count):
    n = int(_lengths(rng, seq_len, 1)[0])
    mask = np.arange(seq_len)[None, :] >= seq_len - n
    out.append(dict(
        user_id=np.array([rng.integers(1, NUM_USERS)], np.int32),
        hist_items=(rng.integers(1, NUM_ITEMS, (1, seq_len)) * mask).astype(np.int32),
        hist_cates=(rng.integers(1, NUM_CATES, (1, seq_len)) * mask).astype(np.int32),
        hist_mask=mask,
        target_item=rng.integers(1, NUM_ITEMS, num_candidates).astype(np.int32),
        target_cate=rng.integers(1, NUM_CATES, num_candidates).astype(np.int32)))
  return out


def tile_request(req):
  """A serving request as an ordinary batch: the history repeated for every candidate."""
  n = len(req['target_item'])
  out = dict(req)
  for k in ('user_id', 'hist_items', 'hist_cates', 'hist_mask'):
    out[k] = np.repeat(req[k], n, axis=0)
  return out
