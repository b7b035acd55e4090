"""Orbax checkpoints: `checkpoints/` (periodic, keep-N, resume from latest) and `best/`
(the state that scored best on the validation split; used for the final test report).

Each checkpoint stores the TrainState and a JSON `meta` item holding the run's fingerprint
(model, dataset, parameter shapes) and the loop's bookkeeping (best metric, early stopping).
Restoring into a run whose fingerprint differs is an error, not a silent mismatch.

Integrity: `meta` also holds a CRC32 of every state leaf (single-process runs, where each
array is fully addressable). A checkpoint that does not restore (truncated or garbage files)
or whose restored state fails the checksum (flipped bits) is corrupt: resume falls back to
the newest periodic checkpoint that restores and verifies, logs which steps it skipped and
why, and moves them to `<workdir>/corrupt/` (kept for inspection; the replayed run saves
those steps again). A corrupt `best/` is an error at resume, raised before anything in the
workdir changes (metrics.jsonl keeps the finished run's summary). A warm start's source
(read_source) is verified the same way (restore_verified); a corrupt one is an error, never a
fallback. `load_best(workdir)` reads a finished run's best-valid variables and config for
scoring (serving, funnels) without building a training program. A save that fails for want of
disk space is a CheckpointDiskFullError: one line naming the workdir and the last good
checkpoint, which stays.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import json
import os
import shutil
import zlib
from typing import Any

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from seqrec_jax import configs, platform_defaults


class CheckpointMismatchError(ValueError):
  pass


class CheckpointCorruptError(RuntimeError):
  pass


class CheckpointDiskFullError(OSError):
  """A save failed for want of disk space (ENOSPC); the message is one line naming the
  workdir and the last good checkpoint (orbax saves are atomic: a failed one is never
  'latest', and nothing older is deleted before a save commits)."""


def _disk_full(e: BaseException | None) -> bool:
  """Whether e, or an exception it wraps (orbax re-raises its commit threads' errors,
  sometimes as another type), is ENOSPC."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if getattr(e, 'errno', None) == errno.ENOSPC or 'No space left on device' in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False


def state_checksum(state) -> str | None:
  """CRC32 over every leaf's bytes, in tree order; None when a leaf is not fully addressable
  (multi-process shards)."""
  return _crc(jax.tree.leaves(state))


def _crc(leaves) -> str | None:
  if any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in leaves):
    return None
  crc = 0
  for x in jax.device_get(leaves):
    crc = zlib.crc32(np.ascontiguousarray(x).view(np.uint8).reshape(-1), crc)
  return f'{crc:08x}'


def _saved_order_checksum(state, state_dir: str) -> str | None:
  """state_checksum of a state restored without a target (nested dicts and lists, whose
  order is not the saved tree's: a TrainState's fields are not sorted): its leaves in the
  order orbax recorded them at the save (state/_METADATA, one entry per saved leaf)."""
  with open(os.path.join(state_dir, '_METADATA')) as f:
    entries = json.load(f)['tree_metadata'].values()
  leaves = []
  for entry in entries:
    node = state
    for k in entry['key_metadata']:   # key_type 1: a sequence index, 2: a dict key
      node = node[int(k['key'])] if k['key_type'] == 1 else node[k['key']]
    if node is not None and not isinstance(node, (dict, list)):   # empty nodes hold nothing
      leaves.append(node)
  return _crc(leaves)


def _meta_checksum(meta: dict) -> str:
  rest = {k: v for k, v in meta.items() if k != 'meta_checksum'}
  return f'{zlib.crc32(json.dumps(rest, sort_keys=True).encode()):08x}'


def _reason(e: BaseException) -> str:
  lines = str(e).strip().splitlines()
  return f'{type(e).__name__}: {lines[0][:300] if lines else ""}'


def flat_leaves(tree) -> dict[str, Any]:
  """{keystr path: leaf} of a pytree (the names fingerprints and warm starts compare)."""
  return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def param_fingerprint(params) -> dict[str, list[int]]:
  return {k: list(x.shape) for k, x in flat_leaves(params).items()}


