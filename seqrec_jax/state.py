"""TrainState pytree and the optax optimiser built from config."""
from __future__ import annotations

from typing import Any, Callable

import flax.struct as struct
import jax
import optax


class TrainState(struct.PyTreeNode):
  """step [], params, batch_stats (Dice moving averages), opt_state; apply_fn/tx are static."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  apply_fn: Callable = struct.field(pytree_node=False)
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  @classmethod
  def create(cls, apply_fn, variables, tx):
    params = variables['params']
    return cls(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
               batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params),
               apply_fn=apply_fn, tx=tx)

  @property
  def variables(self):
    return {'params': self.params, 'batch_stats': self.batch_stats}


OPTIMIZERS = ('adam', 'adamw', 'adagrad', 'sgd')
# config.train.trainable: which parameters the optimiser updates.
TRAINABLE = ('all', 'embeddings')
SCHEDULES = ('constant', 'cosine', 'linear', 'exponential')


def make_schedule(cfg, num_steps: int, learning_rate=None):
  """learning_rate: overrides cfg.learning_rate (a traced per-run value in a multi-run group)."""
  lr = cfg.learning_rate if learning_rate is None else learning_rate
  if cfg.schedule == 'constant':
    sched = optax.constant_schedule(lr)
  elif cfg.schedule == 'cosine':
    sched = optax.cosine_decay_schedule(lr, max(num_steps - cfg.warmup_steps, 1))
  elif cfg.schedule == 'linear':
    sched = optax.linear_schedule(lr, 0.0, max(num_steps - cfg.warmup_steps, 1))
  elif cfg.schedule == 'exponential':
    # lr * decay_rate ** (step / decay_steps); decay_steps 0 = the whole run (after warmup),
    # so the rate is reached at the last step. staircase: one drop per decay_steps.
    sched = optax.exponential_decay(
        lr, cfg.get('decay_steps', 0) or max(num_steps - cfg.warmup_steps, 1),
        cfg.get('decay_rate', 0.1), staircase=cfg.get('staircase', False))
  else:
    raise ValueError(f'unknown schedule {cfg.schedule!r} (config.optim.schedule); '
                     f'choose from {SCHEDULES}')
  if cfg.warmup_steps > 0:
    sched = optax.join_schedules(
        [optax.linear_schedule(0.0, lr, cfg.warmup_steps), sched], [cfg.warmup_steps])
  return sched


def param_labels(params):
  """'embedding' for nn.Embed tables (parallel.is_embedding_table), 'dense' for the rest."""
  from seqrec_jax.parallel import is_embedding_table  # pylint: disable=g-import-not-at-top
  return jax.tree_util.tree_map_with_path(
      lambda p, x: 'embedding' if is_embedding_table(p, x) else 'dense', params)


def make_optimizer(cfg, num_steps: int, learning_rate=None, weight_decay=None,
                   trainable: str = 'all') -> optax.GradientTransformation:
  """cfg: config.optim (name, learning_rate, schedule, warmup_steps, clip_norm, weight_decay).

  weight_decay: adamw's decoupled decay; for adam, adagrad and sgd a plain L2 penalty on every
  parameter, (weight_decay / 2) * ||theta||^2 (its gradient weight_decay * theta is added
  before clipping and the optimiser): the DIN paper's dense "L2" baseline.

  learning_rate / weight_decay: override cfg's values with per-run traced scalars in a
  multi-run group (seqrec_jax/multirun.py); an overridden weight decay always builds the L2
  step (a zero decay adds 0 * theta), so every run of the group has one state structure.

  trainable (config.train.trainable): 'all', or 'embeddings': the whole chain above (decay,
  clipping by the embeddings' global norm, the optimiser) sees the embedding tables only
  (optax.multi_transform on `param_labels`); every other parameter gets optax.set_to_zero,
  so it stays bit-identical and holds no optimiser state."""
  sched = make_schedule(cfg, num_steps, learning_rate)
  wd = cfg.weight_decay if weight_decay is None else weight_decay
  if cfg.name == 'adam':
    opt = optax.adam(sched)
  elif cfg.name == 'adamw':
    opt = optax.adamw(sched, weight_decay=wd)
  elif cfg.name == 'adagrad':
    opt = optax.adagrad(sched)
  elif cfg.name == 'sgd':
    opt = optax.sgd(sched, momentum=cfg.get('momentum', 0.0) or None)
  else:
    raise ValueError(f'unknown optimizer {cfg.name!r} (config.optim.name); '
                     f'choose from {OPTIMIZERS}')
  if cfg.clip_norm > 0:
    opt = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
  if cfg.name != 'adamw' and (weight_decay is not None or cfg.weight_decay):
    opt = optax.chain(optax.add_decayed_weights(wd), opt)
  if trainable == 'embeddings':
    opt = optax.multi_transform({'embedding': opt, 'dense': optax.set_to_zero()}, param_labels)
  elif trainable != 'all':
    raise ValueError(f'unknown config.train.trainable={trainable!r}; choose from {TRAINABLE}')
  return opt
