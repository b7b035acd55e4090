"""What each optimisation of the seqrec_jax DIN train step buys, measured side by side.

  python -m benchmarks.din_levers --seq_lens=50,200          # ~3 min on 2 idle cores

Variants run in one process with interleaved timing windows: `packed` (the default: packed
histories, data/packing.py, with the per-row first layer and the fused Dice of
layers/ops.py), `dice_autodiff` (packed, Dice by plain autodiff), and on padded [B, L]
histories the first attention layer as `ConcatDense.method` kernel (per-example kernel),
factorised, or reference (the materialised concatenation); the CPU runtime defaults of
seqrec_jax/xla_cpu.py are compared by
running `packed` in a second process with SEQREC_JAX_XLA_DEFAULTS=0, windows
alternating between the two processes. Reports examples/s (median over windows), examples
per CPU-second (less sensitive to other load on the machine) and XLA's FLOPs per example.
--serving: p50 latency of one user x N candidates with the history computed once (the
default) vs tiled to N rows, interleaved, in one process.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

from seqrec_jax import xla_cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _worker(seq_len: int, methods: list[str], activation: str):
  """Builds one jitted train step per method; then times windows on stdin commands."""
  import jax  # pylint: disable=g-import-not-at-top
  from benchmarks import data as bd  # pylint: disable=g-import-not-at-top
  from benchmarks.jax_din import reference_config  # pylint: disable=g-import-not-at-top
  from seqrec_jax import models, steps  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data.features import DataSpec  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data.packing import add_history_index  # pylint: disable=g-import-not-at-top
  from seqrec_jax.layers import activations as act  # pylint: disable=g-import-not-at-top
  from seqrec_jax.layers import attention as att  # pylint: disable=g-import-not-at-top
  from seqrec_jax.layers.activations import Dice  # pylint: disable=g-import-not-at-top
  from seqrec_jax.layers.attention_proj import ConcatDense  # pylint: disable=g-import-not-at-top
  from seqrec_jax.state import TrainState, make_optimizer  # pylint: disable=g-import-not-at-top
  spec = DataSpec(num_users=bd.NUM_USERS, num_items=bd.NUM_ITEMS, num_cates=bd.NUM_CATES,
                  max_len=seq_len)
  batches = bd.make_batches(seq_len)
  runs = {}
  for method in methods:
    # 'packed' = the default (packed histories, per-row first layer, fused Dice);
    # 'dice_autodiff' = packed with the textbook autodiff Dice; the ConcatDense methods run
    # on padded [B, L] histories.
    pack = method in ('packed', 'dice_autodiff')
    att.ConcatDense = functools.partial(ConcatDense, method='auto' if pack else method)
    act.Dice = functools.partial(Dice, fused=method != 'dice_autodiff')
    bs = [add_history_index(b) for b in batches] if pack else batches
    c = reference_config(activation)
    model = models.build_model(c.model, spec)
    st = TrainState.create(model.apply, model.init(jax.random.key(0), batches[0], train=False),
                           make_optimizer(c.optim, 100))
    f = jax.jit(functools.partial(steps.train_step, tasks=spec.tasks), donate_argnums=(0,))
    for b in bs:                                  # compile every packed shape
      st, m = f(st, b, jax.random.key(1))
    m['loss'].block_until_ready()
    flops = f.lower(st, bs[0], jax.random.key(1)).compile().cost_analysis()['flops']
    runs[method] = {'f': f, 'st': st, 'flops': flops / bd.BATCH, 'batches': bs}
  act.Dice = Dice
  att.ConcatDense = ConcatDense
  print(json.dumps({m: r['flops'] for m, r in runs.items()}), flush=True)
  for line in sys.stdin:
    method, n = json.loads(line)
    r = runs[method]
    t, c = time.perf_counter(), time.process_time()
    for i in range(n):
      r['st'], m = r['f'](r['st'], r['batches'][i % len(batches)], jax.random.key(1))
    m['loss'].block_until_ready()
    print(json.dumps([n * bd.BATCH / (time.perf_counter() - t),
                      n * bd.BATCH / (time.process_time() - c)]), flush=True)


def serving(seq_lens, candidates, reps: int = 20):
  """Prints p50 ms of CandidateScorer with shared vs tiled history."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from benchmarks.jax_din import JaxDin  # pylint: disable=g-import-not-at-top
  from benchmarks import data as bd  # pylint: disable=g-import-not-at-top
  from seqrec_jax.serving import CandidateScorer  # pylint: disable=g-import-not-at-top
  print('| L | N | history computed once (p50 ms) | history tiled (p50 ms) | speed-up |'
        ' load |\n|---:|---:|---:|---:|---:|---:|')
  for seq_len in seq_lens:
    sys_ = JaxDin(seq_len)
    sys_.train(2)
    v = sys_.state.variables
    for n in candidates:
      reqs = bd.make_requests(seq_len, n)
      sc = {s: CandidateScorer(sys_.model, v, shared_history=s) for s in (True, False)}
      lat = {True: [], False: []}
      for s in sc:
        np.asarray(sc[s](reqs[0]))
      for i in range(reps):
        for s in ((True, False) if i % 2 else (False, True)):
          t = time.perf_counter()
          jax.block_until_ready(sc[s](reqs[i % len(reqs)]))
          lat[s].append(1000 * (time.perf_counter() - t))
      a, b = np.median(lat[True]), np.median(lat[False])
      print(f'| {seq_len} | {n} | {a:.1f} | {b:.1f} | {b / a:.1f}x | {os.getloadavg()[0]:.1f} |',
            flush=True)


