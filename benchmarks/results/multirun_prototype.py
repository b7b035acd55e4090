"""The measurements of benchmarks/results/multirun_cpu.md: a group's step through
`run_map.map_runs` (chunk runs at a time) before that is wired into the trainer.

Runs against commit 61ba59b's trainer (where `multirun.group_train_step` / `group_eval_step`
vmap the run's step), replacing those two functions; once the trainer takes a chunk from its
config, use `benchmarks.multirun` / `benchmarks.multirun_packing` with that override instead and
delete this file. 'before' = the vmapped step with ops.wsum as a plain dot (the ops of
61ba59b: Dice's sums transpose under vmap); 'after' = map_runs with CHUNK (env, default 1).

  # end to end, one process: both groups against ONE sequential pass of the S runs
  ORDER=before,after python benchmarks/results/multirun_prototype.py ab din_synthetic 5
  # steady state, interleaved rounds: name:runs=S,pack=0|1,chunk=C,ops=old ...
  python benchmarks/results/multirun_prototype.py steps din_synthetic single: \
      padded:pack=0 vmap_oldops:runs=5,ops=old vmap:runs=5 chunk1:runs=5,chunk=1
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.getcwd())
from seqrec_jax import xla_cpu  # noqa: E402  pylint: disable=g-import-not-at-top

xla_cpu.apply_defaults()
import jax  # noqa: E402  pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402  pylint: disable=g-import-not-at-top
from absl import logging  # noqa: E402  pylint: disable=g-import-not-at-top

from benchmarks.multirun import _timed, case_setup  # noqa: E402  pylint: disable=g-import-not-at-top
from seqrec_jax import multirun, platform_defaults, steps, train  # noqa: E402  pylint: disable=g-import-not-at-top
from seqrec_jax.configs import load_config  # noqa: E402  pylint: disable=g-import-not-at-top
from seqrec_jax.layers import ops  # noqa: E402  pylint: disable=g-import-not-at-top
from seqrec_jax.run_map import map_runs  # noqa: E402  pylint: disable=g-import-not-at-top

VMAP = (multirun.group_train_step, multirun.group_eval_step, ops.wsum)


def use(chunk: int, old_ops: bool = False):
  """The group steps through map_runs(chunk) (0: the vmapped originals); old_ops: wsum as a
  plain dot (then Dice's sums transpose under vmap, as before)."""
  ops.wsum = (lambda w, a: w @ a) if old_ops else VMAP[2]
  if not chunk:
    multirun.group_train_step, multirun.group_eval_step = VMAP[:2]
    return

  def group_train_step(state, batch, rng, hp, active, *, tasks, make_tx):
    def one(st, b, r, h):
      tx = multirun.run_tx(make_tx, h)
      with multirun.runtime_hparams(h):
        new, m = steps.train_step(st.replace(tx=tx), b, r, tasks=tasks,
                                  task_weights=h.get('loss_weights'))
      return new.replace(tx=st.tx), m
    new, metrics = map_runs(one, state, batch, rng, hp, chunk=chunk)
    running = active & jnp.isfinite(metrics['loss'])
    keep = lambda n, o: jnp.where(running.reshape(running.shape + (1,) * (n.ndim - 1)), n, o)
    return jax.tree.map(keep, new, state), dict(metrics, running=running)

  def group_eval_step(state, batch, *, tasks):
    return map_runs(lambda st: steps.eval_step(st, batch, tasks=tasks), state, chunk=chunk)

  multirun.group_train_step, multirun.group_eval_step = group_train_step, group_eval_step


def ab(case: str, runs: int):
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  from seqrec_jax.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  chunk, order = int(os.environ.get('CHUNK', '1')), os.environ.get('ORDER', 'before,after')
  tmp = tempfile.mkdtemp()
  sweep.use_compilation_cache(os.path.join(tmp, 'cache'))
  spec, overrides, default_runs, metric = case_setup(case)
  runs = runs or default_runs
  overrides['train.progress'] = False
  res = {'case': case, 'runs': runs, 'chunk': chunk, 'order': order,
         'load1': [round(os.getloadavg()[0], 1)]}
  groups = {}
  for name in order.split(','):
    use(chunk if name == 'after' else 0, old_ops=name == 'before')
    cfg = load_config(spec, dict(overrides, seed=0, **{'train.run_seeds': tuple(range(runs))}))
    groups[name], sec = _timed(train_and_evaluate, cfg, os.path.join(tmp, name))
    res[f'grouped_{name}_s'] = round(sec, 1)
    res[f'grouped_{name}_train_s'] = round(groups[name]['runs'][0]['train_seconds'], 1)
    res['load1'].append(round(os.getloadavg()[0], 1))
  seq, seq_s = [], 0.0
  for s in range(runs):
    summary, sec = _timed(train_and_evaluate, load_config(spec, dict(overrides, seed=s)),
                          os.path.join(tmp, f'seed{s}'))
    seq.append(summary)
    seq_s += sec
  res.update(sequential_s=round(seq_s, 1), load1_end=round(os.getloadavg()[0], 1),
             sequential_train_s=round(sum(s['train_seconds'] for s in seq), 1))
  for name, g in groups.items():
    res[f'speedup_{name}'] = round(seq_s / res[f'grouped_{name}_s'], 2)
    res[f'max_abs_test_diff_{name}'] = float(
        f"{max(abs(a[metric] - b[metric]) for a, b in zip(g['runs'], seq)):.3g}")
  res.update(steps=seq[0]['steps'], date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
  return res


def step_times(case: str, variants: list[str], rounds: int = 5, k: int = 10):
  """Median wall and process-CPU ms per run-step of each variant, stepped in turn."""
  spec, overrides, _, _ = case_setup(case)
  progs = {}
  for v in variants:
    name, _, kv = v.partition(':')
    opts = dict(x.split('=') for x in kv.split(',') if x)
    cfg = load_config(spec, dict(overrides, **{'train.runs': int(opts.get('runs', 1))}))
    if 'pack' in opts:
      cfg.data.pack_history = bool(int(opts['pack']))
    use(int(opts.get('chunk', 0)), old_ops=opts.get('ops') == 'old')
    prog = train.build_program(platform_defaults.resolve(cfg))
    state, it, active = prog.init(), prog.batches(0), np.ones(prog.num_runs, bool)
    for _ in range(10):                  # traced and compiled here, with this variant's ops
      state, m = prog.train(state, next(it), active)
    jax.block_until_ready(m['loss'])
    progs[name] = [prog, state, it, active, [], []]
  res = {'case': case, 'load1': [round(os.getloadavg()[0], 1)]}
  for _ in range(rounds):
    for p in progs.values():
      prog, it, active, n = p[0], p[2], p[3], p[0].num_runs
      batches = [next(it) for _ in range(k)]
      t, c = time.perf_counter(), time.process_time()
      for b in batches:
        p[1], m = prog.train(p[1], b, active)
      jax.block_until_ready(m['loss'])
      p[4].append((time.perf_counter() - t) / k / n * 1e3)
      p[5].append((time.process_time() - c) / k / n * 1e3)
  res['load1'].append(round(os.getloadavg()[0], 1))
  for name, p in progs.items():
    res[name] = {'wall_ms_per_run_step': round(float(np.median(p[4])), 2),
                 'cpu_ms_per_run_step': round(float(np.median(p[5])), 2)}
  return res


if __name__ == '__main__':
  mode, case_, *rest = sys.argv[1:]
  out = ab(case_, int(rest[0])) if mode == 'ab' else step_times(case_, rest)
  print(json.dumps(out), flush=True)
