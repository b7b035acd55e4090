"""Orbax checkpoints: `checkpoints/` (periodic, keep-N, resume from latest) and `best/`
(the state that scored best on the validation split; used for the final test report).

Each checkpoint stores the TrainState and a JSON `meta` item holding the run's fingerprint
(model, dataset, parameter shapes) and the loop's bookkeeping (best metric, early stopping).
Restoring into a run whose fingerprint differs is an error, not a silent mismatch.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
  pass


def param_fingerprint(params) -> dict[str, list[int]]:
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {jax.tree_util.keystr(p): list(x.shape) for p, x in flat}


def check_finite_losses(pending, ckpt: 'Checkpointer') -> None:
  """Raises FloatingPointError at the first non-finite loss in `pending` ([(step, metrics)],
  the steps since the last check). The loop calls it before every checkpoint, so no
  checkpoint holds a state past a non-finite step (the step skips its update, but a
  checkpoint after it would silently resume a run that skipped steps)."""
  losses = jax.device_get([m['loss'] for _, m in pending])
  for (step, _), loss in zip(pending, losses):
    if not np.all(np.isfinite(loss)):
      ckpt.wait()
      last = ckpt.latest.latest_step()
      where = ckpt.latest.directory
      good = (f'the last good checkpoint is step {last} in {where}; a rerun resumes from it'
              if last is not None else f'no checkpoint was written yet ({where})')
      raise FloatingPointError(
          f'non-finite training loss {loss} at step {step}; the last finite step is '
          f'{step - 1}, {good}. For another learning rate or clip_norm use a fresh --workdir.')


class Checkpointer:
  """Wraps two orbax CheckpointManagers; see the module docstring."""

  def __init__(self, workdir: str, keep: int, fingerprint: dict[str, Any]):
    self.fingerprint = fingerprint
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

  def save(self, step: int, state, meta: dict, best: bool = False):
    meta = dict(meta, fingerprint=self.fingerprint)
    mgr = self.best if best else self.latest
    mgr.save(step, args=self._args(state, meta), force=True)

  def _check(self, meta: dict, where: str):
    got = meta.get('fingerprint', {})
    for key in ('model', 'dataset'):
      if got.get(key) != self.fingerprint.get(key):
        raise CheckpointMismatchError(
            f'checkpoint {where} was written by {key}={got.get(key)!r}, this run has '
            f'{key}={self.fingerprint.get(key)!r}; use a fresh --workdir or the same config')
    if got.get('params') != self.fingerprint.get('params'):
      mine, theirs = self.fingerprint.get('params', {}), got.get('params', {})
      diff = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)][:3]
      raise CheckpointMismatchError(
          f'checkpoint {where} has different parameters than this model '
          f'(first differences: {[(k, theirs.get(k), mine.get(k)) for k in diff]} as '
          '(name, checkpoint shape, model shape)); use a fresh --workdir or the same config')

  def _restore(self, mgr, step, abstract_state):
    where = f'{mgr.directory}/{step}'
    meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
    self._check(meta, where)
    out = mgr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return out['state'], out['meta']

  def restore_latest(self, abstract_state):
    """Returns (state, meta) of the newest periodic checkpoint, or None if there is none."""
    step = self.latest.latest_step()
    if step is None:
      return None
    # A 'best' saved after this step (killed before the next periodic save) would be saved
    # again when the run replays that step: drop it so the replay is exact.
    for s in list(self.best.all_steps()):
      if s > step:
        self.best.delete(s)
    return self._restore(self.latest, step, abstract_state)

  def restore_best(self, abstract_state):
    step = self.best.latest_step()
    if step is None:
      return None
    return self._restore(self.best, step, abstract_state)

  def wait(self):
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self):
    self.latest.close()
    self.best.close()