def restore_verified(mgr, step: int, abstract_state=None, check=None):
  """(state, meta) of checkpoint `step` of orbax manager `mgr`, verified: the meta restores
  and matches its own CRC32, check(meta, where) passes (e.g. the fingerprint), the state
  restores (into abstract_state; None: as saved, nested dicts of host arrays) and matches the
  state CRC32 saved in its meta. The one verification of resume, best/ and warm starts:
  CheckpointCorruptError('<dir>/<step>: what failed') otherwise.

  abstract_state may also be a function meta -> (abstract state, convert or None): the
  layout to restore depends on what wrote the checkpoint (train.Program.restore_target reads
  older layouts); convert(state, meta) -> (state, meta) runs after the verification."""
  where = f'{mgr.directory}/{step}'
  try:
    meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
    if not isinstance(meta, dict):
      raise ValueError(f'meta is a {type(meta).__name__}, not a JSON object')
    if 'meta_checksum' in meta and meta['meta_checksum'] != _meta_checksum(meta):
      raise ValueError('meta checksum mismatch (the file changed after the save)')
  except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore raise many kinds)
    raise CheckpointCorruptError(f'{where}: meta does not restore ({_reason(e)})') from None
  if check is not None:
    check(meta, where)
  convert = None
  if callable(abstract_state):
    abstract_state, convert = abstract_state(meta)
  target = ocp.args.StandardRestore(abstract_state) if abstract_state is not None else (
      ocp.args.StandardRestore())
  try:
    out = mgr.restore(step, args=ocp.args.Composite(state=target, meta=ocp.args.JsonRestore()))
    want = meta.get('checksum')
    got = None if want is None else (
        state_checksum(out['state']) if abstract_state is not None else
        _saved_order_checksum(out['state'], os.path.join(where, 'state')))
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointCorruptError(f'{where}: state does not restore ({_reason(e)})') from None
  if got is not None and got != want:
    raise CheckpointCorruptError(f'{where}: state checksum {got} != {want} saved with it '
                                 '(the files changed after the save)')
  return (out['state'], meta) if convert is None else convert(out['state'], meta)


