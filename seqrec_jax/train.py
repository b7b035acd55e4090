"""Host training loop: every program is a group of S >= 1 runs (a single run is S = 1):
init or resume, one compiled step over a mesh (the task's loss: tasks/), periodic actions
(log, progress bar, evaluation with selection and early stopping, checkpoints: periodic.py),
model selection on the validation split, final report on test.

Run with `python -m seqrec_jax.main --config=seqrec_jax/configs/din.py:synthetic --workdir=...`.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax import evaluate, multirun, parallel, periodic, platform_defaults, run_map, steps
from seqrec_jax import data as data_lib
from seqrec_jax import tasks as tasks_lib
from seqrec_jax import workdir as workdir_lib
from seqrec_jax.checkpoint import (Checkpointer, CheckpointMismatchError, flat_leaves,
                                   param_fingerprint, read_source)
from seqrec_jax.data import device_split, packing
from seqrec_jax.data.pipeline import train_batches
from seqrec_jax.metric_writers import MetricsWriter
from seqrec_jax.multirun import VARY_KEYS  # noqa: F401  (re-exported for experiments/sweep.py)
from seqrec_jax.state import OPTIM_HPARAMS, TrainState, make_optimizer, optimizer_hparams


# Seconds to sleep after each step; only for tests that SIGKILL a run mid-training.
_STEP_DELAY = float(os.environ.get('SEQREC_TEST_STEP_DELAY', '0') or 0)


def _dummy_batch(ds, n: int):
  return {k: np.zeros((n,) + v.shape[1:], v.dtype)
          for k, v in ds.splits['train'].__getitems__(np.arange(1)).items()}


def num_train_steps(config, n_train: int) -> int:
  if config.train.num_steps > 0:
    return int(config.train.num_steps)
  steps_per_epoch = n_train // config.data.batch_size
  return max(1, int(math.ceil(config.train.num_epochs * steps_per_epoch)))


def _progress(total: int, initial: int, enabled: bool):
  if not enabled:
    return None
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(total=total, initial=initial, unit='ex', unit_scale=True, dynamic_ncols=True,
              disable=None, file=sys.stderr)


def _packer(config, part, group: bool = False):
  """History packing (data/packing.py) for single-device single-process programs with
  config.data.pack_history, else None (data parallel shards would need per-shard indices: not
  implemented, they train on the padded path). group=False: packing.add_history_index for
  [B, ...] batches (evaluation: a group's runs share its eval batches); group=True:
  packing.add_group_history_index for the program's stacked [S, B, ...] train batches (S >= 1:
  each run its own index, one packed shape for the S runs of a step; S = 1 the single run's)."""
  if not config.data.pack_history or part.mesh.size > 1 or jax.process_count() > 1:
    return None
  if config.data.pack_buckets < 1:
    raise ValueError(f'config.data.pack_buckets={config.data.pack_buckets} must be >= 1')
  fn = packing.add_group_history_index if group else packing.add_history_index
  return functools.partial(fn, buckets=config.data.pack_buckets,
                           max_fill=config.data.pack_max_fill)


# The checkpoint layout this code writes: every state leaf has a leading run axis [S] and the
# meta is {'runs': [per-run meta], 'step': n, 'layout': 2}; optimiser states are
# optax.inject_hyperparams states. Older layouts (a single run's unstacked state and flat meta;
# a group's stacked state without injected hyper-parameters) are read by `restore_target`.
LAYOUT = 2


@dataclasses.dataclass
class Program:
  """Everything the loop needs for a group of S >= 1 runs (`build_program`); a single run is
  S = 1 of the same program. Host-side values carry a leading run axis [S]."""
  config: Any
  ds: Any
  task: tasks_lib.Task
  part: parallel.Partitioner
  total_steps: int
  runs: list[multirun.Run]
  group: bool                 # the config asked for a group (train.runs/run_seeds/vary): its
                              # records and summary name runs; a single run's stay flat
  abstract: Any               # state ShapeDtypeStructs ([S] leaves) in the mesh layout
  state_sh: Any
  fingerprint: dict[str, Any]
  init: Callable[[], Any]     # () -> fresh state
  train: Callable             # (state, host batch [S, B/P, ...], active [S] bool)
                              #   -> state, metrics {name: [S]} (+ 'running' [S])
  batches: Callable           # start step -> iterator of train batches
  evaluator: Any              # tasks.Evaluator over this program's mesh and runs
  restore_target: Callable    # checkpoint meta -> (abstract state, convert or None)
  select_best: Callable       # (best, state, improved [S]) -> per run: state if improved

  @property
  def num_runs(self) -> int:
    return len(self.runs)

  def evaluate(self, state, split: str, save_to: str | None = None) -> list[dict[str, float]]:
    """Metrics of every run on a whole split, as one list of S dicts (Task.evaluate)."""
    return self.task.evaluate(self.evaluator, state.variables, split, save_to)

  def meta_item(self, metas: list[dict], step: int) -> dict:
    return {'runs': metas, 'step': step, 'layout': LAYOUT}

  def run_field(self, s: int) -> dict[str, int]:
    return {'run': int(s)} if self.group else {}


def _keep_stats(config, train_step):
  """config.train.trainable=embeddings: the step with the Dice/BatchNorm moving statistics
  kept as they were (they belong to the frozen dense model; the batch's own statistics are
  still used inside the step)."""
  if config.train.trainable != 'embeddings':
    return train_step

  def step(state, *args, **kwargs):
    new, metrics = train_step(state, *args, **kwargs)
    return new.replace(batch_stats=state.batch_stats), metrics
  return step


def _squeezed(fn, *, in_axes):
  """fn of one run applied to S = 1 runs: arguments with in_axes 0 lose their run axis,
  results get it back (x[0] / x[None]: free under jit)."""
  def one(*args):
    args = [jax.tree.map(lambda x: x[0], a) if ax == 0 else a for a, ax in zip(args, in_axes)]
    return jax.tree.map(lambda x: x[None], fn(*args))
  return one


def _over_runs(fn, num_runs: int, in_axes, chunk: int = 0):
  """fn of one run -> the same over a leading run axis: the squeezed run for S = 1 (no
  batched ops in a single run's program); for S > 1 `chunk` runs per vmapped call
  (run_map.map_runs: 0 or >= S = one jax.vmap, 1 = a lax.map over the runs;
  config.train.run_chunk, platform_defaults.py)."""
  if num_runs == 1:
    return _squeezed(fn, in_axes=in_axes)
  if not chunk or chunk >= num_runs:
    return jax.vmap(fn, in_axes=in_axes)
  return lambda *args: run_map.map_runs(fn, *args, chunk=chunk, in_axes=in_axes)


class _Evaluator:
  """tasks.Evaluator: per-run functions over whole splits, compiled once per function."""

  def __init__(self, part, state_sh, num_runs: int, batch_size: int, pack=None, chunk: int = 0):
    self.part, self.num_runs, self.batch_size, self.chunk = part, num_runs, batch_size, chunk
    self.var_sh = {'params': state_sh.params, 'batch_stats': state_sh.batch_stats}
    self.process_index = jax.process_index()
    self.to_device = part.eval_batch if pack is None else lambda b: part.eval_batch(pack(b))
    self._compiled = {}

  def outputs(self, fn, variables, split, batch_size=None):
    f = self._compiled.get(fn)
    if f is None:
      mesh = self.part.mesh
      f = self._compiled[fn] = jax.jit(
          _over_runs(fn, self.num_runs, (0, None), self.chunk),
          in_shardings=(self.var_sh, parallel.data_sharding(mesh)),
          out_shardings=parallel.replicated(mesh))
    return evaluate.outputs(f, dict(variables), split, batch_size or self.batch_size,
                            self.to_device, jax.process_index(), jax.process_count(), axis=1)


def _stack(xs):
  return jax.tree.map(lambda *x: jnp.stack(x), *xs)


def _put(tree, sharding):
  """Host values, the same on every process (numpy, keys, device arrays of one process) ->
  global arrays in `sharding` (device_put refuses shardings over other processes' devices)."""
  def one(x, sh):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(one(jax.random.key_data(x), sh))
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return jax.device_put(x, sh)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx])
  if isinstance(sharding, jax.sharding.Sharding):
    return jax.tree.map(lambda x: one(x, sharding), tree)
  return jax.tree.map(one, tree, sharding)


