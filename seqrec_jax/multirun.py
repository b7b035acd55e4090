"""Many runs as one program: a leading run axis [S] on every TrainState leaf, one step.

Every program of train.py is a group of S >= 1 runs (a single run is S = 1). A group is
`config.train.run_seeds` (() = seed, seed+1, ..., seed+runs-1) crossed with every point of
`config.train.vary` (JSON {dotted key: [values]}; several keys are crossed, in sorted key
order), row-major with the seeds outer. Run s is the single run whose config is
`run_config(config, runs[s])`: its own seed (init, data order, dropout keys) and its own values
of the varied keys, which are runtime values of the one compiled step (no recompiles):

  optim.learning_rate   injected optimiser hyper-parameters (optax.inject_hyperparams,
  optim.weight_decay    state.make_optimizer): each run's values live in its optimiser state;
  optim.momentum        (sgd) a varied decay / momentum builds its step for every run
  model.dropout         every MLP's nn.Dropout takes the run's rate (flax method interception)
  model.mba_lambda      the mini-batch aware penalty (linear in lambda) takes the run's lambda
  train.loss_weights    [T] per-task weights of the summed loss

The last three reach the task's loss as `hparams` (tasks/base.py). Any other key changes
shapes or the program and is an error naming it (configs/validate.py). The loop, the step and
the checkpoints are train.py's for every S; this module holds the group's runs and values
(see docs/multirun.md).
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from seqrec_jax.layers.mlp import MLP

# dotted config key -> name of the per-run hyper-parameter array the step receives.
VARY_KEYS = {'optim.learning_rate': 'learning_rate', 'optim.weight_decay': 'weight_decay',
             'optim.momentum': 'momentum', 'model.dropout': 'dropout_keep',
             'model.mba_lambda': 'mba_lambda', 'train.loss_weights': 'loss_weights'}
# Keys whose module is built with the largest value of the group (so the layer exists when any
# run uses it) and called with each run's value (`runtime_hparams`).
_PLACEHOLDER_KEYS = ('model.dropout', 'model.mba_lambda')


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of a group: its index, seed and {dotted key: value} of the varied keys."""
  index: int
  seed: int
  hparams: dict[str, Any]


def vary_of(config) -> dict[str, list]:
  """config.train.vary parsed: {dotted key: [values]} ('' or {} = nothing varies)."""
  return parse_vary(config.train.vary)


def parse_vary(v) -> dict[str, list]:
  """A train.vary value (a JSON string or a dict) as {dotted key: [values]}; ValueError naming
  it if it is not a JSON object. Its keys and values are checked by configs/validate.py."""
  if isinstance(v, str):
    if not v.strip():
      return {}
    try:
      v = json.loads(v)
    except json.JSONDecodeError as e:
      raise ValueError(f'config.train.vary={v!r} is not a JSON object '
                       '{"dotted.key": [values, ...]}: ' + str(e)) from e
  if not isinstance(v, dict):
    raise ValueError(f'config.train.vary={v!r} must be a JSON object {{"dotted.key": [values]}}')
  return dict(v)


def is_group(config) -> bool:
  t = config.train
  return t.runs != 1 or bool(t.run_seeds) or bool(vary_of(config))


def group_runs(config, num_tasks: int | None = None) -> list[Run]:
  """The runs of config's group in order (seeds outer, then the vary points, row-major).
  The keys are validated with the rest of the config (configs/validate.py); only what needs
  the dataset (num_tasks: a varied train.loss_weights' length) is checked here."""
  t = config.train
  seeds = tuple(int(s) for s in t.run_seeds)
  if not seeds:
    seeds = tuple(config.seed + i for i in range(int(t.runs)))
  vary = vary_of(config)
  for v in vary.get('train.loss_weights', ()):
    if num_tasks is not None and len(v) != num_tasks:
      raise ValueError(f"config.train.vary['train.loss_weights'] value {v!r}: must be a list "
                       f'of {num_tasks} per-task weights (the dataset has {num_tasks} tasks)')
  keys = sorted(vary)
  points = [dict(zip(keys, p)) for p in itertools.product(*(vary[k] for k in keys))]
  return [Run(i, s, p) for i, (s, p) in enumerate(itertools.product(seeds, points))]


def run_config(config, run: Run) -> ml_collections.ConfigDict:
  """The single-run config equal to `run` of config's group."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.seed = run.seed
  c.train.runs, c.train.run_seeds, c.train.vary = 1, (), ''
  for key, v in run.hparams.items():
    *path, last = key.split('.')
    node = c
    for p in path:
      node = node[p]
    node[last] = tuple(v) if isinstance(v, list) else type(node[last])(v)
  return c


def model_config(config, runs: Sequence[Run]):
  """config.model for the group's module: a varied dropout rate or MBA lambda is built with the
  group's largest value (so the layer exists if any run uses it); each run's value replaces it
  at call time (`runtime_hparams`)."""
  m = None
  for key in _PLACEHOLDER_KEYS:
    if key in runs[0].hparams:
      m = m or ml_collections.ConfigDict(config.model.to_dict())
      m[key.split('.', 1)[1]] = float(max(r.hparams[key] for r in runs))
  return config.model if m is None else m


def hparam_arrays(config, runs: Sequence[Run]) -> dict[str, np.ndarray]:
  """{step argument name: [S] (or [S, T]) float32} for the varied keys only."""
  out = {}
  for key, name in VARY_KEYS.items():
    if key not in runs[0].hparams:
      continue
    vals = [r.hparams[key] for r in runs]
    if key == 'model.dropout':
      vals = [1.0 - float(v) for v in vals]   # keep probability, as nn.Dropout computes it
    out[name] = np.asarray(vals, np.float32)
  return out


@contextlib.contextmanager
def runtime_hparams(h: dict[str, Any]):
  """Inside: the model's nn.Dropout layers of MLPs (model.dropout) use the (traced) keep
  probability h['dropout_keep'], with the same rng, mask and scaling as nn.Dropout, and
  Embedder.mba_penalty uses h['mba_lambda'] (when those are in h)."""
  keep_prob, mba_lambda = h.get('dropout_keep'), h.get('mba_lambda')

  def interceptor(next_fun, args, kwargs, context):
    mod = context.module
    if mba_lambda is not None and context.method_name == 'mba_penalty':
      return next_fun(args[0], mba_lambda)
    if (keep_prob is None or not isinstance(mod, nn.Dropout) or context.method_name != '__call__'
        or not isinstance(mod.parent, MLP)):
      return next_fun(*args, **kwargs)
    inputs = args[0]
    deterministic = nn.merge_param('deterministic', mod.deterministic,
                                   kwargs.get('deterministic', args[1] if len(args) > 1 else None))
    if deterministic:
      return inputs
    rng = kwargs.get('rng') or mod.make_rng(mod.rng_collection)
    shape = list(inputs.shape)
    for d in mod.broadcast_dims:
      shape[d] = 1
    mask = jnp.broadcast_to(jax.random.bernoulli(rng, p=keep_prob, shape=shape), inputs.shape)
    return jax.lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))

  with nn.intercept_methods(interceptor):
    yield
