"""Host training loop: init or resume, jitted steps over a mesh, eval/log/checkpoint cadence,
model selection on the validation split, final report on test.

Run with `python -m seqrec_jax.main --config=seqrec_jax/configs/din.py:synthetic --workdir=...`.
"""
from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax import evaluate, models, parallel, platform_defaults, precision, steps
from seqrec_jax import workdir as workdir_lib
from seqrec_jax.configs import validate
from seqrec_jax.checkpoint import Checkpointer, check_finite_losses, param_fingerprint
from seqrec_jax.data import load_dataset
from seqrec_jax.data import packing
from seqrec_jax.data.pipeline import train_batches
from seqrec_jax.metric_writers import MetricsWriter
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


@workdir_lib.guard   # config validation, workdir lock, config.json compared on resume
def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Trains config.model on config.data; returns the summary (also the last metrics line)."""
  config = platform_defaults.resolve(config)   # keys left at None: this platform's speed values
  os.makedirs(workdir, exist_ok=True)
  ds = load_dataset(config.data)         # validates ids/NaNs before any step
  model = models.build_model(config.model, ds.spec)
  tasks = ds.spec.tasks
  validate.check_selection(config, tasks)   # select_metric/select_task vs the tasks
  part = parallel.Partitioner(config.parallel)   # mesh, shardings, jit or pmap
  gb = config.data.batch_size
  part.check_batch_size(gb)
  part.check_batch_size(config.data.eval_batch_size, 'config.data.eval_batch_size')
  n_train = len(ds.splits['train'])
  total_steps = num_train_steps(config, n_train)
  tx = make_optimizer(config.optim, total_steps)
  pidx, pcount = jax.process_index(), jax.process_count()
  pack = _packer(config, part)
  to_device = part.eval_batch if pack is None else lambda b: part.eval_batch(pack(b))

  rng = jax.random.key(config.seed)
  init_rng, step_rng = jax.random.split(rng)

  def init_fn(key):
    dummy = {k: jnp.asarray(v) for k, v in _dummy_batch(ds, 2).items()}
    variables = model.init({'params': key, 'dropout': key}, dummy, train=False)
    apply_fn = precision.cast_apply(model.apply, config.model.compute_dtype)
    return TrainState.create(apply_fn, variables, tx)

  abstract = jax.eval_shape(init_fn, init_rng)
  state_sh = part.state_shardings(abstract)  # embedding rows on `model`, rest replicated
  abstract = parallel.with_shardings(abstract, state_sh)  # orbax restores into this layout
  fingerprint = {'model': config.model.name, 'dataset': config.data.name,
                 'params': param_fingerprint(abstract.params)}
  ckpt = Checkpointer(workdir, config.train.keep_checkpoints, fingerprint)
  restored = ckpt.restore_latest(abstract)
  if restored is None:
    state = jax.jit(init_fn, out_shardings=state_sh)(init_rng)
    meta = {'best': None, 'best_step': -1, 'bad_evals': 0, 'stopped_early': False}
    start = 0
  else:
    state, meta = restored
    state = jax.device_put(state, state_sh)
    start = int(state.step)
    logging.info('Resumed from %s at step %d', workdir, start)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))

  # Donation lets XLA update the state in place; the caller must not reuse the old state.
  p_train = part.compile_train(functools.partial(steps.train_step, tasks=tasks), state_sh)
  p_eval = part.compile_eval(functools.partial(steps.eval_step, tasks=tasks), state_sh)
  writer = MetricsWriter(workdir, start, hparams=config)
  select_task = config.train.select_task or tasks[0].name
  sel_prefix = 'eval/valid' if len(tasks) == 1 else f'eval/valid/{select_task}'
  sel_key = f'{sel_prefix}/{config.train.select_metric}'
  higher_better = config.train.select_metric in ('auc', 'gauc')

  def run_eval(st, split_name, save=False):
    preds, labels, users = evaluate.predict(
        p_eval, st, ds.splits[split_name], config.data.eval_batch_size, to_device, pidx, pcount)
    if save and pidx == 0:      # train.save_predictions: studies' bootstrap over test users
      evaluate.save_predictions(workdir, split_name, preds, labels, users)
    return evaluate.split_metrics(preds, labels, users, tasks, f'eval/{split_name}')

  # CPU multi-device collectives can time out when many steps are in flight: wait each step.
  sync_each_step = jax.devices()[0].platform == 'cpu' and jax.device_count() > 1
  bar = _progress(total_steps * gb, start * gb, config.train.progress and pidx == 0)
  # Throughput excludes the first step (compilation) and eval/checkpoint time.
  t0, seen, paused, last_loss = time.time(), 0, 0.0, float('nan')
  pending = []
  step = start
  if not meta.get('stopped_early'):
    for batch in train_batches(ds.splits['train'], gb, config.seed, start, total_steps,
                               pidx, pcount, transform=pack):
      state, m = p_train(state, part.train_batch(batch), step_rng)
      step += 1
      if step == start + 1:
        m['loss'].block_until_ready()
        t0, seen = time.time(), -gb
      pending.append((step, m))
      if _STEP_DELAY:                # fault-injection tests: make a kill land mid-run
        time.sleep(_STEP_DELAY)
      if sync_each_step:
        m['loss'].block_until_ready()
      is_eval = step % config.train.eval_every == 0 or step == total_steps
      is_log = step % config.train.log_every == 0 or is_eval
      is_ckpt = is_eval or step % config.train.checkpoint_every == 0
      if is_log or is_ckpt:   # every pending step's loss, before any checkpoint of the state
        check_finite_losses(pending, ckpt)
      if is_log:
        last = jax.device_get(pending[-1][1])
        last_loss = float(last['loss'])
        seen += gb * len(pending)
        pending = []
        rate = max(seen, 0) / max(time.time() - t0 - paused, 1e-9)
        writer.write({'step': step, 'train/loss': last_loss, 'examples_per_sec': rate,
                      **{f'train/{k}': float(v) for k, v in last.items() if k != 'loss'}})
        if bar is not None:
          bar.update(gb * (step - bar.n // gb))
          bar.set_postfix(loss=f'{last_loss:.4f}', ex_s=f'{rate:,.0f}')
      t_pause = time.time()
      if is_eval:
        res = run_eval(state, 'valid')
        writer.write({'step': step, **res})
        val = res[sel_key]
        improved = meta['best'] is None or (val > meta['best'] if higher_better
                                            else val < meta['best'])
        if improved:
          meta.update(best=val, best_step=step, bad_evals=0)
          ckpt.save(step, state, meta, best=True)
        else:
          meta['bad_evals'] += 1
        patience = config.train.patience
        meta['stopped_early'] = patience > 0 and meta['bad_evals'] >= patience
      if is_ckpt:
        ckpt.save(step, state, meta)
      paused += time.time() - t_pause
      if meta['stopped_early']:
        logging.info('Early stop at step %d (best %s=%.5f at step %d)', step, sel_key,
                     meta['best'], meta['best_step'])
        break
  if bar is not None:
    bar.close()
  train_time = time.time() - t0 - paused
  ckpt.wait()
  # Model selection on valid: report the best-valid state on valid and test.
  best = ckpt.restore_best(abstract)
  final_state = jax.device_put(best[0], state_sh) if best is not None else state
  summary = {'model': config.model.name, 'dataset': config.data.name, 'seed': config.seed,
             'steps': step, 'best_step': meta['best_step'], 'params': int(n_params),
             'train_seconds': round(train_time, 2),
             'examples_per_sec': round(seen / max(train_time, 1e-9), 1) if seen > 0 else None}
  summary.update(run_eval(final_state, 'valid'))
  summary.update(run_eval(final_state, 'test', config.train.get('save_predictions', False)))
  for k, v in ds.info.items():
    if 'oracle' in k:
      summary[f'oracle/{k}'] = v
  writer.write({'step': step, 'summary': summary})
  ckpt.close()
  if pidx == 0:
    print(json.dumps({'summary': summary}, sort_keys=True), flush=True)
  return summary
