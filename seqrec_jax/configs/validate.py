"""Whole-config validation before anything is built or any directory is created.

`validate_config(config)` runs the check of every key in the table (configs/default.py:
names against their owners' registries and option lists, cadences and sizes against their
ranges; unknown and missing keys) and of the keys that constrain each other, and raises one
`ConfigError` listing every problem, each as `config.<key>=<value>: <what is allowed>`.
`check_selection(config, tasks)` checks the model-selection metric against the dataset's
tasks once they are known (before any compilation). Values left at None are platform
defaults (seqrec_jax/platform_defaults.py).
"""
from __future__ import annotations

from typing import Any

from seqrec_jax.configs.keys import flatten, integer, number, satisfies

SELECT_METRICS = {'binary': ('auc', 'gauc', 'logloss'), 'regression': ('mse',),
                  'watch_time': ('mae',), 'completion_rate': ('mae', 'logloss')}
_SOURCE = '(set in the config file or by --config.<key>=...)'


class ConfigError(ValueError):
  pass


def validate_config(config, dataset_name: str | None = None) -> None:
  """Raises ConfigError naming every invalid, unknown or missing key of a training config
  (each key's check from the table, configs/default.py), and the keys that constrain each
  other. dataset_name: the name of a Dataset value the run is given (train_and_evaluate's
  `dataset`), which config.data.name must equal instead of naming a registered dataset."""
  from seqrec_jax.configs import default  # pylint: disable=g-import-not-at-top
  flat, table = flatten(config), default.BY_PATH
  problems = [f'config.{k}={flat[k]!r}: unknown key (not in seqrec_jax/configs/default.py; '
              'a misspelling?)' for k in sorted(set(flat) - set(table))]
  missing = [k for k in table if k not in flat]
  problems += [f'config.{k} is missing (every config extends configs/default.py)'
               for k in missing]
  for key, k in table.items():
    if key in flat:
      check = k.check
      if key == 'data.name' and dataset_name is not None:
        check = satisfies(lambda v: v == dataset_name,
                          f'the name of the Dataset value given ({dataset_name!r})')
      why = check(flat[key], key)
      if why:
        problems.append(f'config.{key}={flat[key]!r}: {why}')
  if not missing:
    problems += _group_problems(flat, table)
    if integer().ok(flat['train.num_steps']) and flat['train.num_steps'] <= 0:
      why = number(0, lo_open=True)(flat['train.num_epochs'])
      if why:
        problems.append(f'config.train.num_epochs={flat["train.num_epochs"]!r}: {why} '
                        '(train.num_steps <= 0 uses it)')
  if problems:
    raise ConfigError(f'invalid config {_SOURCE}:\n  ' + '\n  '.join(problems))


def _group_problems(flat: dict[str, Any], table) -> list[str]:
  """A multi-run group's keys (seqrec_jax/multirun.py): runs vs run_seeds, and train.vary
  parsed, each key vectorisable and each value valid for its key (the key's own check)."""
  from seqrec_jax import multirun  # pylint: disable=g-import-not-at-top
  out = []
  runs, seeds = flat['train.runs'], flat['train.run_seeds']
  if integer().ok(runs) and isinstance(seeds, (list, tuple)) and seeds and runs not in (
      1, len(seeds)):
    out.append(f'config.train.runs={runs}: disagrees with config.train.run_seeds={seeds} '
               f'({len(seeds)} seeds); set one of them')
  try:
    vary = multirun.parse_vary(flat['train.vary'])
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
      check = table[key].check
      out += [f'{where} value {v!r}: {check(v, key)}' for v in values if check(v, key)]
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
