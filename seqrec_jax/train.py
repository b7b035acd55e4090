"""Host training loop: init or resume, jitted steps over a mesh, eval/log/checkpoint cadence,
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

from seqrec_jax import evaluate, models, multirun, parallel, platform_defaults, precision, steps
from seqrec_jax import data as data_lib
from seqrec_jax import workdir as workdir_lib
from seqrec_jax.configs import validate
from seqrec_jax.checkpoint import (Checkpointer, CheckpointMismatchError, flat_leaves,
                                   param_fingerprint, read_source)
from seqrec_jax.data import device_split, packing
from seqrec_jax.data.pipeline import train_batches
from seqrec_jax.metric_writers import MetricsWriter
from seqrec_jax.multirun import VARY_KEYS  # noqa: F401  (re-exported for experiments/sweep.py)
from seqrec_jax.state import TrainState, make_optimizer


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


def _packer(config, part):
  """packing.add_history_index for single-device runs with config.data.pack_history, else
  None (data parallel shards would need per-shard indices: not implemented)."""
  if not config.data.pack_history or part.mesh.size > 1 or jax.process_count() > 1:
    return None
  if config.data.pack_buckets < 1:
    raise ValueError(f'config.data.pack_buckets={config.data.pack_buckets} must be >= 1')
  return functools.partial(packing.add_history_index, buckets=config.data.pack_buckets,
                           max_fill=config.data.pack_max_fill)


def _loss_weights(config, tasks) -> tuple[float, ...] | None:
  w = tuple(config.train.get('loss_weights', ()))
  if w and len(w) != len(tasks):
    raise ValueError(f'config.train.loss_weights={w} has {len(w)} weights for '
                     f'{len(tasks)} tasks {[t.name for t in tasks]}')
  return w or None


@dataclasses.dataclass
class Program:
  """What the loop needs from one run or from a group of S runs (`build_program`).

  A single run has no run axis; the loop sees it as S=1 through `train`/`predict`, whose
  results always carry a leading run axis on the host side."""
  config: Any
  ds: Any
  part: parallel.Partitioner
  total_steps: int
  runs: list[multirun.Run] | None      # None: a single run
  abstract: Any                         # state ShapeDtypeStructs in the mesh layout
  state_sh: Any
  fingerprint: dict[str, Any]
  init: Callable[[], Any]               # () -> fresh state
  train: Callable                       # (state, host batch, active [S] bool) -> state, metrics
                                        # (a group's metrics['running']: multirun.py)
  eval_fn: Callable                     # compiled (state, device batch) -> [(S,) B, T]
  to_device: Callable                   # host eval batch -> device batch
  batches: Callable                     # start step -> iterator of host train batches
  keep_best: Callable                   # (best or None, state, improved [S]) -> best

  @property
  def num_runs(self) -> int:
    return 1 if self.runs is None else len(self.runs)

  @property
  def tasks(self):
    return self.ds.spec.tasks

  def evaluate(self, state, split: str, save_to: str | None = None) -> list[dict[str, float]]:
    """Metrics of every run on a whole split, as one list of S dicts. save_to: a workdir
    for the predictions (train.save_predictions; studies bootstrap over test users)."""
    preds, labels, users = evaluate.predict(
        self.eval_fn, state, self.ds.splits[split], self.config.data.eval_batch_size,
        self.to_device, jax.process_index(), jax.process_count(), run_axis=self.runs is not None)
    preds = preds[None] if self.runs is None else preds
    if save_to is not None and jax.process_index() == 0:
      for s, p in enumerate(preds):
        evaluate.save_predictions(save_to, split, p, labels, users,
                                  None if self.runs is None else s)
    return [evaluate.split_metrics(p, labels, users, self.tasks, f'eval/{split}') for p in preds]

  def meta_item(self, metas: list[dict], step: int) -> dict:
    """The checkpoint's meta: a single run's dict as before, or every run's under 'runs'."""
    return metas[0] if self.runs is None else {'runs': metas, 'step': step}

  def run_field(self, s: int) -> dict[str, int]:
    return {} if self.runs is None else {'run': int(s)}


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


