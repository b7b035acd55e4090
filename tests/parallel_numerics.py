"""Helper for tests/test_parallel.py (run as a subprocess with N forced host devices).

Trains the tiny DIN (Dice, so batch statistics matter) for `--steps` steps under several
layouts from the same initial state (the reference's, laid out in each) and batches, and
prints one JSON line with the largest parameter / batch-stat / metric difference from the
1-device reference after step 1 and after the last step:

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/parallel_numerics.py
"""
from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from seqrec_jax import models, parallel, steps
from seqrec_jax.configs import test as test_config
from seqrec_jax.data import load_dataset
from seqrec_jax.data.pipeline import train_batches
from seqrec_jax.state import TrainState, make_optimizer

# name -> (strategy, data, model)
LAYOUTS = {'jit1': ('jit', 1, 1), 'jit8': ('jit', 8, 1), 'jit4x2': ('jit', 4, 2),
           'pmap8': ('pmap', 8, 1)}


def max_diff(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def run(layout: str, cfg, ds, batches, num_steps: int, init=None):
  """init: the reference's initial state leaves (host) to start from; None: initialise
  (the reference). Returns (state at step 1 and the last, metrics, specs, timing, init)."""
  strategy, data, model_size = LAYOUTS[layout]
  mesh = parallel.make_mesh(data, model_size, devices=jax.devices()[:data * model_size])
  part = parallel.Partitioner(ml_collections.ConfigDict({'strategy': strategy}), mesh)
  part.check_batch_size(cfg.data.batch_size)
  model = models.build_model(cfg.model, ds.spec)
  tx = make_optimizer(cfg.optim, num_steps)
  tasks = ds.spec.tasks

  def init_fn(key):
    dummy = {k: jnp.zeros((2,) + v.shape[1:], v.dtype) for k, v in batches[0].items()}
    return TrainState.create(model.apply, model.init({'params': key, 'dropout': key}, dummy,
                                                     train=False), tx)

  abstract = jax.eval_shape(init_fn, jax.random.key(0))
  state_sh = part.state_shardings(abstract)
  if init is None:   # initialised once, on one device, then laid out (as train.build_program)
    init = jax.device_get(jax.tree.leaves(jax.jit(init_fn)(jax.random.key(cfg.seed))))
  state = jax.device_put(jax.tree.unflatten(jax.tree.structure(abstract), init), state_sh)
  p_train = part.compile_train(functools.partial(steps.train_step, tasks=tasks), state_sh)
  rng = jax.random.key(1)
  out, metrics = {}, []
  t0 = time.time()
  for i, b in enumerate(batches[:num_steps]):
    state, m = p_train(state, part.train_batch(b), rng)
    m['loss'].block_until_ready()  # CPU multi-device: wait each step (see docs/design.md)
    if i == 0:
      t1 = time.time()
    metrics.append(jax.device_get(m))
    if i + 1 in (1, num_steps):
      out[i + 1] = jax.device_get({'params': state.params, 'batch_stats': state.batch_stats})
  specs = sorted({str(s.spec) for s in jax.tree.leaves(
      jax.tree.map(lambda x: x.sharding, state.params))})
  timing = {'first_step_s': round(t1 - t0, 2), 'step_ms': round(
      1e3 * (time.time() - t1) / max(num_steps - 1, 1), 1)}
  return out, metrics, specs, timing, init


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--steps', type=int, default=20)
  ap.add_argument('--layouts', default=','.join(LAYOUTS))
  args = ap.parse_args()
  cfg = test_config.get_config('din')
  # Item vocab 120 (+ padding id 0): rows split over model=2; cate vocab 9: columns.
  cfg.data.synthetic.num_items = 119
  # One Dice hidden layer and a one-layer attention MLP (test.py: two each): the run is
  # compile-bound (a train step per layout) and compiles ~25% faster; the same layers and syncs.
  cfg.model.hidden, cfg.model.attention.hidden = (8,), (4,)
  ds = load_dataset(cfg.data)
  batches = list(train_batches(ds.splits['train'], cfg.data.batch_size, cfg.seed, 0, args.steps,
                               prefetch=0))
  names = args.layouts.split(',')
  ref, ref_m, _, ref_t, init = run(names[0], cfg, ds, batches, args.steps)
  t0 = time.time()
  report = {'devices': jax.device_count(), 'steps': args.steps, 'reference': names[0],
            'reference_timing': ref_t}
  for name in names[1:]:
    t0 = time.time()
    got, got_m, specs, timing, _ = run(name, cfg, ds, batches, args.steps, init)
    report[name] = {
        'specs': specs, 'seconds': round(time.time() - t0, 1), **timing,
        **{f'params@{s}': max_diff(ref[s]['params'], got[s]['params']) for s in ref},
        **{f'batch_stats@{s}': max_diff(ref[s]['batch_stats'], got[s]['batch_stats'])
           for s in ref},
        'loss': max(abs(float(a['loss']) - float(b['loss'])) for a, b in zip(ref_m, got_m)),
        'grad_norm': max(abs(float(a['grad_norm']) - float(b['grad_norm']))
                         for a, b in zip(ref_m, got_m)),
    }
  report['param_scale'] = max(float(np.max(np.abs(x))) for x in
                              jax.tree.leaves(ref[args.steps]['params']))
  print(json.dumps(report, sort_keys=True))


if __name__ == '__main__':
  main()