def main():
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument('--seq_lens', default='50,200')
  p.add_argument('--methods', default='packed,kernel,factorised,reference,dice_autodiff')
  p.add_argument('--activation', default='dice')
  p.add_argument('--windows', type=int, default=4)
  p.add_argument('--seconds', type=float, default=2.0, help='per timing window')
  p.add_argument('--serving', action='store_true', help='shared vs tiled history latency')
  p.add_argument('--candidates', default='100,1000')
  p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  p.add_argument('--seq_len', type=int, default=50, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.worker or args.serving:   # JAX runs here (not in the parent, whose env children copy)
    xla_cpu.apply_defaults()
  if args.worker:
    return _worker(args.seq_len, args.methods.split(','), args.activation)
  if args.serving:
    return serving(list(map(int, args.seq_lens.split(','))),
                   list(map(int, args.candidates.split(','))))
  rows = []
  for seq_len in map(int, args.seq_lens.split(',')):
    procs = {}
    for name, env, methods in [('defaults on', {}, args.methods),
                               ('defaults off', {'SEQREC_JAX_XLA_DEFAULTS': '0'}, 'packed')]:
      procs[name] = subprocess.Popen(
          [sys.executable, '-m', 'benchmarks.din_levers', '--worker', f'--seq_len={seq_len}',
           f'--methods={methods}', f'--activation={args.activation}'], cwd=ROOT,
          env={**os.environ, **env, 'PYTHONPATH': ROOT}, stdin=subprocess.PIPE,
          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    flops = {name: json.loads(pr.stdout.readline()) for name, pr in procs.items()}
    cells = [('defaults on', m) for m in args.methods.split(',')] + [('defaults off', 'packed')]
    res = {c: [] for c in cells}
    steps = {}
    for w in range(args.windows + 1):               # window 0 calibrates the step count
      for cell in (cells if w % 2 else cells[::-1]):
        pr = procs[cell[0]]
        n = steps.get(cell, 1)
        pr.stdin.write(json.dumps([cell[1], n]) + '\n')
        pr.stdin.flush()
        wall, cpu = json.loads(pr.stdout.readline())
        if w == 0:
          steps[cell] = max(1, round(args.seconds * wall / 1024))
        else:
          res[cell].append((wall, cpu))
    for pr in procs.values():
      pr.stdin.close()
      pr.wait()
    for cell in cells:
      rows.append({'L': seq_len, 'runtime defaults': cell[0], 'first layer': cell[1],
                   'examples/s': statistics.median(r[0] for r in res[cell]),
                   'examples/cpu-s': statistics.median(r[1] for r in res[cell]),
                   'XLA MFLOP/example': flops[cell[0]][cell[1]] / 1e6,
                   'load1': os.getloadavg()[0]})
  print('| L | first layer | runtime defaults | examples/s | examples/CPU-s | XLA MFLOP/ex |'
        ' load |\n|---:|---|---|---:|---:|---:|---:|')
  for r in rows:
    print(f'| {r["L"]} | {r["first layer"]} | {r["runtime defaults"]} | {r["examples/s"]:,.0f}'
          f' | {r["examples/cpu-s"]:,.0f} | {r["XLA MFLOP/example"]:.1f} | {r["load1"]:.1f} |')


if __name__ == '__main__':
  main()