class Checkpointer:
  """Wraps two orbax CheckpointManagers; see the module docstring."""

  def __init__(self, workdir: str, keep: int, fingerprint: dict[str, Any]):
    self.fingerprint = fingerprint
    self.workdir = os.path.abspath(workdir)
    # Distinct barrier names per manager: with several processes, async saves of the same
    # step by both managers would otherwise collide on one coordination-service barrier.
    opts = lambda n, name: ocp.CheckpointManagerOptions(
        max_to_keep=n, create=True,
        multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name))
    self.latest = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                                        options=opts(keep, 'latest'))
    self.best = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'best'),
                                      options=opts(1, 'best'))

  @staticmethod
  def _args(state, meta):
    return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))

  @contextlib.contextmanager
  def _writing(self):
    """Turns a full disk (ENOSPC, raised by this save or by an earlier async one) into one
    CheckpointDiskFullError line naming the workdir and the last good checkpoint."""
    try:
      yield
    except CheckpointDiskFullError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (orbax wraps errors of its threads)
      if not _disk_full(e):
        raise
      self.latest.reload()
      last = self.latest.latest_step()
      kept = (f'the last good checkpoint is step {last} in {self.latest.directory}, and a '
              'rerun with the same --workdir resumes from it once space is freed'
              if last is not None else 'no checkpoint had been written yet')
      raise CheckpointDiskFullError(
          errno.ENOSPC, f'no space left on device for a checkpoint in workdir {self.workdir} '
          f'({_reason(e)}); nothing was lost: {kept}') from e

  def save(self, step: int, state, meta: dict, best: bool = False):
    # A deep copy: the async write happens later, and the loop goes on updating its per-run
    # dicts (best, bad_evals, diverged), which must not reach the file behind the checksum.
    meta = dict(copy.deepcopy(meta), fingerprint=self.fingerprint, checksum=state_checksum(state))
    meta['meta_checksum'] = _meta_checksum(meta)
    mgr = self.best if best else self.latest
    with self._writing():
      mgr.save(step, args=self._args(state, meta), force=True)

  def _check(self, meta: dict, where: str):
    got = meta.get('fingerprint', {})
    for key in ('model', 'dataset'):
      if got.get(key) != self.fingerprint.get(key):
        raise CheckpointMismatchError(
            f'checkpoint {where} was written by {key}={got.get(key)!r}, this run has '
            f'{key}={self.fingerprint.get(key)!r}; use a fresh --workdir or the same config')
    # 'data' (data.fingerprint) only where both record it (older checkpoints do not).
    if 'data' in got and 'data' in self.fingerprint and got['data'] != self.fingerprint['data']:
      raise CheckpointMismatchError(
          f'checkpoint {where} was written on other data than this run\'s (data.fingerprint of '
          f'the spec and split sizes {got["data"]} != {self.fingerprint["data"]}); give the '
          'same dataset or use a fresh --workdir')
    mine, theirs = self.fingerprint.get('params', {}), got.get('params', {})
    if 'runs' in self.fingerprint and 'runs' not in got and self.fingerprint['runs'] == 1:
      # A single run written before every program had a run axis (train.py reads it).
      mine = {k: v[1:] for k, v in mine.items()}
    if theirs != mine:
      diff = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)][:3]
      raise CheckpointMismatchError(
          f'checkpoint {where} has different parameters than this model '
          f'(first differences: {[(k, theirs.get(k), mine.get(k)) for k in diff]} as '
          '(name, checkpoint shape, model shape)); use a fresh --workdir or the same config')

  def _restore(self, mgr, step, abstract_state):
    """(state, meta) of one checkpoint; CheckpointCorruptError if it does not restore or
    verify, CheckpointMismatchError if another run wrote it."""
    return restore_verified(mgr, step, abstract_state, check=self._check)

  def _set_aside(self, mgr, step: int, why: str):
    src = os.path.join(os.fspath(mgr.directory), str(step))
    dst = os.path.join(self.workdir, 'corrupt', f'{os.path.basename(os.fspath(mgr.directory))}'
                       f'_{step}')
    if jax.process_index() == 0 and os.path.exists(src):
      shutil.rmtree(dst, ignore_errors=True)
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      shutil.move(src, dst)
      logging.warning('skipped checkpoint %s: %s; moved to %s', src, why, dst)
    mgr.reload()

  def restore_latest(self, abstract_state):
    """Returns (state, meta) of the newest periodic checkpoint that restores and verifies, or
    None if there is none (corrupt ones are set aside). Also checks that `best/` restores."""
    restored, skipped, good = None, [], -1
    for step in sorted(self.latest.all_steps(), reverse=True):
      try:
        restored, good = self._restore(self.latest, step, abstract_state), step
        break
      except CheckpointCorruptError as e:
        skipped.append(step)
        self._set_aside(self.latest, step, str(e))
    if skipped:
      logging.warning('resuming from %s (skipped corrupt checkpoints %s)',
                      f'step {good}' if restored else 'scratch', skipped)
    # A 'best' saved after this step (killed before the next periodic save) would be saved
    # again when the run replays that step: drop it so the replay is exact.
    for s in list(self.best.all_steps()):
      if s > good:
        self.best.delete(s)
    if self.best.latest_step() is not None:
      try:
        self.restore_best(abstract_state)
      except CheckpointCorruptError as e:
        raise CheckpointCorruptError(
            f'{e}. It holds the state this run selected on the validation split, which cannot '
            f'be recomputed by resuming; nothing in {self.workdir} was changed (metrics.jsonl '
            'keeps the last summary). Restore the files, or start afresh in a new --workdir.'
        ) from None
    return restored

  def restore_best(self, abstract_state):
    step = self.best.latest_step()
    if step is None:
      return None
    return self._restore(self.best, step, abstract_state)

  def wait(self):
    with self._writing():
      self.latest.wait_until_finished()
      self.best.wait_until_finished()

  def close(self):
    """Waits for the async saves (raising their errors), then closes both managers."""
    with self._writing():
      try:
        self.wait()
      finally:
        self.latest.close()
        self.best.close()

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    """Closes on any exit; while another error propagates, a close error is logged, not
    raised over it."""
    if exc is None:
      self.close()
      return
    try:
      self.close()
    except Exception as e:  # pylint: disable=broad-except
      logging.warning('closing the checkpoints of %s after %s: %s', self.workdir,
                      type(exc).__name__, _reason(e))