def build_program(config, dataset=None) -> Program:
  """Data, task, mesh and compiled steps for config: a group of S >= 1 runs (multirun.py; a
  single run is S = 1). dataset: a Dataset value to train on instead of
  load_dataset(config.data) (data.dataset_for; its name is config.data.name)."""
  ds = data_lib.dataset_for(config.data, dataset)   # validates ids/NaNs before any step
  task = tasks_lib.build(config, ds)
  part = parallel.Partitioner(config.parallel)   # mesh, shardings, jit or pmap
  gb = config.data.batch_size
  part.check_batch_size(gb)
  part.check_batch_size(config.data.eval_batch_size, 'config.data.eval_batch_size')
  total_steps = num_train_steps(config, len(ds.splits['train']))
  runs = multirun.group_runs(config, len(ds.spec.tasks))
  S = len(runs)
  n_axis = part.mesh.shape.get(parallel.RUNS, 1)
  if S % n_axis:
    raise ValueError(f'{S} runs in the group cannot be split over config.parallel.runs='
                     f'{n_axis} devices; use a multiple of {n_axis} runs')
  hp = multirun.hparam_arrays(config, runs)                 # the varied keys: {name: [S]}
  opt_hp = {k: v for k, v in hp.items() if k in OPTIM_HPARAMS}
  task_hp = {k: v for k, v in hp.items() if k not in OPTIM_HPARAMS}
  tx = make_optimizer(config.optim, total_steps, config.train.trainable, per_run=tuple(opt_hp))
  sample = {k: jnp.asarray(v) for k, v in _dummy_batch(ds, 2).items()}

  def init_one(key, run_opt_hp):
    st = TrainState.create(getattr(task, 'apply_fn', None), task.init(key, sample), tx)
    h = {**st.opt_state.hyperparams,
         **{k: jnp.asarray(v, st.opt_state.hyperparams[k].dtype) for k, v in run_opt_hp.items()}}
    return st.replace(opt_state=st.opt_state._replace(hyperparams=h))

  keys = [jax.random.split(jax.random.key(r.seed)) for r in runs]
  run_hp = lambda tree, s: {k: v[s] for k, v in tree.items()}
  one = jax.eval_shape(init_one, keys[0][0], run_hp(opt_hp, 0))
  single_sh = part.state_shardings(one)  # embedding rows on `model`, rest replicated
  state_sh = part.stacked_shardings(single_sh)
  stacked = lambda a: jax.tree.map(lambda x: jax.ShapeDtypeStruct((S,) + x.shape, x.dtype), a)
  abstract = parallel.with_shardings(stacked(one), state_sh)  # orbax restores into this
  fingerprint = {'model': config.model.name, 'dataset': config.data.name,
                 'data': data_lib.fingerprint(ds),   # spec and split sizes: same data on resume
                 'params': param_fingerprint(abstract.params), 'runs': S}
  on_runs = part.run_axis()
  step_rngs, task_hp = _put((jnp.stack([k[1] for k in keys]), task_hp), on_runs)

  def run_step(state, batch, rng, h, active, sync_grads=None):
    return steps.update_step(state, batch, rng, sync_grads=sync_grads, active=active,
                             loss_fn=lambda v, b, r: task.loss(v, b, r, h))

  # A run axis sharded over devices stays one vmap (a scan over it would gather the runs).
  chunk = config.train.run_chunk if n_axis == 1 else 0
  per_run = _over_runs(part.wrap_run_step(_keep_stats(config, run_step)), S, (0, 0, 0, 0, 0),
                       chunk)

  def group_train_step(state, batch, rngs, h, active):
    """[S] state, [S, B, ...] batch, [S] keys, {name: [S, ...]}, [S] bool -> (state, [S]
    metrics); a run not active (stopped, diverged) keeps its state."""
    return per_run(state, batch, rngs, h, active)

  # Donation lets XLA update the state in place; the caller must not reuse the old state.
  p_train = part.compile_train(group_train_step, state_sh, runs=True,
                               args_sh=(on_runs, on_runs, on_runs))
  pack = _packer(config, part)                     # eval batches (shared by the runs)
  on_dev = _device_split(config, ds, part, task)

  def train(state, batch, active):
    batch = batch if on_dev is not None else part.train_batch(batch, runs=True)
    return p_train(state, batch, step_rngs, task_hp, _put(active, on_runs))

  def init():
    # The run's init, compiled once and called per run (a vmapped init compiles several
    # times slower on CPU), stacked on the run axis.
    f = jax.jit(init_one)
    return jax.jit(_stack, out_shardings=state_sh)(
        [f(k[0], run_hp(opt_hp, s)) for s, k in enumerate(keys)])

  def restore_target(meta):
    """What restores a checkpoint of `meta`: this layout as is; an older one (see LAYOUT)
    into its own layout, then converted (run axis added, hyper-parameters injected)."""
    if meta.get('layout') == LAYOUT:
      return abstract, None
    legacy_single = not isinstance(meta.get('runs'), list)
    old = one.replace(opt_state=one.opt_state.inner_state)
    old_sh = single_sh.replace(opt_state=single_sh.opt_state.inner_state)
    if not legacy_single:
      old, old_sh = stacked(old), part.stacked_shardings(old_sh)
    fresh = jax.eval_shape(init)

    def convert(state, meta):
      if legacy_single:
        state = jax.tree.map(lambda x: x[None], state)
        meta = {'runs': [meta], 'step': int(np.asarray(state.step)[0])}
      hyper = {k: jnp.broadcast_to(jnp.asarray(v, fresh.opt_state.hyperparams[k].dtype), (S,))
               for k, v in {**optimizer_hparams(config.optim, tuple(opt_hp)), **opt_hp}.items()}
      opt = fresh.opt_state._replace(count=np.array(state.step), hyperparams=hyper,
                                     inner_state=state.opt_state)
      return _put(state.replace(opt_state=opt), state_sh), dict(meta, layout=LAYOUT)
    return parallel.with_shardings(old, old_sh), convert

  seeds = [r.seed for r in runs]
  transform = _batch_transform(task)
  if on_dev is not None:
    batches = lambda start: on_dev.batches(gb, seeds, start, total_steps,
                                           part.run_axis(parallel.DATA))
  else:
    batches = lambda start: train_batches(
        ds.splits['train'], gb, seeds, start, total_steps, jax.process_index(),
        jax.process_count(), transform=transform, group_transform=_packer(config, part, True))
  p_best = jax.jit(lambda best, state, improved: jax.tree.map(
      lambda b, x: jnp.where(improved.reshape(improved.shape + (1,) * (x.ndim - 1)), x, b),
      best, state), out_shardings=state_sh)
  return Program(
      config, ds, task, part, total_steps, runs, multirun.is_group(config), abstract, state_sh,
      fingerprint, init=init, train=train, batches=batches,
      evaluator=_Evaluator(part, state_sh, S, config.data.eval_batch_size, pack, chunk),
      restore_target=restore_target,
      select_best=lambda best, state, improved: p_best(best, state, _put(improved, on_runs)))