def _init_fn(model, ds, tx, compute_dtype):
  def init_fn(key):
    dummy = {k: jnp.asarray(v) for k, v in _dummy_batch(ds, 2).items()}
    variables = model.init({'params': key, 'dropout': key}, dummy, train=False)
    apply_fn = precision.cast_apply(model.apply, compute_dtype)
    return TrainState.create(apply_fn, variables, tx)
  return init_fn


def build_program(config, dataset=None) -> Program:
  """Data, model, mesh and compiled steps for config (one run, or a group: multirun.py).
  dataset: a Dataset value to train on instead of load_dataset(config.data) (data.dataset_for;
  its name is config.data.name)."""
  ds = data_lib.dataset_for(config.data, dataset)   # validates ids/NaNs before any step
  tasks = ds.spec.tasks
  validate.check_selection(config, tasks)   # select_metric/select_task vs the tasks
  part = parallel.Partitioner(config.parallel)   # mesh, shardings, jit or pmap
  gb = config.data.batch_size
  part.check_batch_size(gb)
  part.check_batch_size(config.data.eval_batch_size, 'config.data.eval_batch_size')
  total_steps = num_train_steps(config, len(ds.splits['train']))
  loss_w = _loss_weights(config, tasks)
  fingerprint = {'model': config.model.name, 'dataset': config.data.name,
                 'data': data_lib.fingerprint(ds)}   # spec and split sizes: same data on resume
  if multirun.is_group(config):
    return _group_program(config, ds, part, total_steps, loss_w, fingerprint)

  model = models.build_model(config.model, ds.spec)
  tx = make_optimizer(config.optim, total_steps, trainable=config.train.trainable)
  pidx, pcount = jax.process_index(), jax.process_count()
  pack = _packer(config, part)
  on_dev = _device_split(config, ds, part)
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  init_fn = _init_fn(model, ds, tx, config.model.compute_dtype)
  abstract = jax.eval_shape(init_fn, init_rng)
  state_sh = part.state_shardings(abstract)  # embedding rows on `model`, rest replicated
  abstract = parallel.with_shardings(abstract, state_sh)  # orbax restores into this layout
  fingerprint['params'] = param_fingerprint(abstract.params)
  # Donation lets XLA update the state in place; the caller must not reuse the old state.
  p_train = part.compile_train(_keep_stats(
      config, functools.partial(steps.train_step, tasks=tasks, task_weights=loss_w)), state_sh)
  return Program(
      config, ds, part, total_steps, None, abstract, state_sh, fingerprint,
      init=lambda: jax.jit(init_fn, out_shardings=state_sh)(init_rng),
      train=lambda state, batch, active: p_train(
          state, batch if on_dev is not None else part.train_batch(batch), step_rng),
      eval_fn=part.compile_eval(functools.partial(steps.eval_step, tasks=tasks), state_sh),
      to_device=part.eval_batch if pack is None else lambda b: part.eval_batch(pack(b)),
      batches=(lambda start: on_dev.batches(gb, config.seed, start, total_steps,
                                            parallel.data_sharding(part.mesh)))
      if on_dev is not None else
      (lambda start: train_batches(ds.splits['train'], gb, config.seed, start,
                                   total_steps, pidx, pcount, transform=pack)),
      keep_best=lambda best, state, improved: state)   # saved at once; not kept in memory


