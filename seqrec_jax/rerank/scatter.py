"""Rule-based scattering: at most m items of a category in any w consecutive positions.

Applied after the model-based step (MMR/DPP) to its list. One greedy pass fills the output
positions in turn with the first remaining item (in input order) whose category has fewer
than m items among the last w - 1 placed ones. A violating item is thus deferred, never moved
forward, and the relative order of the rest is kept; a list that already obeys the rule comes
back unchanged. When no remaining item fits, nothing later can fit either (the window does not
change), so the pass stops and the rest are reported as unplaced -- the caller may append them
past the shown slots or drop them. First-fit is a heuristic: it does not promise the fewest
unplaced items.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _check(fn, cates, valid, m, w):
  cates = jnp.asarray(cates, jnp.int32)
  if cates.ndim != 2:
    raise ValueError(f'{fn}: cates {cates.shape} must be [R, L]')
  valid = jnp.ones(cates.shape, bool) if valid is None else jnp.asarray(valid, bool)
  if valid.shape != cates.shape:
    raise ValueError(f'{fn}: valid {valid.shape} must be {tuple(cates.shape)}')
  if m < 1:
    raise ValueError(f'{fn}: m={m} must be >= 1')
  if w < 1:
    raise ValueError(f'{fn}: w={w} must be >= 1')
  return cates, valid


def _scatter_one(cates, valid, m, w):
  """cates [L], valid [L] -> (order [L] int32 input positions, -1 tail; unplaced [L] bool)."""
  n = cates.shape[0]
  pos = jnp.arange(n)

  def step(_, carry):
    order, left, placed_c, size = carry
    window = (pos < size) & (pos >= size - (w - 1))
    count = ((placed_c[None, :] == cates[:, None]) & window[None, :]).sum(1)    # [L]
    fits = left & (count < m)
    i = jnp.argmax(fits)                                  # first fitting item, input order
    ok = fits[i]
    order = order.at[size].set(jnp.where(ok, i, order[size]))
    placed_c = placed_c.at[size].set(jnp.where(ok, cates[i], placed_c[size]))
    return order, left & ~((pos == i) & ok), placed_c, size + ok.astype(jnp.int32)

  init = (jnp.full((n,), -1, jnp.int32), valid, jnp.zeros((n,), jnp.int32), jnp.int32(0))
  order, left, _, _ = jax.lax.fori_loop(0, n, step, init)
  return order, left


@jax.jit
def _scatter(cates, valid, m, w):               # m, w traced: one compile per shape
  return jax.vmap(_scatter_one, in_axes=(0, 0, None, None))(cates, valid, m, w)


def scatter(cates, m: int, w: int, *, valid=None):
  """cates [R, L] int categories of a ranked list, valid [R, L] bool (None = all) ->
  (order [R, L] int32: input positions in output order, -1 after the placed ones;
   unplaced [R, L] bool: valid input positions the rule left out)."""
  cates, valid = _check('scatter', cates, valid, m, w)
  return _scatter(cates, valid, jnp.int32(m), jnp.int32(w))


def violations(cates, m: int, w: int, *, valid=None):
  """cates [R, L], valid [R, L] -> [R] int32: positions p whose item is the (m+1)-th or later
  of its category within positions p - w + 1 .. p (invalid positions count as empty)."""
  cates, valid = _check('violations', cates, valid, m, w)
  return _violations(cates, valid, jnp.int32(m), jnp.int32(w))


@jax.jit
def _violations(cates, valid, m, w):
  n = cates.shape[1]
  pos = jnp.arange(n)
  win = (pos[None, :] <= pos[:, None]) & (pos[None, :] > pos[:, None] - w)      # [L, L]
  same = (cates[:, :, None] == cates[:, None, :]) & valid[:, :, None] & valid[:, None, :]
  count = (same & win[None]).sum(-1)                                            # [R, L]
  return ((count > m) & valid).sum(-1).astype(jnp.int32)


def take(x, order, fill=0):
  """x [R, L, ...] gathered by order [R, L] (-1 -> fill): the list after scattering."""
  x = jnp.asarray(x)
  order = jnp.asarray(order)
  idx = jnp.maximum(order, 0).reshape(order.shape + (1,) * (x.ndim - 2))
  out = jnp.take_along_axis(x, idx, axis=1)
  keep = (order >= 0).reshape(idx.shape)
  return jnp.where(keep, out, fill)