def _batch_transform(task):
  """(batch, seed, step) -> batch for train_batches: the task's prepare_batch, or None when
  it has none. (History packing follows on the stacked batch: train_batches'
  group_transform.)"""
  if type(task).prepare_batch is tasks_lib.Task.prepare_batch:
    return None
  return lambda batch, seed, step: task.prepare_batch(batch, seed=seed, step=step)


def _device_split(config, ds, part, task) -> device_split.DeviceSplit | None:
  """The train split placed on the device (data/device_split.py), or None: host batches
  (always for tasks with a prepare_batch, which runs on the host)."""
  if part.strategy != 'jit' or type(task).prepare_batch is not tasks_lib.Task.prepare_batch:
    if str(config.data.device_resident) == 'always':
      raise ValueError('config.data.device_resident=always needs config.parallel.strategy=jit '
                       'and a task without host-side batch preparation')
    return None
  if not device_split.wanted(config.data, ds.splits['train'], jax.process_count()):
    return None
  if config.data.pack_history:
    logging.info('device-resident train split: packed histories need host batches; the '
                 'train step runs on the padded path (eval batches stay packed)')
  return device_split.DeviceSplit(ds.splits['train'], parallel.replicated(part.mesh))


@dataclasses.dataclass
class Progress:
  """The loop's state besides the TrainState: per-run bookkeeping and throughput."""
  step: int
  metas: list[dict]                     # per run: best, best_step, bad_evals, stopped_early,
                                        # and diverged once its loss turned non-finite
  best: Any = None                      # S > 1: every run's best state (device), kept for the
                                        # runs that do not improve at an eval; else None
  seen: int = 0
  train_seconds: float = 0.0

  @property
  def active(self) -> np.ndarray:
    return np.array([not (m.get('stopped_early') or m.get('diverged')) for m in self.metas])


