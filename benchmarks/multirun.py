"""Many runs as one program vs one after another: wall time as a user waits for it.

  python -m benchmarks.multirun                          # both cases, as in docs/multirun.md
  python -m benchmarks.multirun --cases=din_synthetic --runs=3 --num_steps=50   # smoke run
  python -m benchmarks.multirun --cases=din_synthetic --override=data.pack_history=False  # padded
  python -m benchmarks.multirun --cases=din_synthetic --capacities   # packed shapes, no training

Per case, in this one process: the S runs as one group (`config.train.run_seeds` = 0..S-1, one
`train_and_evaluate` call) and then the same S runs one after another (S calls, seed s each),
each timed from the config to the returned summaries: dataset set-up, tracing, compilation,
training, evaluations, checkpoints and the final valid/test report all included. As in the
studies (sweep.run_study), XLA's persistent compilation cache is on (a fresh directory per
invocation), so the sequential runs after the first reuse its compilation, as a study's
next seed does. The group runs first, so it pays the process's one-time warm-up.

Cases (the runs share one dataset; only the seed - init, batch order, dropout - differs):
  mmoe_synthetic  the MMoE study's cell (experiments/mmoe_synthetic.py): mmoe, correlation 0.5,
                  data seed 0, its 30 epochs of 10k rows (1170 steps); S = 100; test mean MSE
  din_synthetic   din_table's synthetic protocol (experiments/din_table.py), DIN with Dice; S = 5;
                  test AUC

Prints one JSON line per case: case, runs, sequential_s, grouped_s, speedup,
max_abs_test_<metric>_diff (largest |group - sequential| over the runs), plus the device, the
1-minute load average before and after, the steps per run and the training-loop seconds of
each side (summaries' train_seconds). Training output goes to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time

CASES = ('mmoe_synthetic', 'din_synthetic')


def case_setup(case: str) -> tuple[str, dict, int, str]:
  """(config spec, overrides, default runs, test metric) of a case, from the study's cells."""
  if case == 'mmoe_synthetic':
    from experiments import mmoe_synthetic  # pylint: disable=g-import-not-at-top
    cell = next(c for c in mmoe_synthetic.make_cells(1, full=False)
                if c.group == {'correlation': 0.5, 'model': 'mmoe'})
    return mmoe_synthetic.CONFIG, dict(cell.overrides), 100, 'eval/test/mean/mse'
  if case == 'din_synthetic':
    from experiments import din_table  # pylint: disable=g-import-not-at-top
    cell = next(c for c in din_table.make_cells('synthetic', 1, False)
                if c.group == {'model': 'DIN with Dice'})
    return 'seqrec_jax/configs/din.py:synthetic', dict(cell.overrides), 5, 'eval/test/auc'
  raise ValueError(f'--cases: unknown case {case!r}; choose from {CASES}')


def _timed(fn, *args):
  t0 = time.perf_counter()
  with contextlib.redirect_stdout(sys.stderr):      # train_and_evaluate prints its summary
    out = fn(*args)
  return out, time.perf_counter() - t0


