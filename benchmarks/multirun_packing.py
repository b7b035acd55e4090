"""Steady-state train-step time of a multi-run group against its single run, per case of
benchmarks/multirun.py: one run packed (the CPU default), one run padded, and a group of S runs
(packed like single runs, the platform default; --override=data.pack_history=False: the group
padded). The programs step in interleaved rounds, so all see the same
machine load; prints one JSON line per case with the median ms per run-step, wall clock and
this process's CPU time (user + system, all threads), and the 1-minute load average.

  python -m benchmarks.multirun_packing --cases=din_synthetic --runs=5
  python -m benchmarks.multirun_packing --cases=mmoe_synthetic --runs=100 --steps=5
  python -m benchmarks.multirun_packing --override=train.run_chunk=1   # a key of the group step
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from benchmarks.multirun import CASES, case_setup
from seqrec_jax import platform_defaults, train, xla_cpu
from seqrec_jax.configs import load_config, parse_overrides


def _program(spec, overrides, runs, pack, warm):
  cfg = load_config(spec, dict(overrides, **{'train.runs': runs}))
  if pack is not None:
    cfg.data.pack_history = pack
  prog = train.build_program(platform_defaults.resolve(cfg))
  state, it = prog.init(), prog.batches(0)
  active = np.ones(prog.num_runs, bool)
  for _ in range(warm):          # compiles (each packed bucket shape seen so far)
    state, m = prog.train(state, next(it), active)
  jax.block_until_ready(m['loss'])
  return {'prog': prog, 'state': state, 'it': it, 'active': active, 'wall': [], 'cpu': []}


def run_case(case: str, runs: int, warm: int, steps: int, rounds: int, extra=()) -> dict:
  spec, overrides, default_runs, _ = case_setup(case)
  extra = parse_overrides(list(extra), load_config(spec))
  overrides.update(extra)
  runs = runs if runs > 0 else default_runs
  progs = {'single_packed': _program(spec, overrides, 1, True, warm),
           'single_padded': _program(spec, overrides, 1, False, warm),
           f'group{runs}': _program(spec, overrides, runs, None, warm)}
  load = os.getloadavg()[0]
  for _ in range(rounds):
    for p in progs.values():
      n = p['prog'].num_runs
      batches = [next(p['it']) for _ in range(steps)]
      t, c = time.perf_counter(), time.process_time()
      for b in batches:
        p['state'], m = p['prog'].train(p['state'], b, p['active'])
      jax.block_until_ready(m['loss'])
      p['wall'].append((time.perf_counter() - t) / steps / n * 1e3)
      p['cpu'].append((time.process_time() - c) / steps / n * 1e3)
  out = {'case': case, 'runs': runs, 'set': extra}
  for name, p in progs.items():
    out[f'{name}_ms_per_run_step'] = round(float(np.median(p['wall'])), 2)
    out[f'{name}_cpu_ms_per_run_step'] = round(float(np.median(p['cpu'])), 2)
  g = f'group{runs}'
  for kind in ('', 'cpu_'):
    out[f'group_over_single_packed_{kind}ratio'] = round(
        out[f'{g}_{kind}ms_per_run_step'] / out[f'single_packed_{kind}ms_per_run_step'], 2)
  out.update(load1_before=round(load, 2), load1_after=round(os.getloadavg()[0], 2),
             date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--cases', default='din_synthetic', help=f'comma list of {CASES}')
  ap.add_argument('--runs', type=int, default=0, help='S (default: the case\'s own, 100 / 5)')
  ap.add_argument('--warm', type=int, default=20, help='untimed steps per program first')
  ap.add_argument('--steps', type=int, default=10, help='steps per program per round')
  ap.add_argument('--rounds', type=int, default=5, help='interleaved rounds (median reported)')
  ap.add_argument('--override', action='append', default=[], metavar='KEY=VALUE',
                  help='config override for every program, repeatable')
  args = ap.parse_args()
  xla_cpu.apply_defaults()  # CPU runtime defaults, as seqrec_jax.main (before any JAX work)
  for case in (c for c in args.cases.split(',') if c):
    print(json.dumps(run_case(case, args.runs, args.warm, args.steps, args.rounds,
                              args.override)), flush=True)


if __name__ == '__main__':
  main()
