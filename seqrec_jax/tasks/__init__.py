"""Tasks on the training loop (base.py: the interface). `build(config, ds)` makes the task
config.train.task names ('ranking' when unset)."""
from __future__ import annotations

import importlib

from seqrec_jax.tasks.base import Evaluator, LossOutput, Selection, Task

# name -> 'module:class' (imported on use: a task's model code loads only when it runs).
TASKS = {'ranking': 'seqrec_jax.tasks.ranking:RankingTask',
         'two_tower': 'seqrec_jax.tasks.two_tower:TwoTowerTask'}


def name_of(config) -> str:
  return str(config.train.task)


def build(config, ds) -> Task:
  """The task of config (config.train.task) on the data.Dataset ds."""
  name = name_of(config)
  if name not in TASKS:
    raise ValueError(f'unknown config.train.task={name!r}; choose from {sorted(TASKS)}')
  module, cls = TASKS[name].split(':')
  return getattr(importlib.import_module(module), cls)(config, ds)


__all__ = ['Evaluator', 'LossOutput', 'Selection', 'Task', 'TASKS', 'build', 'name_of']