def _steps_in(d: str) -> list[int]:
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def find_source(path: str, key: str = 'config.train.init_from') -> tuple[str, int]:
  """(manager directory, step) of the checkpoint `path` names: a workdir (its best/, else the
  newest step in checkpoints/), a best/ or checkpoints/ directory (its newest step), or one
  step's directory. CheckpointMismatchError naming `key` and the path if there is none."""
  p = os.path.abspath(path)
  for sub in ('best', 'checkpoints'):
    steps = _steps_in(os.path.join(p, sub))
    if steps:
      return os.path.join(p, sub), steps[-1]
  if _steps_in(p):
    return p, _steps_in(p)[-1]
  if os.path.basename(p).isdigit() and os.path.isdir(os.path.join(p, 'state')):
    return os.path.dirname(p), int(os.path.basename(p))
  raise CheckpointMismatchError(
      f'{key}={path!r}: no checkpoint there (expected a workdir with best/ or checkpoints/, '
      'one of those directories, or a checkpoint step directory holding state/)')


def read_source(path: str, key: str = 'config.train.init_from') -> tuple[dict, dict, str]:
  """(state as saved: {'params', 'batch_stats', ...} of host arrays, its meta, 'dir/step') of
  the checkpoint `path` names (find_source). Restored without a target, so the source's
  optimiser state may have any structure (e.g. another config.train.trainable)."""
  directory, step = find_source(path, key)
  where = f'{directory}/{step}'
  mgr = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False))
  try:
    state, meta = restore_verified(mgr, step)
  except CheckpointCorruptError as e:
    raise CheckpointCorruptError(
        f'{key}={path!r}: checkpoint {e}; a warm start does not fall back to another '
        f'checkpoint: restore the files, or set {key} to another one'
        f'{_others(path, where)}') from None
  finally:
    mgr.close()
  if not isinstance(state, dict) or 'params' not in state:
    raise CheckpointMismatchError(f'{key}={path!r}: {where} holds no params (keys '
                                  f'{sorted(state) if isinstance(state, dict) else type(state)})')
  return jax.device_get(state), meta, where


def _others(path: str, bad: str) -> str:
  """' (e.g. a, b)': the other checkpoint step directories near `path` (its workdir's best/
  and checkpoints/, or its manager directory), for the error naming a corrupt `bad`."""
  p = os.path.abspath(path)
  roots = [p, os.path.dirname(p), os.path.dirname(os.path.dirname(p))]
  dirs = {os.path.join(r, sub) for r in roots for sub in ('best', 'checkpoints')} | set(roots)
  found = sorted({os.path.join(d, str(s)) for d in dirs for s in _steps_in(d)} - {bad})
  return f' (e.g. {", ".join(found[:4])})' if found else ''


@dataclasses.dataclass
class Best:
  """A workdir's best-valid state as scoring reads it (`load_best`)."""
  config: Any                 # the workdir's config.json, resolved for this platform
  step: int
  meta: dict                  # the checkpoint's meta (fingerprint; a group's per-run 'runs')
  variables: list[dict]       # per run (one for a single run): {'params', 'batch_stats'}

  @property
  def model_config(self):
    """config.model: builds the module of every run (a group's varied dropout or MBA lambda
    changes no parameter and no eval-mode prediction)."""
    return self.config.model


def load_best(workdir: str) -> Best:
  """The best-valid checkpoint of `workdir` (best/, verified as a warm start's source is) as
  host arrays, one variables dict per run, with the config that trained it. Score with
  models.build_model(best.model_config, spec) and steps.predict."""
  state, meta, where = read_source(os.path.join(workdir, 'best'), key='load_best')
  with open(os.path.join(workdir, 'config.json')) as f:
    config = platform_defaults.resolve(configs.recorded(json.load(f)))
  both = {'params': state['params'], 'batch_stats': state.get('batch_stats') or {}}
  runs = meta.get('runs')
  per_run = ([jax.tree.map(lambda x, s=s: x[s], both) for s in range(len(runs))]
             if isinstance(runs, list) else [both])
  return Best(config, int(where.rsplit('/', 1)[1]), meta, per_run)