def warm_start(prog: Program, state):
  """The fresh state with config.train.init_from's params and batch_stats (step 0 and the
  optimiser state stay fresh). A single run's checkpoint (S = 1, or one written before runs
  had an axis) starts every run of any group (the same weights; seeds then differ in data
  order and dropout); a group's of S runs starts a group of S runs, run s from run s.
  CheckpointMismatchError names every missing, extra or reshaped path."""
  path = prog.config.train.init_from
  key = 'config.train.init_from'
  src, meta, where = read_source(path)
  runs = meta.get('runs')
  n_src = len(runs) if isinstance(runs, list) else None    # None: no run axis (older layout)
  fp = meta.get('fingerprint', {})
  what = (f'{key}={path!r}: checkpoint {where} (model {fp.get("model")!r}, dataset '
          f'{fp.get("dataset")!r}' + (f', a group of {n_src} runs)' if (n_src or 1) > 1
                                      else ', one run)'))
  S = prog.num_runs
  if n_src not in (None, 1, S):
    this = f'a group of {S} runs' if S > 1 else 'one run'
    raise CheckpointMismatchError(
        f'{what} cannot start {this}: a group source starts a group of as many runs '
        f'(config.train.runs={n_src}) run by run; a single-run source starts any run or group')
  out, problems = {}, []
  for coll in ('params', 'batch_stats'):
    mine, theirs = flat_leaves(getattr(state, coll)), flat_leaves(src.get(coll) or {})
    if n_src is not None:
      theirs = {k: v if n_src == S else v[0] for k, v in theirs.items()}
    per = lambda x, lead: tuple(np.shape(x)[1:] if lead else np.shape(x))
    lead = n_src is not None and n_src == S
    missing = [k for k in mine if k not in theirs]
    extra = [k for k in theirs if k not in mine]
    shapes = [f'{k}: {per(theirs[k], lead)} -> {per(mine[k], True)}'
              for k in mine if k in theirs and per(theirs[k], lead) != per(mine[k], True)]
    for label, items in (('missing from the checkpoint', missing),
                         ('in the checkpoint, not in this model', extra),
                         ('shape (checkpoint -> this model, per run)', shapes)):
      if items:
        problems.append(f'{coll} {label} ({len(items)}): {", ".join(items[:6])}'
                        + (', ...' if len(items) > 6 else ''))
    if not problems:   # a single run's leaf broadcasts over the leading run axis
      out[coll] = jax.tree_util.tree_map_with_path(
          lambda p, x, t=theirs: np.broadcast_to(np.asarray(t[jax.tree_util.keystr(p)],
                                                            x.dtype), x.shape),
          getattr(state, coll))
  if problems:
    raise CheckpointMismatchError(
        f'{what} does not fit this model ({prog.config.model.name!r} on '
        f'{prog.config.data.name!r}):\n  ' + '\n  '.join(problems)
        + '\nWarm starts need the same model config (shapes and names of every parameter).')
  logging.info('Warm start from %s: params and batch_stats%s; step and optimiser state fresh',
               where, f' (one run, into all {S})' if S > 1 and n_src in (None, 1) else '')
  return _put(state.replace(**out), prog.state_sh)


