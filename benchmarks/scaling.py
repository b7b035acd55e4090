"""Data-parallel scaling: training examples/s against device count and per-device batch.

Meant for real accelerators (8 GPUs, a TPU VM): every cell trains the same model on the first
n devices with global batch = n x per-device batch, so weak scaling (fixed per-device batch)
reads along a row group and the speed-up/efficiency columns compare with 1 device.

  python -m benchmarks.scaling                                  # all local devices, 1,2,4,..
  python -m benchmarks.scaling --device_counts=1,8 --per_device_batch=256,1024 --steps=50
  python -m benchmarks.scaling --cpu_devices=8                  # CPU smoke test (see below)
  python -m benchmarks.scaling --strategy=pmap --set model.embed_dim=64

--cpu_devices=N forces N host-platform CPU devices (XLA_FLAGS) that all share this machine's
cores: the numbers show the overhead of the sharded program, NOT a scaling measurement, and
the table says so. Timed per step: host batch -> global device arrays (host-to-device copy)
and the train step; the dataset read is outside the timing (batches are prepared first).
On CPU with several devices every step waits on its loss (docs/design.md: collectives otherwise
time out); elsewhere only the end of each timing window does. Several processes (e.g. via
benchmarks/multihost.sh or SLURM) measure only the full device count. Writes
<out>/scaling.{md,csv,json}.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time


def parse_args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--config', default='seqrec_jax/configs/din.py:synthetic')
  ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                  help='config override, e.g. --set data.synthetic.num_items=100000')
  ap.add_argument('--device_counts', default='', help="e.g. 1,2,4,8 (default: powers of 2)")
  ap.add_argument('--per_device_batch', default='64,256,1024')
  ap.add_argument('--strategy', default='jit', choices=('jit', 'pmap'))
  ap.add_argument('--model_axis', type=int, default=1, help='config.parallel.model')
  ap.add_argument('--steps', type=int, default=30, help='timed steps per cell')
  ap.add_argument('--warmup', type=int, default=5, help='untimed steps after compiling')
  ap.add_argument('--cpu_devices', type=int, default=0,
                  help='force N CPU host devices (smoke test, not a scaling measurement)')
  ap.add_argument('--out', default='runs/scaling')
  return ap.parse_args(argv)


def _value(s: str):
  try:
    return json.loads(s)
  except json.JSONDecodeError:
    return s


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.cpu_devices:
    os.environ['JAX_PLATFORMS'] = 'cpu'
    os.environ['XLA_FLAGS'] = (f'--xla_force_host_platform_device_count={args.cpu_devices} '
                               + os.environ.get('XLA_FLAGS', ''))
  from seqrec_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  xla_cpu.apply_defaults()  # CPU runtime defaults (CPU platforms only), as seqrec_jax.main
  # Imports after XLA_FLAGS: jax reads them once, when its backend starts.
  import functools  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  import numpy as np
  from seqrec_jax import distributed, models, parallel, steps
  from seqrec_jax.configs import load_config
  from seqrec_jax.data import load_dataset
  from seqrec_jax.data.pipeline import train_batches
  from seqrec_jax.state import TrainState, make_optimizer

  distributed.initialize('auto')
  overrides = dict(kv.split('=', 1) for kv in args.set)
  cfg = load_config(args.config, {k: _value(v) for k, v in overrides.items()})
  ds = load_dataset(cfg.data)
  model = models.build_model(cfg.model, ds.spec)
  tasks = ds.spec.tasks
  split = ds.splits['train']
  n_all, platform = jax.device_count(), jax.devices()[0].platform
  if jax.process_count() > 1:
    counts = [n_all]
  elif args.device_counts:
    counts = [int(x) for x in args.device_counts.split(',')]
  else:
    counts = [2 ** i for i in range(n_all.bit_length()) if 2 ** i <= n_all]
  per_dev = [int(x) for x in args.per_device_batch.split(',')]
  forced = platform == 'cpu' and (args.cpu_devices > 0 or 'force_host_platform_device_count'
                                  in os.environ.get('XLA_FLAGS', ''))
  pidx, pcount = jax.process_index(), jax.process_count()
  rows = []
  for n in counts:
    if n > n_all or n % args.model_axis:
      raise ValueError(f'--device_counts has {n}: have {n_all} devices, model axis '
                       f'{args.model_axis} must divide it')
    mesh = parallel.make_mesh(n // args.model_axis, args.model_axis,
                              devices=jax.devices()[:n])
    part = parallel.Partitioner(_parallel_cfg(args), mesh)
    for b in per_dev:
      gb = b * mesh.shape['data']
      if gb > len(split):
        print(f'skip n={n} b={b}: global batch {gb} > {len(split)} training rows',
              file=sys.stderr)
        continue
      part.check_batch_size(gb)
      tx = make_optimizer(cfg.optim, args.steps + args.warmup + 1)

      def init_fn(key, _tx=tx):
        dummy = {k: jnp.zeros((2,) + v.shape[1:], v.dtype)
                 for k, v in split.__getitems__(np.arange(1)).items()}
        return TrainState.create(model.apply, model.init(
            {'params': key, 'dropout': key}, dummy, train=False), _tx)

      state_sh = part.state_shardings(jax.eval_shape(init_fn, jax.random.key(0)))
      state = jax.jit(init_fn, out_shardings=state_sh)(jax.random.key(cfg.seed))
      p_train = part.compile_train(functools.partial(steps.train_step, tasks=tasks), state_sh)
      n_steps = len(split) // gb
      host = list(train_batches(split, gb, cfg.seed, 0, min(4, n_steps), pidx, pcount,
                                prefetch=0))
      sync = platform == 'cpu' and n > 1
      rng = jax.random.key(1)
      t0 = time.perf_counter()
      state, m = p_train(state, part.train_batch(host[0]), rng)
      m['loss'].block_until_ready()
      compile_s = time.perf_counter() - t0
      times = []
      for phase, count in (('warmup', args.warmup), ('timed', args.steps)):
        t0 = time.perf_counter()
        for i in range(count):
          state, m = p_train(state, part.train_batch(host[i % len(host)]), rng)
          if sync:
            m['loss'].block_until_ready()
        m['loss'].block_until_ready()
        if phase == 'timed':
          times.append(time.perf_counter() - t0)
      sec = times[0]
      rows.append({'devices': n, 'data': mesh.shape['data'], 'model': args.model_axis,
                   'per_device_batch': b, 'global_batch': gb,
                   'examples_per_sec': round(gb * args.steps / sec, 1),
                   'step_ms': round(1e3 * sec / args.steps, 2),
                   'compile_s': round(compile_s, 2), 'loss': round(float(m['loss']), 4)})
      print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
      del state
  base = {r['per_device_batch']: r['examples_per_sec'] for r in rows if r['devices'] == 1}
  for r in rows:
    if r['per_device_batch'] in base:
      r['speedup_vs_1'] = round(r['examples_per_sec'] / base[r['per_device_batch']], 2)
      r['efficiency'] = round(r['speedup_vs_1'] / r['devices'], 2)
  if pidx == 0:
    _write(args, rows, platform, forced, jax, cfg)


def _parallel_cfg(args):
  import ml_collections  # pylint: disable=g-import-not-at-top
  return ml_collections.ConfigDict({'strategy': args.strategy, 'data': -1,
                                    'model': args.model_axis})


def _write(args, rows, platform, forced, jax, cfg):
  os.makedirs(args.out, exist_ok=True)
  cols = ['devices', 'data', 'model', 'per_device_batch', 'global_batch', 'examples_per_sec',
          'speedup_vs_1', 'efficiency', 'step_ms', 'compile_s']
  kind = jax.devices()[0].device_kind
  load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
  head = [f'# Data-parallel scaling: {cfg.model.name} on {cfg.data.name}', '',
          f'{platform} ({kind}), {jax.device_count()} devices in {jax.process_count()} '
          f'process(es), {os.cpu_count()} host cores, 1-min load {load:.1f}; strategy '
          f'{args.strategy}; {args.steps} timed steps after {args.warmup} warm-up steps.', '']
  if forced:
    head += ['**Forced CPU host devices: all "devices" share the same cores, so this is NOT '
             'a scaling measurement** (it shows the sharded program\'s overhead only).', '']
  head += ['Command: `python -m benchmarks.scaling ' + ' '.join(sys.argv[1:]) + '`', '']
  table = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
  table += ['| ' + ' | '.join(str(r.get(c, '')) for c in cols) + ' |' for r in rows]
  with open(os.path.join(args.out, 'scaling.md'), 'w') as f:
    f.write('\n'.join(head + table) + '\n')
  with open(os.path.join(args.out, 'scaling.csv'), 'w', newline='') as f:
    w = csv.DictWriter(f, fieldnames=cols + ['loss'], extrasaction='ignore')
    w.writeheader()
    w.writerows(rows)
  with open(os.path.join(args.out, 'scaling.json'), 'w') as f:
    json.dump({'platform': platform, 'device_kind': kind, 'forced_cpu_devices': forced,
               'processes': jax.process_count(), 'args': vars(args), 'rows': rows}, f,
              indent=1)
  print('\n'.join(head + table))


if __name__ == '__main__':
  main()
