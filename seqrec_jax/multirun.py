"""Many runs as one program: a leading run axis [S] on every TrainState leaf, one vmapped step.

A group is `config.train.run_seeds` (() = seed, seed+1, ..., seed+runs-1) crossed with every
point of `config.train.vary` (JSON {dotted key: [values]}; several keys are crossed, in sorted
key order), row-major with the seeds outer. Run s is the single run whose config is
`run_config(config, runs[s])`: its own seed (init, data order, dropout keys) and its own values
of the varied keys, which are runtime inputs of the one compiled step (no recompiles):

  optim.learning_rate   the optimiser is rebuilt inside the vmapped step from a traced value
  optim.weight_decay    (adamw only; the state structure does not depend on either)
  model.dropout         every MLP's nn.Dropout takes the run's rate (flax method interception)
  model.mba_lambda      the mini-batch aware penalty (linear in lambda) takes the run's lambda
  train.loss_weights    [T] per-task weights of the summed loss

Any other key changes shapes or the program and is an error naming it. The loop in train.py
is the same for one run and for a group; this module holds what differs (see docs/multirun.md).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from seqrec_jax import parallel, steps
from seqrec_jax.data.pipeline import _prefetch, epoch_permutation
from seqrec_jax.layers.mlp import MLP
from seqrec_jax.state import make_optimizer

# dotted config key -> name of the per-run hyper-parameter array the step receives.
VARY_KEYS = {'optim.learning_rate': 'learning_rate', 'optim.weight_decay': 'weight_decay',
             'model.dropout': 'dropout_keep', 'model.mba_lambda': 'mba_lambda',
             'train.loss_weights': 'loss_weights'}
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
  return parse_vary(config.train.get('vary', ''))


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
  return t.get('runs', 1) != 1 or bool(t.get('run_seeds', ())) or bool(vary_of(config))


def group_runs(config, num_tasks: int | None = None) -> list[Run]:
  """The runs of config's group in order (seeds outer, then the vary points, row-major).
  The keys are validated with the rest of the config (configs/validate.py); only what needs
  the dataset (num_tasks: a varied train.loss_weights' length) is checked here."""
  t = config.train
  seeds = tuple(int(s) for s in t.get('run_seeds', ()))
  if not seeds:
    seeds = tuple(config.seed + i for i in range(int(t.get('runs', 1))))
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


def run_tx(make_tx, h):
  """The optimiser of one run from its hyper-parameters {name: value} (traced in the step;
  the group's state is initialised with the same overrides, so the structures agree)."""
  return make_tx(**{k: h[k] for k in ('learning_rate', 'weight_decay') if k in h})


def group_train_step(state, batch, rng, hp, active, *, tasks, make_tx):
  """state: TrainState with [S] leaves; batch [S, B, ...]; rng [S] keys; hp {name: [S, ...]};
  active [S] bool: runs that stopped early or diverged keep their state (masked, not removed).
  metrics['running'] [S]: active and this step's loss finite. A run whose loss turns
  non-finite keeps the state that loss was computed from; the loop passes 'running' on as
  the next step's `active`, so the run stays frozen until train.py marks it diverged."""

  def one(st, b, r, h):
    tx = run_tx(make_tx, h)
    with runtime_hparams(h):
      new, m = steps.train_step(st.replace(tx=tx), b, r, tasks=tasks,
                                task_weights=h.get('loss_weights'))
    return new.replace(tx=st.tx), m

  new, metrics = jax.vmap(one)(state, batch, rng, hp)
  running = active & jnp.isfinite(metrics['loss'])
  keep = lambda n, o: jnp.where(running.reshape(running.shape + (1,) * (n.ndim - 1)), n, o)
  return jax.tree.map(keep, new, state), dict(metrics, running=running)


def group_eval_step(state, batch, *, tasks):
  """[S] state, shared batch [B, ...] -> predictions [S, B, T]."""
  return jax.vmap(lambda st: steps.eval_step(st, batch, tasks=tasks))(state)


def keep_best(best, state, improved):
  """Per run: state where improved [S] else best."""
  return jax.tree.map(
      lambda b, s: jnp.where(improved.reshape(improved.shape + (1,) * (s.ndim - 1)), s, b),
      best, state)


def stacked_shardings(single_sh, mesh):
  """Shardings of a single run's state -> the same with a leading run axis (on `runs`)."""
  lead = parallel.RUNS if parallel.RUNS in mesh.axis_names else None
  return jax.tree.map(lambda s: NamedSharding(mesh, P(lead, *s.spec)), single_sh)


def run_axis_sharding(mesh, *rest) -> NamedSharding:
  lead = parallel.RUNS if parallel.RUNS in mesh.axis_names else None
  return NamedSharding(mesh, P(lead, *rest))


def group_batches(split, global_batch: int, seeds: Sequence[int], start_step: int,
                  num_steps: int, prefetch: int = 2):
  """Yields [S, B, ...] host batches for steps [start_step, num_steps): row s is exactly the
  batch a single run with seed seeds[s] reads at that step (data/pipeline.train_batches)."""
  n = len(split)
  spe = n // global_batch
  if spe == 0:
    raise ValueError(f'train split has {n} rows, fewer than one global batch ({global_batch})')
  cache: dict[int, list[np.ndarray]] = {}

  def make(step):
    epoch, pos = divmod(step, spe)
    if epoch not in cache:
      cache.clear()
      cache[epoch] = [epoch_permutation(s, epoch, n) for s in seeds]
    rows = np.stack([np.sort(p[pos * global_batch:(pos + 1) * global_batch])
                     for p in cache[epoch]])
    b = split.__getitems__(rows.reshape(-1))
    return {k: v.reshape(rows.shape + v.shape[1:]) for k, v in b.items()}

  yield from _prefetch((make(s) for s in range(start_step, num_steps)), prefetch)


def make_tx_fn(optim_cfg, total_steps: int):
  return functools.partial(make_optimizer, optim_cfg, total_steps)
