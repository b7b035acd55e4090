"""A multi-run group's per-run function over the run axis, `chunk` runs at a time.

`map_runs(fn, *args, chunk=c)` equals `jax.vmap(fn)(*args)` (every arg with a leading run axis
[S]) but computes c runs per iteration of a `lax.map` (a scan) over the chunks, each chunk
vmapped (`lax.map(..., batch_size=c)`; a remainder of S mod c runs is one more vmapped call).
c = 1 is a plain `lax.map` (no vmap: each run traces the single run's computation); c >= S
the plain vmap.

Why: on CPU a vmapped step works on S runs' activations at once, and XLA CPU runs it slower per
run than one run alone (DIN with Dice at S = 5: about 4x per run; MMoE at S = 100: up to 2x),
while a scan over runs keeps one run's working set and still compiles, dispatches and evaluates
once for the group. On a GPU the vmapped step is what fills the device (29x at S = 64,
docs/accelerator.md), so there c = S. Measured: docs/multirun.md "Speed".
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax


def map_runs(fn: Callable, *args, chunk: int, in_axes: int | None | Sequence = 0):
  """jax.vmap(fn, in_axes)(*args), computed `chunk` runs at a time (lax.map over chunks, vmap
  within).

  args: pytrees; those mapped (in_axes 0: one int for all, or one 0 / None per argument) have
  leaves with a leading run axis [S], the others (None, e.g. an eval batch shared by the runs)
  are passed whole to every run. chunk >= 1: runs per vmapped call (>= S: one vmap).
  Returns fn's outputs with a leading [S] axis.
  """
  axes = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
  if len(axes) != len(args) or set(axes) - {0, None}:
    raise ValueError(f'map_runs: in_axes={in_axes!r} must be 0, None or one of them per '
                     f'argument ({len(args)} arguments)')
  mapped = [a for a, ax in zip(args, axes) if ax == 0]
  sizes = {x.shape[0] if x.ndim else None for x in jax.tree.leaves(mapped)}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(f'map_runs: every mapped argument needs the same leading run axis; got '
                     f'leading sizes {sorted(sizes, key=str)}')
  if not isinstance(chunk, int) or chunk < 1:
    raise ValueError(f'map_runs: chunk={chunk!r} must be an int >= 1 (runs per vmapped call)')
  if chunk >= sizes.pop():
    return jax.vmap(fn, in_axes=axes)(*args)

  def run(m):                     # the mapped arguments of a run (or chunk) -> fn's outputs
    it = iter(m)
    return fn(*(next(it) if ax == 0 else a for a, ax in zip(args, axes)))

  # chunk 1: no vmap at all, so each run traces exactly the single run's computation.
  return jax.lax.map(run, mapped, batch_size=None if chunk == 1 else chunk)