def init_or_restore(prog: Program, ckpt: Checkpointer, workdir: str):
  """(state, Progress): the latest checkpoint in workdir (any layout: Program.restore_target),
  or a fresh state at step 0 (warm started from config.train.init_from when set: only here,
  never over a resumed state)."""
  restored = ckpt.restore_latest(prog.restore_target)
  if restored is None:
    fresh = {'best': None, 'best_step': -1, 'bad_evals': 0, 'stopped_early': False}
    state = prog.init()
    if prog.config.train.init_from:
      state = warm_start(prog, state)
    return state, Progress(0, [dict(fresh) for _ in range(prog.num_runs)])
  state, meta = restored
  state = jax.device_put(state, prog.state_sh)
  best = None
  if prog.num_runs > 1:
    saved = ckpt.restore_best(prog.restore_target)
    best = None if saved is None else jax.device_put(saved[0], prog.state_sh)
  logging.info('Resumed from %s at step %d', workdir, meta['step'])
  return state, Progress(int(meta['step']), meta['runs'], best)


def _non_finite(pending, active) -> dict[int, tuple[int, Any]]:
  """{run: (step, loss)}: the first non-finite loss of each active run among the pending
  steps ([(step, metrics)], the steps since the last check)."""
  found = {}
  losses = jax.device_get([m['loss'] for _, m in pending])
  for (step, _), loss in zip(pending, losses):
    loss = np.reshape(loss, (-1,))
    for r in np.flatnonzero(active & ~np.isfinite(loss)):
      found.setdefault(int(r), (step, loss[r]))
  return found


