"""One run per workdir, and a resume only with the config that started it.

* Lock: `<workdir>/.lock`, an exclusive `fcntl.flock` held for the whole run and released on
  any exit; the kernel drops it when the holder dies (kill -9, crash), so a stale lock never
  blocks the next run. A second run into a locked workdir fails at once, naming the holder's
  pid, host and start time (written into the lock file). Multi-process runs: process 0 holds it.
* `<workdir>/config.json`: the full resolved config of the first run. A later run into the same
  workdir (a resume, or a rerun of a finished run) must have the same config except for
  `NEUTRAL_KEYS`, which cannot change results; every other difference is refused, each key
  with its old and new value. A key missing from the old config.json (added to the table
  since) is no difference when the new config has it at its default (configs/keys.py: a new
  key's default is what runs did before it existed). With nothing to resume yet (no
  checkpoint) the new config replaces the old one.

`guard` wraps `train_and_evaluate` with both (and with config validation, before anything is
built or any directory is created).
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import socket
import time
from typing import Any, Iterator, Mapping

from seqrec_jax.checkpoint import CheckpointMismatchError
from seqrec_jax.configs import keys

CONFIG_FILE = 'config.json'
LOCK_FILE = '.lock'
# Keys that cannot change a run's results: logging and checkpoint cadence, the progress bar,
# where and how prepared data is read, the evaluation batch (rows are scored independently
# and the last batch is padded), and how the same maths is laid out on devices (mesh,
# strategy, packed histories: equal up to float rounding; a run may resume on another layout).
NEUTRAL_KEYS = ('train.log_every', 'train.progress', 'train.checkpoint_every',
                'train.keep_checkpoints', 'data.eval_batch_size', 'data.data_dir',
                'data.in_memory', 'data.max_memory_mb', 'parallel.data', 'parallel.model',
                'parallel.strategy', 'data.pack_history', 'data.pack_buckets',
                'data.pack_max_fill', 'data.device_resident', 'data.device_memory_fraction')
_MISSING = '<missing>'


class WorkdirLockedError(RuntimeError):
  pass


def _holder(path: str) -> str:
  try:
    with open(path) as f:
      h = json.load(f)
    return f"pid {h['pid']} on host {h['host']} (started {h['started']})"
  except (OSError, ValueError, KeyError, TypeError):
    return 'a process that has not written its pid yet'


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds the workdir's exclusive lock (creating the workdir); WorkdirLockedError if held."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise WorkdirLockedError(
          f'workdir {workdir} is in use by {_holder(path)}: one run per workdir (two runs '
          'would overwrite each other\'s checkpoints). Wait for it, stop it, or use another '
          '--workdir') from None
    holder = {'pid': os.getpid(), 'host': socket.gethostname(),
              'started': time.strftime('%Y-%m-%dT%H:%M:%S%z')}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    try:
      yield
    finally:
      os.ftruncate(fd, 0)
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)


def flatten(d: Mapping[str, Any]) -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}; values as JSON stores them (tuples -> lists)."""
  return {k: json.loads(json.dumps(v, default=str)) for k, v in keys.flatten(d).items()}


@functools.lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
  from seqrec_jax.configs import default  # pylint: disable=g-import-not-at-top
  return flatten(default.get_config().to_dict())


def added_at_old_value(key: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
  """`key` was added to the config after `old` (flat) was recorded, and `new` (flat) sets it to
  its default, which is what runs did before it existed (configs/keys.py): no difference."""
  return key not in old and key in _defaults() and new.get(key, _MISSING) == _defaults()[key]


def _neutral(key: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
  if key in NEUTRAL_KEYS:
    return True
  constant = all(c.get('optim.schedule') == 'constant' for c in (old, new))
  steps = [c.get('train.num_steps') for c in (old, new)]
  if key == 'train.num_epochs':       # unused when both runs give num_steps
    return all(isinstance(s, int) and s > 0 for s in steps)
  if key == 'train.num_steps':
    # Extending a run is exact when the learning rate does not depend on the total, the old
    # last step was an evaluation anyway, and the new total is larger.
    ev = old['train.eval_every']
    return (constant and all(isinstance(s, int) and s > 0 for s in steps) and
            steps[1] >= steps[0] and isinstance(ev, int) and ev > 0 and steps[0] % ev == 0)
  return False


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
  """'key: old -> new' for each result-changing difference of two flattened configs; a key
  missing from `old` (added since it was recorded) is at its default there."""
  old = {**_defaults(), **old}
  out = []
  for k in sorted(set(old) | set(new)):
    a, b = old.get(k, _MISSING), new.get(k, _MISSING)
    if a != b and not _neutral(k, old, new):
      out.append(f'{k}: {a!r} -> {b!r}')
  return out


def _has_results(workdir: str) -> bool:
  """Whether the workdir holds a checkpoint a run would resume from or report (a finished
  run always has one: the last step is an evaluation and is saved)."""
  for sub in ('checkpoints', 'best'):
    d = os.path.join(workdir, sub)
    if os.path.isdir(d) and any(n.isdigit() for n in os.listdir(d)):
      return True
  return False


class ConfigChangedError(CheckpointMismatchError):
  pass


def check_config(workdir: str, config, write: bool = True) -> None:
  """Compares config with the workdir's config.json (ConfigChangedError naming every
  result-changing difference), then records it there (process 0: write=True)."""
  new = flatten(config.to_dict())
  path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(path) and _has_results(workdir):
    try:
      with open(path) as f:
        old = flatten(json.load(f))
    except (OSError, ValueError) as e:
      raise ConfigChangedError(f'{path} is unreadable ({e}): cannot check that this run has the '
                               'config of the one it resumes; use a fresh --workdir') from None
    diffs = config_differences(old, new)
    if diffs:
      raise ConfigChangedError(
          f'{workdir} was started with another config ({path}); resuming or rerunning it with '
          f'this one would mix results. Result-changing differences (old -> new):\n  '
          + '\n  '.join(diffs) + '\nUse a fresh --workdir, or the old values. Keys that may '
          f'change on resume: {", ".join(NEUTRAL_KEYS)} (and train.num_steps, see '
          'docs/reliability.md).')
  if write:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(config.to_dict(), f, indent=1, sort_keys=True, default=str)
    os.replace(tmp, path)


def guard(train_fn):
  """Decorates train_and_evaluate(config, workdir, dataset=None): validates the config, then
  runs under the workdir lock after checking/recording config.json."""
  @functools.wraps(train_fn)
  def wrapped(config, workdir: str, dataset=None):
    import jax  # pylint: disable=g-import-not-at-top
    from seqrec_jax.configs import validate  # pylint: disable=g-import-not-at-top
    # Before any directory exists; a Dataset value's name stands in for the registry.
    validate.validate_config(config, None if dataset is None else dataset.name)
    lead = jax.process_index() == 0
    with lock(workdir) if lead else contextlib.nullcontext():
      check_config(workdir, config, write=lead)
      return train_fn(config, workdir, dataset)
  return wrapped