def run_case(case: str, runs: int, num_steps: int, workdir: str, extra=None) -> dict:
  """extra: --override 'key=value' strings (or a {key: value} mapping), typed by the case's
  config (seqrec_jax.configs.parse_overrides, the parser every study uses)."""
  from seqrec_jax.configs import load_config, parse_overrides  # pylint: disable=g-import-not-at-top
  from seqrec_jax.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  spec, overrides, default_runs, metric = case_setup(case)
  extra = parse_overrides(extra or {}, load_config(spec))
  runs = runs if runs > 0 else default_runs
  overrides.update({'train.progress': False, **(extra or {})})
  if num_steps > 0:
    overrides.update({'train.num_steps': num_steps, 'train.eval_every': max(num_steps // 4, 1),
                      'train.log_every': max(num_steps // 4, 1)})
  load_before = os.getloadavg()[0]
  group_cfg = load_config(spec, dict(overrides, seed=0, **{'train.run_seeds': tuple(range(runs))}))
  group, grouped_s = _timed(train_and_evaluate, group_cfg, os.path.join(workdir, case, 'group'))
  sequential, sequential_s = [], 0.0
  for s in range(runs):
    summary, sec = _timed(train_and_evaluate, load_config(spec, dict(overrides, seed=s)),
                          os.path.join(workdir, case, f'seed{s}'))
    sequential.append(summary)
    sequential_s += sec
  per_run = group['runs']
  assert [r['seed'] for r in per_run] == list(range(runs)), [r['seed'] for r in per_run]
  diff = max(abs(g[metric] - s[metric]) for g, s in zip(per_run, sequential))
  name = 'max_abs_test_' + metric.rsplit('/', 1)[-1] + '_diff'
  return {'case': case, 'runs': runs, 'sequential_s': round(sequential_s, 1),
          'grouped_s': round(grouped_s, 1), 'speedup': round(sequential_s / grouped_s, 2),
          name: float(f'{diff:.3g}'), 'steps': per_run[0]['steps'], 'set': extra or {},
          # Training-loop time only (no set-up, compile, evals, checkpoints): the part that
          # grouping cannot shrink where one run already keeps the cores busy.
          'sequential_train_s': round(sum(s['train_seconds'] for s in sequential), 1),
          'grouped_train_s': round(per_run[0]['train_seconds'], 1),
          'device': f'{jax.devices()[0].platform}:{jax.devices()[0].device_kind}'
                    f' x{jax.device_count()}, {os.cpu_count()} cpus',
          'load1_before': round(load_before, 2), 'load1_after': round(os.getloadavg()[0], 2),
          'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
          'python': platform.python_version()}


def capacities(case: str, runs: int, num_steps: int) -> dict:
  """How often each packed capacity C (data/packing.py) occurs over the case's train steps:
  the group's (one C per step for its S runs) and each single run's; 'padded' = a batch
  left padded (pack_max_fill)."""
  import collections  # pylint: disable=g-import-not-at-top
  from seqrec_jax import platform_defaults, train  # pylint: disable=g-import-not-at-top
  from seqrec_jax.configs import load_config  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data import load_dataset, packing  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data.pipeline import train_batches  # pylint: disable=g-import-not-at-top
  spec, overrides, default_runs, _ = case_setup(case)
  runs = runs if runs > 0 else default_runs
  cfg = platform_defaults.resolve(load_config(spec, overrides))
  split = load_dataset(cfg.data).splits['train']
  steps = num_steps if num_steps > 0 else train.num_train_steps(cfg, len(split))
  kw = {'buckets': cfg.data.pack_buckets, 'max_fill': cfg.data.pack_max_fill}
  cap = lambda b: b[packing.INDEX_KEY].shape[-1] if packing.INDEX_KEY in b else 'padded'
  group, single = collections.Counter(), [collections.Counter() for _ in range(runs)]
  for b in train_batches(split, cfg.data.batch_size, list(range(runs)), 0, steps, prefetch=0):
    group[cap(packing.add_group_history_index(b, **kw))] += 1
    for s in range(runs):
      single[s][cap(packing.add_history_index({k: v[s] for k, v in b.items()}, **kw))] += 1
  hist = lambda c: {str(k): v for k, v in sorted(c.items(), key=str)}
  return {'case': case, 'runs': runs, 'steps': steps, 'batch_size': cfg.data.batch_size,
          'hist_mask': list(b['hist_mask'].shape[1:]), **kw,
          'group_capacities': hist(group), 'single_capacities': [hist(c) for c in single]}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--cases', default=','.join(CASES), help=f'comma list of {CASES}')
  ap.add_argument('--runs', type=int, default=0, help='S (default: the case\'s own, 100 / 5)')
  ap.add_argument('--num_steps', type=int, default=-1,
                  help='> 0: train steps per run (default: the study\'s own protocol)')
  ap.add_argument('--override', '--set', dest='override', action='append', default=[],
                  metavar='KEY=VALUE', help='config override for both sides, repeatable, typed '
                  'by the config field it sets (seqrec_jax.configs.parse_overrides), e.g. '
                  '--override=data.pack_history=False (--set: the old name)')
  ap.add_argument('--workdir', default='', help='checkpoints and metrics (default: a temp dir)')
  ap.add_argument('--capacities', action='store_true', help='only count the packed capacities '
                  'of the group and of each single run over the train steps (no training)')
  args = ap.parse_args(sys.argv[1:] if argv is None else argv)
  from seqrec_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  xla_cpu.apply_defaults()  # CPU runtime defaults, as seqrec_jax.main (before any JAX work)
  if args.capacities:
    for case in (c for c in args.cases.split(',') if c):
      print(json.dumps(capacities(case, args.runs, args.num_steps)), flush=True)
    return
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)      # orbax logs every checkpoint write at INFO
  from seqrec_jax.configs import load_config, parse_overrides  # pylint: disable=g-import-not-at-top
  cases = [c for c in args.cases.split(',') if c]
  for case in cases:               # every override checked against every case before training
    try:
      parse_overrides(args.override, load_config(case_setup(case)[0]))
    except (KeyError, ValueError) as e:
      raise SystemExit(f'{case}: {e}') from None
  with tempfile.TemporaryDirectory() as tmp:
    workdir = args.workdir or tmp
    from experiments import sweep  # pylint: disable=g-import-not-at-top
    sweep.use_compilation_cache(os.path.join(tmp, 'cache'))
    for case in cases:
      print(json.dumps(run_case(case, args.runs, args.num_steps, workdir, args.override)),
            flush=True)


if __name__ == '__main__':
  main()