def _diverged_error(prog: Program, ps: Progress, found, ckpt: Checkpointer):
  ckpt.wait()
  last, where = ckpt.latest.latest_step(), ckpt.latest.directory
  good = (f'the last good checkpoint is step {last} in {where}; a rerun resumes from it'
          if last is not None else f'no checkpoint was written yet ({where})')
  hint = 'For another learning rate or clip_norm use a fresh --workdir.'
  if not prog.group:
    step, loss = found[0]
    return FloatingPointError(f'non-finite training loss {loss} at step {step}; the last '
                              f'finite step is {step - 1}, {good}. {hint}')
  runs = '; '.join(f'run {r} (seed {run.seed}, {run.hparams}) at step '
                   f'{ps.metas[r]["diverged"]["step"]}' for r, run in enumerate(prog.runs))
  return FloatingPointError(f'non-finite training loss in every run of the group ({runs}); '
                            f'{good}. {hint}')


def check_finite(prog: Program, pending, ps: Progress, active, ckpt: Checkpointer):
  """The loop's non-finite check, before any periodic action (so before every checkpoint).
  A run whose loss turned non-finite is marked diverged in its meta ({'step': the first
  non-finite step, 'last_finite_step'}) and masked from then on like an early-stopped run
  (its state frozen at that last finite step: steps.update_step); its summary reports its
  best-valid state. When every run has diverged (a single run: at once) it raises
  FloatingPointError naming the step and the last good checkpoint. So no checkpoint holds an
  active run past a non-finite step."""
  found = _non_finite(pending, active)
  for r, (step, loss) in found.items():
    ps.metas[r]['diverged'] = {'step': step, 'last_finite_step': step - 1}
    if prog.num_runs > 1:
      logging.warning('Run %d diverged: non-finite training loss %s at step %d; masked from '
                      'then on (its summary reports its best-valid state)', r, loss, step)
  if found and all(m.get('diverged') for m in ps.metas):
    raise _diverged_error(prog, ps, found, ckpt)


def evaluate_and_select(prog: Program, state, ps: Progress, writer) -> np.ndarray:
  """Valid metrics of every active run; updates each run's best and early-stopping counters.
  Returns improved [S] (the runs whose state is now their best)."""
  cfg = prog.config.train
  sel = prog.task.selection()
  active = ps.active
  improved = np.zeros(prog.num_runs, bool)
  for s, res in enumerate(prog.evaluate(state, 'valid')):
    if not active[s]:
      continue
    writer.write({'step': ps.step, **prog.run_field(s), **res})
    meta, val = ps.metas[s], res[sel.metric]
    if meta['best'] is None or (val > meta['best'] if sel.higher_is_better
                                else val < meta['best']):
      meta.update(best=val, best_step=ps.step, bad_evals=0)
      improved[s] = True
    else:
      meta['bad_evals'] += 1
    meta['stopped_early'] = cfg.patience > 0 and meta['bad_evals'] >= cfg.patience
    if meta['stopped_early']:
      logging.info('Early stop%s at step %d (best %s=%.5f at step %d)',
                   f' of run {s}' if prog.num_runs > 1 else '', ps.step, sel.metric,
                   meta['best'], meta['best_step'])
  return improved


class LogMetrics(periodic.PeriodicAction):
  """The step's train metrics and the throughput of every active run -> the writer."""

  def run(self, ctx):
    m = ctx.metrics
    for s in np.flatnonzero(ctx.progress.active):
      ctx.writer.write({'step': ctx.step, **ctx.prog.run_field(s),
                        'train/loss': float(m['loss'][s]), 'examples_per_sec': ctx.rate,
                        **{f'train/{k}': float(v[s]) for k, v in m.items() if k != 'loss'}})


