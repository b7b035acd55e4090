"""Periodic actions of the training loop (train.py): each with its own cadence.

An action is due at a step when the step is a multiple of one of its `every` periods, or is
the last step and `on_last` is set. The loop (train.train_loop) runs, after a train step, the
non-finite check over every step since the last check and then every due action in list
order, handing each the loop's `Context`; a new action is a subclass (or a `Callback`) added
to the list, the loop is not edited. The defaults (train.default_actions): log, progress bar,
evaluate (selection, early stopping, best checkpoint), checkpoint.

Why not clu.periodic_actions: clu is not a dependency (requirements.lock); its periodic
actions are wall-clock oriented (ReportProgress, Profile) and pull in clu.metric_writers /
platform / profiler modules, while the loop needs step cadences that also fire at the last
step and a shared non-finite check before any of them; this module is those few lines.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence


@dataclasses.dataclass
class Context:
  """What a due action sees: the program, the state after `step`, the loop's bookkeeping."""
  prog: Any                   # train.Program
  state: Any                  # TrainState ([S] leaves) after `step`
  progress: Any               # train.Progress (step, per-run metas, best)
  ckpt: Any                   # checkpoint.Checkpointer
  writer: Any                 # metric_writers.MetricsWriter
  step: int
  last: bool                  # step == the program's total_steps (train.num_steps)
  metrics: dict[str, Any]     # the step's train metrics on the host, each [S]
  rate: float                 # examples/s (all runs) since the first step, pauses excluded


class PeriodicAction:
  """Runs `run(ctx)` every `every` steps (an int or several: any multiple is due; 0 or ()
  never) and, with on_last, at the last step."""

  def __init__(self, every: int | Sequence[int] = (), on_last: bool = True):
    every = (every,) if isinstance(every, int) else tuple(every)
    self.every = tuple(int(n) for n in every if n)
    self.on_last = on_last

  def due(self, step: int, last: bool) -> bool:
    return any(step % n == 0 for n in self.every) or (self.on_last and last)

  def run(self, ctx: Context) -> None:
    raise NotImplementedError

  def close(self) -> None:
    """After the loop (normal end or not)."""


class Callback(PeriodicAction):
  """A function of the Context as a periodic action."""

  def __init__(self, fn: Callable[[Context], None], every: int | Sequence[int] = (),
               on_last: bool = True):
    super().__init__(every, on_last)
    self.fn = fn

  def run(self, ctx: Context) -> None:
    self.fn(ctx)
