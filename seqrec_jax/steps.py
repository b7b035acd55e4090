"""Pure train and eval steps (no Python side effects, no flags): jit them from the outside."""
from __future__ import annotations

from typing import Sequence

from flax import traverse_util
import jax
import jax.numpy as jnp
import optax

from seqrec_jax.data.features import Task
from seqrec_jax.losses import labels_of, task_losses
from seqrec_jax.state import TrainState


def train_step(state: TrainState, batch, rng, *, tasks: Sequence[Task], sync_grads=None,
               task_weights=None):
  """One optimiser step. Returns (new_state, metrics). A non-finite loss skips the update
  (the state is returned unchanged) and is reported in metrics['loss'] for the host to stop.

  sync_grads: optional grads -> grads applied before the update and the grad norm (pmap:
  the cross-device mean, parallel.pmap_step).
  task_weights: [T] loss weights replacing the tasks' own (config.train.loss_weights; a traced
  per-run value in a multi-run group)."""
  # A different dropout key per step, reproducible after resume.
  rng = jax.random.fold_in(rng, state.step)
  task_w = jnp.asarray([t.weight for t in tasks] if task_weights is None else task_weights,
                      jnp.float32)

  def loss_fn(params):
    logits, new_vars = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch, train=True,
        mutable=['batch_stats', 'diagnostics', 'losses'], rngs={'dropout': rng})
    logits = logits.reshape(logits.shape[0], -1)
    per = task_losses(logits, labels_of(batch), tasks, batch.get('weight'))
    # Penalties a model sowed with self.sow('losses', name, value) (e.g. MBA) join the loss.
    reg = sum(jnp.sum(x) for x in jax.tree.leaves(new_vars.get('losses', {})))
    return (per * task_w).sum() + reg, (per, new_vars, reg)

  (loss, (per, new_vars, reg)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  if sync_grads is not None:
    grads = sync_grads(grads)

  def update(_):
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    return (optax.apply_updates(state.params, updates), opt_state,
            new_vars.get('batch_stats', {}))

  # A conditional, not a select per leaf: the skipped update costs nothing and the applied
  # one writes the (donated) state in place, instead of 3 extra passes over every table.
  params, opt_state, batch_stats = jax.lax.cond(
      jnp.isfinite(loss), update, lambda _: (state.params, state.opt_state, state.batch_stats),
      None)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            batch_stats=batch_stats)
  # sqrt(sum of vdots): BLAS dots instead of square + reduce passes over the embedding grads.
  grad_norm = jnp.sqrt(sum(jnp.vdot(g, g) for g in jax.tree.leaves(grads)))
  metrics = {'loss': loss, 'grad_norm': grad_norm}
  if new_vars.get('losses'):
    metrics['reg_loss'] = reg          # part of 'loss'; the data loss is loss - reg_loss
  for j, t in enumerate(tasks):
    if len(tasks) > 1:
      metrics[f'loss/{t.name}'] = per[j]
  metrics.update(diagnostics_metrics(new_vars.get('diagnostics', {})))
  return new_state, metrics


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
