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
  """learning_rate: overrides cfg.learning_rate (the injected peak: make_optimizer)."""
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
        lr, cfg.decay_steps or max(num_steps - cfg.warmup_steps, 1),
        cfg.decay_rate, staircase=cfg.staircase)
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


# Optimiser hyper-parameters that may differ per run of a group (multirun.VARY_KEYS): they live
# in the optimiser state (optax.inject_hyperparams), so one compiled step serves every run.
OPTIM_HPARAMS = ('learning_rate', 'weight_decay', 'momentum')


def optimizer_chain(cfg, num_steps: int, trainable: str = 'all', *, learning_rate,
                    weight_decay=None, momentum=None) -> optax.GradientTransformation:
  """The optimiser (see make_optimizer) from explicit hyper-parameter values (Python floats
  or traced arrays). weight_decay / momentum None: the step is left out (adam/adagrad/sgd
  without L2; plain SGD); a value, even 0, builds it."""
  sched = make_schedule(cfg, num_steps, learning_rate)
  wd = 0.0 if weight_decay is None else weight_decay
  if cfg.name == 'adam':
    opt = optax.adam(sched)
  elif cfg.name == 'adamw':
    opt = optax.adamw(sched, weight_decay=wd)
  elif cfg.name == 'adagrad':
    opt = optax.adagrad(sched)
  elif cfg.name == 'sgd':
    opt = optax.sgd(sched, momentum=momentum)
  else:
    raise ValueError(f'unknown optimizer {cfg.name!r} (config.optim.name); '
                     f'choose from {OPTIMIZERS}')
  if cfg.clip_norm > 0:
    opt = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
  if cfg.name != 'adamw' and weight_decay is not None:
    opt = optax.chain(optax.add_decayed_weights(wd), opt)
  if trainable == 'embeddings':
    opt = optax.multi_transform({'embedding': opt, 'dense': optax.set_to_zero()}, param_labels)
  elif trainable != 'all':
    raise ValueError(f'unknown config.train.trainable={trainable!r}; choose from {TRAINABLE}')
  return opt


def optimizer_hparams(cfg, per_run=()) -> dict[str, float]:
  """{name: value} of the optimiser's injected hyper-parameters: the learning rate, and the
  weight decay / momentum where cfg sets them or they vary per run (names in per_run)."""
  hp = {'learning_rate': float(cfg.learning_rate)}
  if cfg.weight_decay or 'weight_decay' in per_run or cfg.name == 'adamw':
    hp['weight_decay'] = float(cfg.weight_decay)
  if cfg.name == 'sgd' and (cfg.momentum or 'momentum' in per_run):
    hp['momentum'] = float(cfg.momentum)
  return hp


def make_optimizer(cfg, num_steps: int, trainable: str = 'all',
                   per_run=()) -> optax.GradientTransformation:
  """cfg: config.optim (name, learning_rate, schedule, warmup_steps, clip_norm, weight_decay,
  momentum).

  weight_decay: adamw's decoupled decay; for adam, adagrad and sgd a plain L2 penalty on every
  parameter, (weight_decay / 2) * ||theta||^2 (its gradient weight_decay * theta is added
  before clipping and the optimiser): the DIN paper's dense "L2" baseline.

  The hyper-parameters of `optimizer_hparams` (the peak learning rate always) are injected
  (optax.inject_hyperparams): they live in opt_state.hyperparams, where a group sets each
  run's own values (train.py), and the schedule is rebuilt from the injected peak on every
  update, so its semantics are exactly those of a Python-float peak. per_run: the names of
  OPTIM_HPARAMS varied in a group; a varied weight decay (or momentum) builds its step for
  every run (a zero adds 0 * theta), so every run of the group has one state structure.
  opt_state.inner_state is the state of `optimizer_chain` with the same values (the layout
  of checkpoints written before the injection: train.py reads them).

  trainable (config.train.trainable): 'all', or 'embeddings': the whole chain above (decay,
  clipping by the embeddings' global norm, the optimiser) sees the embedding tables only
  (optax.multi_transform on `param_labels`); every other parameter gets optax.set_to_zero,
  so it stays bit-identical and holds no optimiser state."""
  def chain(learning_rate, weight_decay=None, momentum=None):   # None: not injected
    return optimizer_chain(cfg, num_steps, trainable, learning_rate=learning_rate,
                           weight_decay=weight_decay, momentum=momentum)
  return optax.inject_hyperparams(chain)(**optimizer_hparams(cfg, per_run))
