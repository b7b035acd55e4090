"""Ranking models (DIN, DCN, MMoE, ...) as a task: per-row losses of the data's tasks
(losses.task_losses, weighted and summed, plus penalties the model sows), predictions ->
evaluate.split_metrics on each split, selection by config.train.select_metric / select_task."""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax import evaluate, models, multirun, precision, steps
from seqrec_jax.configs import validate
from seqrec_jax.data.features import Task as DataTask
from seqrec_jax.losses import labels_of, task_losses
from seqrec_jax.tasks.base import LossOutput, Selection, Task

HIGHER_IS_BETTER = ('auc', 'gauc')


def ranking_loss(apply_fn, variables, batch, rng, *, tasks: Sequence[DataTask],
                 task_weights=None) -> LossOutput:
  """The weighted sum of the per-task mean losses of one batch, plus what the model sowed in
  its 'losses' collection (e.g. the MBA penalty). metrics: 'reg_loss' (part of the loss)
  where a penalty was sown, 'loss/<task>' for several tasks, and the sown diagnostics.
  task_weights: [T] replacing the tasks' own weights (config.train.loss_weights)."""
  task_w = jnp.asarray([t.weight for t in tasks] if task_weights is None else task_weights,
                       jnp.float32)
  logits, new_vars = apply_fn(variables, batch, train=True,
                              mutable=['batch_stats', 'diagnostics', 'losses'],
                              rngs={'dropout': rng})
  logits = logits.reshape(logits.shape[0], -1)
  per = task_losses(logits, labels_of(batch), tasks, batch.get('weight'))
  # Penalties a model sowed with self.sow('losses', name, value) (e.g. MBA) join the loss.
  reg = sum(jnp.sum(x) for x in jax.tree.leaves(new_vars.get('losses', {})))
  metrics = {}
  if new_vars.get('losses'):
    metrics['reg_loss'] = reg          # part of 'loss'; the data loss is loss - reg_loss
  for j, t in enumerate(tasks):
    if len(tasks) > 1:
      metrics[f'loss/{t.name}'] = per[j]
  metrics.update(steps.diagnostics_metrics(new_vars.get('diagnostics', {})))
  return LossOutput((per * task_w).sum() + reg, new_vars.get('batch_stats', {}), metrics)


class RankingTask(Task):
  """config.model on a ranking dataset (ds.spec.tasks: binary, regression, watch time...)."""

  name = 'ranking'

  def __init__(self, config, ds):
    self.config, self.ds = config, ds
    self.tasks = ds.spec.tasks
    validate.check_selection(config, self.tasks)   # select_metric/select_task vs the tasks
    # A group's varied dropout / MBA lambda: the module is built with the largest value and
    # called with each run's (multirun.runtime_hparams).
    model = models.build_model(
        multirun.model_config(config, multirun.group_runs(config)), ds.spec)
    self.model = model
    self.apply_fn = precision.cast_apply(model.apply, config.model.compute_dtype)
    w = tuple(config.train.loss_weights)
    if w and len(w) != len(self.tasks):
      raise ValueError(f'config.train.loss_weights={w} has {len(w)} weights for '
                       f'{len(self.tasks)} tasks {[t.name for t in self.tasks]}')
    self.loss_weights = w or None
    self.predict = functools.partial(steps.predict, self.apply_fn, tasks=self.tasks)

  def init(self, rng, batch):
    return dict(self.model.init({'params': rng, 'dropout': rng}, batch, train=False))

  def loss(self, variables, batch, rng, hparams):
    weights = hparams.get('loss_weights', self.loss_weights)
    loss = functools.partial(ranking_loss, self.apply_fn, variables, batch, rng,
                             tasks=self.tasks, task_weights=weights)
    if 'dropout_keep' in hparams or 'mba_lambda' in hparams:
      with multirun.runtime_hparams(hparams):
        return loss()
    return loss()

  def evaluate(self, ev, variables, split, save_to=None):
    preds = ev.outputs(self.predict, variables, self.ds.splits[split])     # [S, N, T]
    labels, users = evaluate.labels_and_users(self.ds.splits[split])
    if save_to is not None and ev.process_index == 0:
      group = multirun.is_group(self.config)
      for s, p in enumerate(preds):
        evaluate.save_predictions(save_to, split, p, labels, users, s if group else None)
    return [evaluate.split_metrics(np.asarray(p), labels, users, self.tasks, f'eval/{split}')
            for p in preds]

  def selection(self):
    t, names = self.config.train, [x.name for x in self.tasks]
    task = t.select_task or names[0]
    prefix = 'eval/valid' if len(names) == 1 else f'eval/valid/{task}'
    return Selection(f'{prefix}/{t.select_metric}', t.select_metric in HIGHER_IS_BETTER)
