"""Latency of one request (one user x N candidates): the full ranker (DIN) against the three-tower
pre-ranker's serving path (user tower once, item vectors from a cache, cross tower + heads per
candidate), both jitted, same request, interleaved repetitions.

  python -m benchmarks.prerank_latency --candidates=500 --reps=100

Prints p50 / p90 milliseconds per request and the 1-minute load average around the timing.
The item cache is built once beforehand (offline in practice) and is not timed.
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from seqrec_jax import models, xla_cpu
from seqrec_jax.configs import default
from seqrec_jax.data.features import DataSpec


def request(spec: DataSpec, n: int, seed: int = 0):
  """One user (history of spec.max_len real behaviours) x n candidates."""
  rng = np.random.default_rng(seed)
  hist = rng.integers(1, spec.num_items, (1, spec.max_len)).astype(np.int32)
  return {'user_id': np.ones(n, np.int32), 'target_item': rng.integers(1, spec.num_items, n,
                                                                       dtype=np.int32),
          'target_cate': rng.integers(1, spec.num_cates, n, dtype=np.int32),
          'hist_items': np.repeat(hist, n, 0), 'hist_cates': np.repeat(hist % spec.num_cates, n, 0),
          'hist_mask': np.ones((n, spec.max_len), bool)}


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--candidates', type=int, default=500)
  ap.add_argument('--reps', type=int, default=100)
  ap.add_argument('--seq_len', type=int, default=50)
  args = ap.parse_args()
  xla_cpu.apply_defaults()
  spec = DataSpec(num_users=1000, num_items=100_000, num_cates=1000, max_len=args.seq_len)
  batch = request(spec, args.candidates)
  cfg = default.get_config().model
  din = models.build_model(cfg, spec)
  cfg.name = 'prerank'
  pre = models.build_model(cfg, spec)
  v_din = din.init(jax.random.key(0), batch)
  v_pre = pre.init(jax.random.key(0), batch)
  din_fn = jax.jit(lambda v, b: din.apply(v, b, train=False))
  cache = jax.jit(lambda v, i, c: pre.apply(v, i, c, method=pre.item_vectors))(
      v_pre, np.arange(spec.num_items, dtype=np.int32),
      (np.arange(spec.num_items) % spec.num_cates).astype(np.int32))
  cache.block_until_ready()

  @jax.jit
  def pre_fn(v, b, cache):
    u = pre.apply(v, b, method=pre.serve_user)
    return pre.apply(v, u, cache[b['target_item']], b, method=pre.score)

  fns = {'din (full ranker)': lambda: din_fn(v_din, batch),
         'prerank (serving path)': lambda: pre_fn(v_pre, batch, cache)}
  times = {k: [] for k in fns}
  for f in fns.values():
    f().block_until_ready()                       # compile
  load0 = os.getloadavg()[0]
  for _ in range(args.reps):
    for k, f in fns.items():
      t = time.perf_counter()
      f().block_until_ready()
      times[k].append(1e3 * (time.perf_counter() - t))
  load1 = os.getloadavg()[0]
  print(f'one request: 1 user x {args.candidates} candidates, history L={args.seq_len}, '
        f'{args.reps} reps interleaved; load average {load0:.1f} -> {load1:.1f} '
        f'on {os.cpu_count()} cores')
  print('| model | p50 ms | p90 ms |\n|---|---|---|')
  for k, ts in times.items():
    print(f'| {k} | {np.percentile(ts, 50):.2f} | {np.percentile(ts, 90):.2f} |')


if __name__ == '__main__':
  main()
