"""Packed histories vs a multi-run group: steady-state train-step seconds on
configs/din.py:synthetic (DIN, Dice, batch 512) for one run packed, one run padded, and a group
of S runs (groups always take the padded path). Prints one JSON line.

  python -m benchmarks.multirun_packing --runs=5
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from seqrec_jax import platform_defaults, train, xla_cpu
from seqrec_jax.configs import load_config

SPEC = 'seqrec_jax/configs/din.py:synthetic'


def seconds_per_step(cfg, warm: int, n: int) -> float:
  prog = train.build_program(platform_defaults.resolve(cfg))
  state, active, it = prog.init(), np.ones(prog.num_runs, bool), prog.batches(0)
  for _ in range(warm):          # compiles (each packed bucket shape seen so far)
    state, m = prog.train(state, next(it), active)
  jax.block_until_ready(m['loss'])
  t = time.time()
  for _ in range(n):
    state, m = prog.train(state, next(it), active)
  jax.block_until_ready(m['loss'])
  return (time.time() - t) / n


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--runs', type=int, default=5)
  ap.add_argument('--warm', type=int, default=40)
  ap.add_argument('--steps', type=int, default=60)
  args = ap.parse_args()
  xla_cpu.apply_defaults()  # CPU runtime defaults, as seqrec_jax.main (before any JAX work)
  out = {}
  for name, pack, runs in (('single_packed', True, 1), ('single_padded', False, 1),
                           (f'group{args.runs}_padded', False, args.runs)):
    cfg = load_config(SPEC)
    cfg.data.pack_history, cfg.train.runs = pack, runs
    out[f'{name}_s_per_step'] = round(seconds_per_step(cfg, args.warm, args.steps), 4)
  out['group_s_per_run_step'] = round(out[f'group{args.runs}_padded_s_per_step'] / args.runs, 4)
  print(json.dumps(out))


if __name__ == '__main__':
  main()