def _group_program(config, ds, part, total_steps, loss_w, fingerprint) -> Program:
  """S runs as one program: [S] state leaves, vmapped steps, per-run seeds and hparams."""
  if jax.process_count() > 1 or part.strategy != 'jit':
    raise ValueError('a multi-run group (config.train.runs/run_seeds/vary) needs one process '
                     f'and config.parallel.strategy=jit (have {jax.process_count()} processes, '
                     f'strategy={part.strategy!r})')
  tasks = ds.spec.tasks
  runs = multirun.group_runs(config, len(tasks))
  mesh = part.mesh
  n_axis = mesh.shape.get(parallel.RUNS, 1)
  if len(runs) % n_axis:
    raise ValueError(f'{len(runs)} runs in the group cannot be split over '
                     f'config.parallel.runs={n_axis} devices; use a multiple of {n_axis} runs')
  if config.data.pack_history:
    logging.info('multi-run group: packed histories fall back to the padded path '
                 '(docs/multirun.md)')
  model = models.build_model(multirun.model_config(config, runs), ds.spec)
  make_tx = functools.partial(make_optimizer, config.optim, total_steps,
                              trainable=config.train.trainable)
  hp = multirun.hparam_arrays(config, runs)
  init_fn = _init_fn(model, ds, multirun.run_tx(make_tx, {k: v[0] for k, v in hp.items()}),
                     config.model.compute_dtype)
  keys = [jax.random.split(jax.random.key(r.seed)) for r in runs]
  step_rngs = jnp.stack([k[1] for k in keys])
  single_sh = part.state_shardings(jax.eval_shape(init_fn, keys[0][0]))
  state_sh = multirun.stacked_shardings(single_sh, mesh)
  abstract = parallel.with_shardings(
      jax.eval_shape(jax.vmap(init_fn), jnp.stack([k[0] for k in keys])), state_sh)
  fingerprint.update(params=param_fingerprint(abstract.params), runs=len(runs))
  on_runs = multirun.run_axis_sharding(mesh)
  if loss_w and 'loss_weights' not in hp:
    hp['loss_weights'] = np.tile(np.asarray(loss_w, np.float32), (len(runs), 1))
  hp, step_rngs = jax.device_put((hp, step_rngs), on_runs)
  batch_sh = multirun.run_axis_sharding(mesh, parallel.DATA)
  repl = parallel.replicated(mesh)
  p_train = jax.jit(_keep_stats(config, functools.partial(
      multirun.group_train_step, tasks=tasks, make_tx=make_tx)),
                    in_shardings=(state_sh, batch_sh, on_runs, on_runs, on_runs),
                    out_shardings=(state_sh, repl), donate_argnums=(0,))
  p_eval = jax.jit(functools.partial(multirun.group_eval_step, tasks=tasks),
                   in_shardings=(state_sh, parallel.data_sharding(mesh)), out_shardings=repl)
  p_best = jax.jit(multirun.keep_best, out_shardings=state_sh, donate_argnums=(0,))
  p_copy = jax.jit(lambda s: jax.tree.map(jnp.copy, s), out_shardings=state_sh)

  def train(state, batch, active):
    return p_train(state, jax.device_put(batch, batch_sh), step_rngs,
                   hp, jax.device_put(active, on_runs))

  def keep_best(best, state, improved):
    return p_copy(state) if best is None else p_best(best, state,
                                                     jax.device_put(improved, on_runs))

  def init():
    # The single run's init, compiled once and called per run (the same values as a single
    # run by construction; a vmapped init compiles several times slower on CPU).
    one = jax.jit(init_fn)
    return jax.jit(lambda xs: jax.tree.map(lambda *x: jnp.stack(x), *xs),
                   out_shardings=state_sh)([one(k[0]) for k in keys])

  on_dev = _device_split(config, ds, part)
  seeds = [r.seed for r in runs]
  if on_dev is not None:
    batches = lambda start: on_dev.batches(config.data.batch_size, seeds, start, total_steps,
                                           batch_sh)
  else:
    batches = lambda start: multirun.group_batches(
        ds.splits['train'], config.data.batch_size, seeds, start, total_steps)
  return Program(
      config, ds, part, total_steps, runs, abstract, state_sh, fingerprint, init=init,
      train=train, eval_fn=p_eval, to_device=part.eval_batch, batches=batches,
      keep_best=keep_best)


def _device_split(config, ds, part) -> device_split.DeviceSplit | None:
  """The train split placed on the device (data/device_split.py), or None: host batches."""
  if part.strategy != 'jit':
    if str(config.data.device_resident) == 'always':
      raise ValueError('config.data.device_resident=always needs config.parallel.strategy=jit')
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
  best: Any = None                      # a group's best state per run (device), else None
  seen: int = 0
  train_seconds: float = 0.0

  @property
  def active(self) -> np.ndarray:
    return np.array([not (m.get('stopped_early') or m.get('diverged')) for m in self.metas])


