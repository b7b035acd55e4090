"""Whole-config validation before anything is built or any directory is created.

`validate_config(config)` checks every key the training loop, the optimiser, the mesh and the
registries read (names against their registries, cadences and sizes against their ranges,
unknown keys against configs/default.py) and raises one `ConfigError` listing every problem,
each as `config.<key>=<value>: <what is allowed>`. `check_selection(config, tasks)` checks
the model-selection metric against the dataset's tasks once they are known (before any
compilation). Values left at None are platform defaults (seqrec_jax/platform_defaults.py).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

SELECT_METRICS = {'binary': ('auc', 'gauc', 'logloss'), 'regression': ('mse',),
                  'watch_time': ('mae',), 'completion_rate': ('mae', 'logloss')}
IN_MEMORY = ('auto', 'always', 'never', 'true', 'false')
_SOURCE = '(set in the config file or by --config.<key>=...)'


class ConfigError(ValueError):
  pass


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
  return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _int_at_least(lo: int) -> Callable[[Any], str | None]:
  return lambda v: None if _is_int(v) and v >= lo else f'must be an integer >= {lo}'


def _num_at_least(lo: float, strict: bool = False) -> Callable[[Any], str | None]:
  def check(v):
    ok = _is_num(v) and (v > lo if strict else v >= lo)
    return None if ok else f'must be a finite number {">" if strict else ">="} {lo}'
  return check


def _one_of(choices: Sequence[str]) -> Callable[[Any], str | None]:
  return lambda v: None if v in choices else f'must be one of {sorted(choices)}'


def _registered(what: str, key: str, names) -> Callable[[Any], str | None]:
  return lambda v: None if v in names else (
      f'unknown {what} {v!r} (config.{key}); registered: {sorted(names)}')


def _optional(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
  return lambda v: None if v is None else check(v)


def _numbers(v) -> str | None:
  ok = isinstance(v, (list, tuple)) and all(_is_num(w) and w >= 0 for w in v)
  return None if ok else 'must be a list of finite numbers >= 0 (one weight per task)'


def flatten(d, prefix: str = '') -> dict[str, Any]:
  """{'a.b': leaf} for a nested ConfigDict / dict."""
  out = {}
  for k, v in d.items():
    if hasattr(v, 'items'):
      out.update(flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def _registry(attr: str, *modules: str):
  """The first of `modules` that defines `attr` (registries may move between modules)."""
  import importlib  # pylint: disable=g-import-not-at-top
  for name in modules:
    try:
      mod = importlib.import_module(name)
    except ImportError:
      continue
    if hasattr(mod, attr):
      return getattr(mod, attr)
  raise ImportError(f'no registry {attr} in {modules}')


def _checks() -> dict[str, Callable[[Any], str | None]]:
  # Imported here: the registries pull in flax/optax, which a config file does not need.
  from seqrec_jax import models, parallel, state  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data import DATASETS  # pylint: disable=g-import-not-at-top
  from seqrec_jax.layers import activations, gating  # pylint: disable=g-import-not-at-top
  from seqrec_jax.models import builders  # pylint: disable=g-import-not-at-top
  attentions = _registry('ATTENTIONS', 'seqrec_jax.models.builders', 'seqrec_jax.layers.attention')
  all_metrics = sorted({m for ms in SELECT_METRICS.values() for m in ms})
  return {
      'seed': lambda v: None if _is_int(v) else 'must be an integer',
      'data.name': _registered('dataset', 'data.name', DATASETS),
      'data.batch_size': _int_at_least(1),
      'data.eval_batch_size': _int_at_least(1),
      'data.in_memory': lambda v: _one_of(IN_MEMORY)(str(v).lower()),
      'data.max_memory_mb': _num_at_least(0),
      'data.device_resident': lambda v: _one_of(('auto', 'always', 'never'))(str(v).lower()),
      'data.device_memory_fraction': lambda v: None if _is_num(v) and 0 < v <= 1 else
      'must be a number in (0, 1]',
      'data.pack_buckets': _optional(_int_at_least(1)),
      'data.pack_max_fill': _optional(
          lambda v: None if _is_num(v) and 0 <= v <= 1 else 'must be a number in [0, 1]'),
      'model.name': _registered('model', 'model.name', models.MODELS),
      'model.embed_dim': _int_at_least(1),
      'model.activation': _one_of(activations.ACTIVATIONS),
      'model.dropout': lambda v: None if _is_num(v) and 0 <= v < 1 else 'must be in [0, 1)',
      'model.attention.name': _registered('attention unit', 'model.attention.name', attentions),
      'model.field_gate': _one_of(builders.FIELD_GATES),
      'model.senet_reduction': _num_at_least(1),
      'model.senet_excitation': _one_of(gating.EXCITATIONS),
      'model.lhuc': lambda v: None if isinstance(v, str) and (
          v in ('none', 'all', 'last') or all(p.strip().lstrip('-').isdigit()
                                               for p in v.split(','))) else (
          "must be 'none', 'all', 'last' or comma-separated hidden-layer indices ('0,1')"),
      'model.lhuc_hidden': _int_at_least(1),
      'model.mba_lambda': _num_at_least(0),
      'model.attention.normalizer': _one_of(('none', 'softmax', 'sigmoid')),
      'model.attention.activation': _one_of(('same',) + tuple(activations.ACTIVATIONS)),
      'optim.name': _one_of(state.OPTIMIZERS),
      'optim.schedule': _one_of(state.SCHEDULES),
      'optim.learning_rate': _num_at_least(0, strict=True),
      'optim.warmup_steps': _int_at_least(0),
      'optim.clip_norm': _num_at_least(0),
      'optim.weight_decay': _num_at_least(0),
      'train.num_steps': lambda v: None if _is_int(v) else 'must be an integer (<= 0: num_epochs)',
      'train.eval_every': _int_at_least(1),
      'train.log_every': _int_at_least(1),
      'train.checkpoint_every': _int_at_least(1),
      'train.keep_checkpoints': lambda v: None if _is_int(v) and v >= 1 else (
          'must be an integer >= 1 (0 keeps no checkpoint: nothing to resume from)'),
      'train.patience': lambda v: None if _is_int(v) else 'must be an integer (<= 0: off)',
      'train.select_metric': _one_of(all_metrics),
      'train.trainable': _one_of(state.TRAINABLE),
      'train.loss_weights': _numbers,     # their number against the tasks: train._loss_weights
      'train.runs': _int_at_least(1),
      'train.run_seeds': lambda v: None if isinstance(v, (list, tuple)) and all(
          _is_int(x) for x in v) else 'must be a list of integer seeds (() = seed, seed+1, ...)',
      'train.init_from': lambda v: None if isinstance(v, str) else (
          "must be a path string (a workdir or checkpoint directory; '' = random init)"),
      'parallel.strategy': _one_of(parallel.STRATEGIES),
      'parallel.model': _int_at_least(1),
      'parallel.data': lambda v: None if _is_int(v) and (v == -1 or v >= 1) else (
          'must be -1 (all devices / model) or an integer >= 1'),
  }


def validate_config(config, dataset_name: str | None = None) -> None:
  """Raises ConfigError naming every invalid or unknown key of a training config.
  dataset_name: the name of a Dataset value the run is given (train_and_evaluate's
  `dataset`), which config.data.name must equal instead of naming a registered dataset."""
  from seqrec_jax.configs import default  # pylint: disable=g-import-not-at-top
  flat = flatten(config)
  known = flatten(default.get_config())
  problems = [f'config.{k}={flat[k]!r}: unknown key (not in seqrec_jax/configs/default.py; '
              'a misspelling?)' for k in sorted(set(flat) - set(known))]
  checks = _checks()
  if dataset_name is not None:
    checks['data.name'] = lambda v: None if v == dataset_name else (
        f'must be the name of the Dataset value given ({dataset_name!r})')
  for key, check in checks.items():
    if key not in flat:
      problems.append(f'config.{key} is missing (every config extends configs/default.py)')
      continue
    why = check(flat[key])
    if why:
      problems.append(f'config.{key}={flat[key]!r}: {why}')
  problems += _group_problems(config, flat, checks)
  if _is_int(flat.get('train.num_steps')) and flat['train.num_steps'] <= 0:
    why = _num_at_least(0, strict=True)(flat.get('train.num_epochs'))
    if why:
      problems.append(f'config.train.num_epochs={flat.get("train.num_epochs")!r}: {why} '
                      '(train.num_steps <= 0 uses it)')
  if problems:
    raise ConfigError(f'invalid config {_SOURCE}:\n  ' + '\n  '.join(problems))


def _group_problems(config, flat: dict[str, Any], checks) -> list[str]:
  """A multi-run group's keys (seqrec_jax/multirun.py): runs vs run_seeds, and train.vary
  parsed, each key vectorisable and each value valid for its key (the key's own check)."""
  from seqrec_jax import multirun  # pylint: disable=g-import-not-at-top
  out = []
  runs, seeds = flat.get('train.runs', 1), flat.get('train.run_seeds', ())
  if _is_int(runs) and isinstance(seeds, (list, tuple)) and seeds and runs not in (1, len(seeds)):
    out.append(f'config.train.runs={runs}: disagrees with config.train.run_seeds={seeds} '
               f'({len(seeds)} seeds); set one of them')
  try:
    vary = multirun.parse_vary(config['train'].get('vary', ''))
  except ValueError as e:
    return out + [str(e)]
  for key, values in vary.items():
    where = f'config.train.vary[{key!r}]'
    if key == 'seed':
      out.append('config.train.vary key "seed": set config.train.run_seeds instead')
    elif key not in flat:
      out.append(f'config.train.vary key {key!r} is not a config key')
    elif key not in multirun.VARY_KEYS:
      out.append(f'config.train.vary key {key!r} (currently {flat[key]!r}) changes shapes or '
                 'the compiled program, so it cannot vary inside one group; vectorisable keys: '
                 f'{sorted(multirun.VARY_KEYS)}. Run separate groups instead.')
    elif not isinstance(values, list) or not values:
      out.append(f'{where}={values!r}: must be a non-empty list')
    else:
      out += [f'{where} value {v!r}: {checks[key](v)}' for v in values if checks[key](v)]
  return out


def check_selection(config, tasks) -> None:
  """train.select_metric / select_task against the dataset's tasks ([Task(name, kind)])."""
  names = [t.name for t in tasks]
  task = (config.train.select_task or names[0]) if len(tasks) > 1 else names[0]
  if task != 'mean' and task not in names:
    raise ConfigError(f'config.train.select_task={task!r}: not a task of dataset '
                      f'{config.data.name!r}; choose from {names + ["mean"]} {_SOURCE}')
  kinds = [t.kind for t in tasks if task in ('mean', t.name)]
  allowed = sorted(set.union(*(set(SELECT_METRICS.get(k, ())) for k in kinds)))
  if config.train.select_metric not in allowed:
    raise ConfigError(f'config.train.select_metric={config.train.select_metric!r}: task '
                      f'{task!r} of dataset {config.data.name!r} has metrics {allowed} {_SOURCE}')