class ProgressBar(periodic.PeriodicAction):
  """A tqdm bar of examples (config.train.progress, process 0 only)."""

  def __init__(self, prog: Program, start: int, every=(), on_last=True):
    super().__init__(every, on_last)
    self.gb = prog.config.data.batch_size
    self.bar = _progress(prog.total_steps * self.gb, start * self.gb,
                         prog.config.train.progress and jax.process_index() == 0)

  def run(self, ctx):
    active = ctx.progress.active
    if self.bar is not None and active.any():
      self.bar.update(self.gb * (ctx.step - self.bar.n // self.gb))
      self.bar.set_postfix(loss=f'{float(np.mean(ctx.metrics["loss"][active])):.4f}',
                           ex_s=f'{ctx.rate:,.0f}')

  def close(self):
    if self.bar is not None:
      self.bar.close()


class Evaluate(periodic.PeriodicAction):
  """Valid metrics, per-run selection and early stopping; the runs' best states -> best/."""

  def run(self, ctx):
    prog, ps = ctx.prog, ctx.progress
    improved = evaluate_and_select(prog, ctx.state, ps, ctx.writer)
    if not improved.any():
      return
    if improved.all():   # every run's best is this state
      best = ctx.state
      ps.best = _copy(best) if prog.num_runs > 1 else None   # (the state is donated next)
    else:
      ps.best = best = prog.select_best(ctx.state if ps.best is None else ps.best, ctx.state,
                                        improved)
    ctx.ckpt.save(ctx.step, best, prog.meta_item(ps.metas, ctx.step), best=True)


_copy = jax.jit(lambda s: jax.tree.map(jnp.copy, s))


class Checkpoint(periodic.PeriodicAction):
  """The state and the loop's bookkeeping -> checkpoints/ (resume)."""

  def run(self, ctx):
    ctx.ckpt.save(ctx.step, ctx.state, ctx.prog.meta_item(ctx.progress.metas, ctx.step))


def default_actions(prog: Program, ps: Progress) -> list[periodic.PeriodicAction]:
  """The config's cadences: log every train.log_every steps and at every evaluation;
  evaluate every train.eval_every; checkpoint every train.checkpoint_every and at every
  evaluation; all of them at the last step."""
  t = prog.config.train
  log = (t.log_every, t.eval_every)
  return [LogMetrics(log), ProgressBar(prog, ps.step, log), Evaluate(t.eval_every),
          Checkpoint((t.checkpoint_every, t.eval_every))]


def train_loop(prog: Program, state, ps: Progress, ckpt: Checkpointer, writer,
               actions: list[periodic.PeriodicAction] | None = None):
  """Steps from ps.step to the end (or until every run stopped); after a step where any
  periodic action is due, checks the pending steps' losses (check_finite), then runs the due
  actions in order (default: `default_actions`). Returns the last state."""
  config = prog.config
  actions = default_actions(prog, ps) if actions is None else actions
  gb, S = config.data.batch_size, prog.num_runs
  # CPU multi-device collectives can time out when many steps are in flight: wait each step.
  sync_each_step = jax.devices()[0].platform == 'cpu' and jax.device_count() > 1
  # Throughput excludes the first step (compilation) and the actions' time.
  t0, paused = time.time(), 0.0
  pending = []
  start, mask = ps.step, ps.active
  try:
    if mask.any():
      for batch in prog.batches(start):
        state, m = prog.train(state, batch, mask)
        mask = m.pop('running')    # active and this step's loss finite (device)
        ps.step += 1
        step = ps.step
        if step == start + 1:
          jax.block_until_ready(m['loss'])
          t0 = time.time()
        pending.append((step, m))
        if _STEP_DELAY:                # fault-injection tests: make a kill land mid-run
          time.sleep(_STEP_DELAY)
        if sync_each_step:
          jax.block_until_ready(m['loss'])
        last = step == prog.total_steps
        due = [a for a in actions if a.due(step, last)]
        if not due:
          continue
        t_pause = time.time()
        # Every pending step's loss, before any action (so before any checkpoint).
        check_finite(prog, pending, ps, ps.active, ckpt)
        host = {k: np.reshape(v, (S,)) for k, v in jax.device_get(pending[-1][1]).items()}
        pending = []
        rate = gb * S * (step - start - 1) / max(t_pause - t0 - paused, 1e-9)
        ctx = periodic.Context(prog, state, ps, ckpt, writer, step, last, host, rate)
        for a in due:
          a.run(ctx)
        paused += time.time() - t_pause
        mask = ps.active              # the runs' truth after a check (the device mask agrees)
        if not mask.any():
          break
  finally:
    for a in actions:
      a.close()
  ps.train_seconds = time.time() - t0 - paused
  ps.seen = gb * S * max(ps.step - start - 1, 0)
  return state


def final_report(prog: Program, state, ps: Progress, ckpt: Checkpointer, writer,
                 workdir: str):
  """Model selection on valid: every run's best-valid state, reported on valid and test.
  Returns a single run's summary, or a group's {'runs': [summary per run], ...}."""
  config = prog.config
  ckpt.wait()
  best = ckpt.restore_best(prog.restore_target)
  final_state = jax.device_put(best[0], prog.state_sh) if best is not None else state
  S = prog.num_runs
  n_params = sum(x.size for x in jax.tree.leaves(state.params)) // S
  steps_of = np.reshape(jax.device_get(state.step), (-1,))
  per_run_seen = ps.seen // S
  train_time = ps.train_seconds
  save = workdir if config.train.save_predictions else None
  valid, test = prog.evaluate(final_state, 'valid'), prog.evaluate(final_state, 'test', save)
  summaries = []
  for s in range(S):
    summary = {'model': config.model.name, 'dataset': config.data.name,
               'seed': prog.runs[s].seed, 'steps': int(steps_of[s]),
               'best_step': ps.metas[s]['best_step'], 'params': int(n_params),
               'train_seconds': round(train_time, 2),
               'examples_per_sec': (round(per_run_seen / max(train_time, 1e-9), 1)
                                    if per_run_seen > 0 else None)}
    summary.update(valid[s])
    summary.update(test[s])
    for k, v in prog.ds.info.items():
      if 'oracle' in k:
        summary[f'oracle/{k}'] = v
    if prog.group:
      summary.update(run=s, hparams=prog.runs[s].hparams)
    if ps.metas[s].get('diverged'):
      summary.update(diverged=True, diverged_step=ps.metas[s]['diverged']['step'])
    writer.write({'step': summary['steps'], **prog.run_field(s), 'summary': summary})
    summaries.append(summary)
  out = summaries[0] if not prog.group else {
      'model': config.model.name, 'dataset': config.data.name, 'num_runs': S,
      'steps': ps.step, 'train_seconds': round(train_time, 2),
      'examples_per_sec': round(ps.seen / max(train_time, 1e-9), 1) if ps.seen > 0 else None,
      'runs': summaries}
  if jax.process_index() == 0:
    print(json.dumps({'summary': out}, sort_keys=True), flush=True)
  return out


@workdir_lib.guard   # config validation, workdir lock, config.json compared on resume
def train_and_evaluate(config, workdir: str, dataset=None) -> dict[str, Any]:
  """Trains config's task (tasks/: config.model on config.data) as a group of S >= 1 runs;
  returns the summary (also the last metrics line): a single run's flat dict, or with
  config.train.runs/run_seeds/vary (seqrec_jax/multirun.py) {'runs': [one summary per run],
  ...}. dataset: a Dataset value prepared in-process, used instead of
  load_dataset(config.data); its name must be config.data.name, and a resume must pass the
  same data (the checkpoints record its data.fingerprint)."""
  config = platform_defaults.resolve(config)   # keys left at None: this platform's speed values
  os.makedirs(workdir, exist_ok=True)
  prog = build_program(config, dataset)
  # Closed on any exit (its async saves finished or failed) before the workdir lock goes.
  with Checkpointer(workdir, config.train.keep_checkpoints, prog.fingerprint) as ckpt:
    state, ps = init_or_restore(prog, ckpt, workdir)
    writer = MetricsWriter(workdir, ps.step, hparams=config)
    state = train_loop(prog, state, ps, ckpt, writer)
    return final_report(prog, state, ps, ckpt, writer, workdir)