def warm_start(prog: Program, state):
  """The fresh state with config.train.init_from's params and batch_stats (step 0 and the
  optimiser state stay fresh). A group takes a single run's checkpoint in every run (the same
  weights; seeds then differ in data order and dropout) or a group's of as many runs, run s
  from run s. CheckpointMismatchError names every missing, extra or reshaped path."""
  path = prog.config.train.init_from
  key = 'config.train.init_from'
  src, meta, where = read_source(path)
  runs = meta.get('runs')
  n_src = len(runs) if isinstance(runs, list) else None
  fp = meta.get('fingerprint', {})
  what = (f'{key}={path!r}: checkpoint {where} (model {fp.get("model")!r}, dataset '
          f'{fp.get("dataset")!r}' + (f', a group of {n_src} runs)' if n_src else ', one run)'))
  if n_src is not None and n_src != (prog.num_runs if prog.runs is not None else None):
    this = f'a group of {prog.num_runs} runs' if prog.runs is not None else 'one run'
    raise CheckpointMismatchError(
        f'{what} cannot start {this}: a group source starts a group of as many runs '
        f'(config.train.runs={n_src}) run by run; a single-run source starts any run or group')
  group = prog.runs is not None
  out, problems = {}, []
  for coll in ('params', 'batch_stats'):
    mine, theirs = flat_leaves(getattr(state, coll)), flat_leaves(src.get(coll) or {})
    per = lambda x, lead: tuple(np.shape(x)[1:] if lead else np.shape(x))
    missing = [k for k in mine if k not in theirs]
    extra = [k for k in theirs if k not in mine]
    shapes = [f'{k}: {per(theirs[k], n_src is not None)} -> {per(mine[k], group)}'
              for k in mine if k in theirs and per(theirs[k], n_src is not None)
              != per(mine[k], group)]
    for label, items in (('missing from the checkpoint', missing),
                         ('in the checkpoint, not in this model', extra),
                         ('shape (checkpoint -> this model, per run)', shapes)):
      if items:
        problems.append(f'{coll} {label} ({len(items)}): {", ".join(items[:6])}'
                        + (', ...' if len(items) > 6 else ''))
    if not problems:   # a single run's leaf broadcasts over a group's leading run axis
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
               where, f' (one run, into all {prog.num_runs})' if group and n_src is None else '')
  return jax.device_put(state.replace(**out), prog.state_sh)


def init_or_restore(prog: Program, ckpt: Checkpointer, workdir: str):
  """(state, Progress): the latest checkpoint in workdir, or a fresh state at step 0 (warm
  started from config.train.init_from when set: only here, never over a resumed state)."""
  restored = ckpt.restore_latest(prog.abstract)
  if restored is None:
    fresh = {'best': None, 'best_step': -1, 'bad_evals': 0, 'stopped_early': False}
    state = prog.init()
    if prog.config.train.init_from:
      state = warm_start(prog, state)
    return state, Progress(0, [dict(fresh) for _ in range(prog.num_runs)])
  state, meta = restored
  state = jax.device_put(state, prog.state_sh)
  if prog.runs is None:
    start, metas, best = int(state.step), [meta], None
  else:
    start, metas = int(meta['step']), meta['runs']
    saved = ckpt.restore_best(prog.abstract)
    best = None if saved is None else jax.device_put(saved[0], prog.state_sh)
  logging.info('Resumed from %s at step %d', workdir, start)
  return state, Progress(start, metas, best)


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
  if prog.runs is None:
    step, loss = found[0]
    return FloatingPointError(f'non-finite training loss {loss} at step {step}; the last '
                              f'finite step is {step - 1}, {good}. {hint}')
  runs = '; '.join(f'run {r} (seed {run.seed}, {run.hparams}) at step '
                   f'{ps.metas[r]["diverged"]["step"]}' for r, run in enumerate(prog.runs))
  return FloatingPointError(f'non-finite training loss in every run of the group ({runs}); '
                            f'{good}. {hint}')


def check_finite(prog: Program, pending, ps: Progress, active, ckpt: Checkpointer):
  """The loop's non-finite check, before every checkpoint. A run whose loss turned non-finite
  is marked diverged in its meta ({'step': the first non-finite step, 'last_finite_step'})
  and masked from then on like an early-stopped run (its state frozen at that last finite
  step: multirun.group_train_step); its summary reports its best-valid state. When every run
  has diverged (a single run: at once) it raises FloatingPointError naming the step and the
  last good checkpoint. So no checkpoint holds an active run past a non-finite step."""
  found = _non_finite(pending, active)
  for r, (step, loss) in found.items():
    ps.metas[r]['diverged'] = {'step': step, 'last_finite_step': step - 1}
    if prog.runs is not None:
      logging.warning('Run %d diverged: non-finite training loss %s at step %d; masked from '
                      'then on (its summary reports its best-valid state)', r, loss, step)
  if found and all(m.get('diverged') for m in ps.metas):
    raise _diverged_error(prog, ps, found, ckpt)


