"""Pure train and eval steps (no Python side effects, no flags): jit them from the outside."""
from __future__ import annotations

import functools
from typing import Sequence

from flax import traverse_util
import jax
import jax.numpy as jnp
import optax

from seqrec_jax.data.features import Task
from seqrec_jax.state import TrainState


def update_step(state: TrainState, batch, rng, *, loss_fn, sync_grads=None, active=None):
  """One optimiser step of one run. Returns (new_state, metrics).

  loss_fn(variables, batch, rng) -> tasks.LossOutput (tasks/base.py: Task.loss with the run's
  hparams bound); rng: the run's key, folded here with the step (a different dropout key per
  step, reproducible after resume). sync_grads: optional grads -> grads applied before the
  update and the grad norm (pmap: the cross-device mean, parallel.pmap_step).
  active: optional [] bool (a group's stopped or diverged run: False). The update is applied
  only when the loss is finite and the run active; otherwise params, optimiser state,
  batch_stats and step stay as they were (a conditional: the skipped update costs nothing and
  the applied one writes the donated state in place). metrics['running']: that condition."""
  rng = jax.random.fold_in(rng, state.step)

  def loss(params):
    out = loss_fn({'params': params, 'batch_stats': state.batch_stats}, batch, rng)
    return out.loss, out

  (loss_v, out), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
  if sync_grads is not None:
    grads = sync_grads(grads)
  ok = jnp.isfinite(loss_v) if active is None else jnp.isfinite(loss_v) & active

  def update(_):
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    return (optax.apply_updates(state.params, updates), opt_state, out.batch_stats,
            state.step + 1)

  params, opt_state, batch_stats, step = jax.lax.cond(
      ok, update, lambda _: (state.params, state.opt_state, state.batch_stats, state.step),
      None)
  new_state = state.replace(step=step, params=params, opt_state=opt_state,
                            batch_stats=batch_stats)
  # sqrt(sum of vdots): BLAS dots instead of square + reduce passes over the embedding grads.
  grad_norm = jnp.sqrt(sum(jnp.vdot(g, g) for g in jax.tree.leaves(grads)))
  return new_state, {'loss': loss_v, 'grad_norm': grad_norm, **out.metrics, 'running': ok}


def train_step(state: TrainState, batch, rng, *, tasks: Sequence[Task], sync_grads=None,
               task_weights=None):
  """One optimiser step of a ranking model (state.apply_fn; tasks/ranking.ranking_loss).
  Returns (new_state, metrics); a non-finite loss skips the update (update_step).

  task_weights: [T] loss weights replacing the tasks' own (config.train.loss_weights)."""
  from seqrec_jax.tasks.ranking import ranking_loss  # pylint: disable=g-import-not-at-top
  new, metrics = update_step(
      state, batch, rng, sync_grads=sync_grads,
      loss_fn=functools.partial(ranking_loss, state.apply_fn, tasks=tasks,
                                task_weights=task_weights))
  metrics.pop('running')
  return new, metrics


def diagnostics_metrics(diagnostics) -> dict[str, jax.Array]:
  """Scalars from values a model sowed with `self.sow('diagnostics', name, value)`.

  Keys are the '/'-joined collection paths (e.g. 'gates/<task>/entropy'); several values sown
  under one name are averaged; a vector value [n] becomes keys '<name>/0' .. '<name>/<n-1>'.
  """
  out = {}
  for path, vals in traverse_util.flatten_dict(diagnostics, sep='/').items():
    vals = vals if isinstance(vals, tuple) else (vals,)
    v = jnp.mean(jnp.stack([jnp.asarray(x, jnp.float32) for x in vals]), axis=0)
    if v.size == 1:
      out[path] = v.reshape(())
    else:
      for i, x in enumerate(v.reshape(-1)):
        out[f'{path}/{i}'] = x
  return out


def task_outputs(logits, tasks: Sequence[Task]):
  """Served values from logits [B, T] (or [B] for one task), per task kind: probabilities for
  binary / completion_rate, exp(logit) (the watch time) for watch_time, raw for regression.
  The one home of this mapping (evaluation and serving both call it)."""
  flat = logits.reshape(logits.shape[0], -1)
  if flat.shape[1] != len(tasks):
    raise ValueError(f'the model returned {flat.shape[1]} outputs per example but the data '
                     f'spec has {len(tasks)} tasks: {[t.name for t in tasks]}')
  kinds = jnp.array([t.kind in ('binary', 'completion_rate') for t in tasks])
  watch = jnp.array([t.kind == 'watch_time' for t in tasks])
  out = jnp.where(kinds[None, :], jax.nn.sigmoid(flat), flat)
  out = jnp.where(watch[None, :], jnp.exp(jnp.where(watch[None, :], flat, 0.0)), out)
  return out.reshape(logits.shape)


def predict(apply_fn, variables, batch, *, tasks: Sequence[Task]):
  """Predictions [B, T] (`task_outputs` of the eval-mode logits) of `variables` (e.g. a run of
  checkpoint.load_best) under apply_fn."""
  logits = apply_fn(variables, batch, train=False)
  return task_outputs(logits.reshape(logits.shape[0], -1), tasks)


def eval_step(state: TrainState, batch, *, tasks: Sequence[Task]):
  """Predictions [B, T] of a TrainState (`predict`)."""
  return predict(state.apply_fn, state.variables, batch, tasks=tasks)
