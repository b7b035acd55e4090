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

from typing import Callable

import jax


def map_runs(fn: Callable, *args, chunk: int):
  """jax.vmap(fn)(*args), computed `chunk` runs at a time (lax.map over chunks, vmap within).

  args: pytrees whose leaves share a leading run axis [S]; chunk >= 1: runs per vmapped call
  (>= S: one vmap). Returns fn's outputs with a leading [S] axis.
  """
  sizes = {x.shape[0] if x.ndim else None for x in jax.tree.leaves(args)}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(f'map_runs: every argument needs the same leading run axis; got leading '
                     f'sizes {sorted(sizes, key=str)}')
  if not isinstance(chunk, int) or chunk < 1:
    raise ValueError(f'map_runs: chunk={chunk!r} must be an int >= 1 (runs per vmapped call)')
  if chunk >= sizes.pop():
    return jax.vmap(fn)(*args)
  return jax.lax.map(lambda a: fn(*a), args, batch_size=None if chunk == 1 else chunk)