def evaluate_and_select(prog: Program, state, prog_state: Progress, sel_key: str,
                        writer) -> np.ndarray:
  """Valid metrics of every active run; updates each run's best and early-stopping counters.
  Returns improved [S] (the runs whose state is now their best)."""
  cfg = prog.config.train
  higher_better = cfg.select_metric in ('auc', 'gauc')
  active = prog_state.active
  improved = np.zeros(prog.num_runs, bool)
  for s, res in enumerate(prog.evaluate(state, 'valid')):
    if not active[s]:
      continue
    writer.write({'step': prog_state.step, **prog.run_field(s), **res})
    meta, val = prog_state.metas[s], res[sel_key]
    if meta['best'] is None or (val > meta['best'] if higher_better else val < meta['best']):
      meta.update(best=val, best_step=prog_state.step, bad_evals=0)
      improved[s] = True
    else:
      meta['bad_evals'] += 1
    meta['stopped_early'] = cfg.patience > 0 and meta['bad_evals'] >= cfg.patience
    if meta['stopped_early']:
      logging.info('Early stop%s at step %d (best %s=%.5f at step %d)',
                   f' of run {s}' if prog.runs is not None else '', prog_state.step, sel_key,
                   meta['best'], meta['best_step'])
  return improved


def train_loop(prog: Program, state, ps: Progress, ckpt: Checkpointer, writer):
  """Steps from ps.step to the end (or until every run stopped early); evaluates, selects,
  logs and checkpoints on the config's cadence. Returns the last state."""
  config = prog.config
  gb, S = config.data.batch_size, prog.num_runs
  tasks = prog.tasks
  select_task = config.train.select_task or tasks[0].name
  sel_prefix = 'eval/valid' if len(tasks) == 1 else f'eval/valid/{select_task}'
  sel_key = f'{sel_prefix}/{config.train.select_metric}'
  # CPU multi-device collectives can time out when many steps are in flight: wait each step.
  sync_each_step = jax.devices()[0].platform == 'cpu' and jax.device_count() > 1
  pidx = jax.process_index()
  bar = _progress(prog.total_steps * gb, ps.step * gb, config.train.progress and pidx == 0)
  # Throughput excludes the first step (compilation) and eval/checkpoint time.
  t0, seen, paused = time.time(), 0, 0.0
  pending = []
  start = ps.step
  active = mask = ps.active    # mask: a group's device copy, false from a non-finite loss on
  if active.any():
    for batch in prog.batches(start):
      state, m = prog.train(state, batch, mask)
      mask = m.pop('running', mask)
      ps.step += 1
      step = ps.step
      if step == start + 1:
        jax.block_until_ready(m['loss'])
        t0, seen = time.time(), -gb * S
      pending.append((step, m))
      if _STEP_DELAY:                # fault-injection tests: make a kill land mid-run
        time.sleep(_STEP_DELAY)
      if sync_each_step:
        jax.block_until_ready(m['loss'])
      is_eval = step % config.train.eval_every == 0 or step == prog.total_steps
      is_save = is_eval or step % config.train.checkpoint_every == 0
      is_log = step % config.train.log_every == 0 or is_eval
      if is_log or is_save:   # every pending step's loss, before any checkpoint of the state
        check_finite(prog, pending, ps, active, ckpt)
        active = ps.active
      if is_log:
        last = {k: np.reshape(v, (S,)) for k, v in jax.device_get(pending[-1][1]).items()}
        seen += gb * S * len(pending)
        pending = []
        rate = max(seen, 0) / max(time.time() - t0 - paused, 1e-9)
        for s in np.flatnonzero(active):
          writer.write({'step': step, **prog.run_field(s), 'train/loss': float(last['loss'][s]),
                        'examples_per_sec': rate,
                        **{f'train/{k}': float(v[s]) for k, v in last.items() if k != 'loss'}})
        if bar is not None and active.any():
          bar.update(gb * (step - bar.n // gb))
          bar.set_postfix(loss=f'{float(np.mean(last["loss"][active])):.4f}',
                          ex_s=f'{rate:,.0f}')
      t_pause = time.time()
      if is_eval:
        improved = evaluate_and_select(prog, state, ps, sel_key, writer)
        if improved.any():
          ps.best = prog.keep_best(ps.best, state, improved)
          ckpt.save(step, ps.best, prog.meta_item(ps.metas, step), best=True)
      if is_save:
        ckpt.save(step, state, prog.meta_item(ps.metas, step))
      paused += time.time() - t_pause
      active = ps.active
      if is_log or is_save:   # the runs' truth after a check (the device mask agrees)
        mask = active
      if not active.any():
        break
  if bar is not None:
    bar.close()
  ps.train_seconds, ps.seen = time.time() - t0 - paused, seen
  return state


def final_report(prog: Program, state, ps: Progress, ckpt: Checkpointer, writer,
                 workdir: str):
  """Model selection on valid: every run's best-valid state, reported on valid and test.
  Returns the single run's summary, or a group's {'runs': [summary per run], ...}."""
  config = prog.config
  ckpt.wait()
  best = ckpt.restore_best(prog.abstract)
  final_state = jax.device_put(best[0], prog.state_sh) if best is not None else state
  S = prog.num_runs
  n_params = sum(x.size for x in jax.tree.leaves(state.params)) // S
  steps_of = np.reshape(jax.device_get(state.step), (-1,))
  per_run_seen = ps.seen // S
  train_time = ps.train_seconds
  save = workdir if config.train.get('save_predictions', False) else None
  valid, test = prog.evaluate(final_state, 'valid'), prog.evaluate(final_state, 'test', save)
  summaries = []
  for s in range(S):
    summary = {'model': config.model.name, 'dataset': config.data.name,
               'seed': config.seed if prog.runs is None else prog.runs[s].seed,
               'steps': ps.step if prog.runs is None else int(steps_of[s]),
               'best_step': ps.metas[s]['best_step'], 'params': int(n_params),
               'train_seconds': round(train_time, 2),
               'examples_per_sec': (round(per_run_seen / max(train_time, 1e-9), 1)
                                    if per_run_seen > 0 else None)}
    summary.update(valid[s])
    summary.update(test[s])
    for k, v in prog.ds.info.items():
      if 'oracle' in k:
        summary[f'oracle/{k}'] = v
    if prog.runs is not None:
      summary.update(run=s, hparams=prog.runs[s].hparams)
    if ps.metas[s].get('diverged'):
      summary.update(diverged=True, diverged_step=ps.metas[s]['diverged']['step'])
    writer.write({'step': summary['steps'], **prog.run_field(s), 'summary': summary})
    summaries.append(summary)
  if prog.runs is None:
    out = summaries[0]
  else:
    out = {'model': config.model.name, 'dataset': config.data.name, 'num_runs': S,
           'steps': ps.step, 'train_seconds': round(train_time, 2),
           'examples_per_sec': round(ps.seen / max(train_time, 1e-9), 1) if ps.seen > 0
                               else None, 'runs': summaries}
  if jax.process_index() == 0:
    print(json.dumps({'summary': out}, sort_keys=True), flush=True)
  return out


@workdir_lib.guard   # config validation, workdir lock, config.json compared on resume
def train_and_evaluate(config, workdir: str, dataset=None) -> dict[str, Any]:
  """Trains config.model on config.data; returns the summary (also the last metrics line).
  With config.train.runs/run_seeds/vary it trains a group of runs as one program
  (seqrec_jax/multirun.py) and returns {'runs': [one summary per run], ...}. dataset: a
  Dataset value prepared in-process, used instead of load_dataset(config.data); its name must
  be config.data.name, and a resume must pass the same data (the checkpoints record its
  data.fingerprint)."""
  config = platform_defaults.resolve(config)   # keys left at None: this platform's speed values
  os.makedirs(workdir, exist_ok=True)
  prog = build_program(config, dataset)
  # Closed on any exit (its async saves finished or failed) before the workdir lock goes.
  with Checkpointer(workdir, config.train.keep_checkpoints, prog.fingerprint) as ckpt:
    state, ps = init_or_restore(prog, ckpt, workdir)
    writer = MetricsWriter(workdir, ps.step, hparams=config)
    state = train_loop(prog, state, ps, ckpt, writer)
    return final_report(prog, state, ps, ckpt, writer, workdir)
