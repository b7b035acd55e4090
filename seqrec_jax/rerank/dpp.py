"""Greedy DPP MAP re-ranking by fast greedy inference (Chen, Zhang & Zhou, NeurIPS 2018).

Kernel L = diag(r) S diag(r), r_i = exp(alpha * rel_i), S PSD with unit diagonal
(`similarity.py`). Then log det L_Y = 2 alpha sum_{i in Y} rel_i + log det S_Y, which is the
paper's theta * sum rel + (1 - theta) log det S_Y up to the factor 1 - theta when
alpha = theta / (2 (1 - theta))  (`alpha_from_theta`).

Algorithm 1 (full list). With the Cholesky factor V of S_Y, each candidate keeps
c_i = V^{-1} S_{Y,i} and d_i^2 = S_ii - |c_i|^2 (its conditional variance given Y), so
  log det L_{Y + i} - log det L_Y = 2 alpha rel_i + log d_i^2.
Pick j = argmax of that over free valid items, then for every i
  e_i = (S_ji - <c_j, c_i>) / d_j,   c_i <- [c_i, e_i],   d_i^2 <- d_i^2 - e_i^2
which is O(N k) per step, O(N k^2) for the list. Working on S rather than L keeps the numbers
in [0, 1] whatever alpha is (exp(alpha rel) would overflow); the picks are the same.

Algorithm 2 (sliding window w): the pick maximises det over the last w - 1 picks plus the
candidate, so only items within w positions repel. When the window is full the oldest pick
leaves: V loses its first row/column and, with v = V[1:, 0] and a_i = c_i[0],
  V' V'^T = V[1:, 1:] V[1:, 1:]^T + v v^T      (a rank-one Cholesky update, Givens rotations)
and the same rotations carry each [c_i[1:], a_i] along, after which d_i^2 <- d_i^2 + a_i^2.
O(N w) per step.

Stopping: after k picks, or when no free valid candidate has d_i^2 > epsilon (S_Y + i is
numerically singular: the item adds nothing new); the remaining slots are -1.
Ties go to the lower candidate index.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def alpha_from_theta(theta: float) -> float:
  """The paper's trade-off theta in [0, 1) -> alpha = theta / (2 (1 - theta))."""
  if not 0.0 <= theta < 1.0:
    raise ValueError(f'alpha_from_theta: theta={theta} must be in [0, 1)')
  return theta / (2.0 * (1.0 - theta))


def check_inputs(fn, rel, sim, valid, k):
  """Shared shape checks -> (rel [R, N] f32, sim [R, N, N] f32, valid [R, N] bool)."""
  rel = jnp.asarray(rel, jnp.float32)
  sim = jnp.asarray(sim, jnp.float32)
  if rel.ndim != 2:
    raise ValueError(f'{fn}: rel {rel.shape} must be [R, N]')
  r, n = rel.shape
  if sim.shape != (r, n, n):
    raise ValueError(f'{fn}: sim {sim.shape} must be [{r}, {n}, {n}]')
  valid = jnp.ones((r, n), bool) if valid is None else jnp.asarray(valid, bool)
  if valid.shape != (r, n):
    raise ValueError(f'{fn}: valid {valid.shape} must be [{r}, {n}]')
  if not 1 <= k <= n:
    raise ValueError(f'{fn}: k={k} must be in [1, N={n}]')
  return rel, sim, valid


def _rank_one_drop_oldest(v, c, d2):
  """Window V [m, m] (full), rows c [N, m], d2 [N] -> the same for the window without its
  first item (last row/column of V and last column of c zeroed)."""
  m = v.shape[0]
  x, a = v[1:, 0], c[:, 0]                   # [m-1], [N]
  v2, c2 = v[1:, 1:], c[:, 1:]               # [m-1, m-1], [N, m-1]

  def rotate(col, carry):
    v2, c2, x, a = carry
    vkk = v2[col, col]
    r = jnp.sqrt(vkk * vkk + x[col] * x[col])
    cs, sn = vkk / r, x[col] / r
    below = jnp.arange(m - 1) > col
    new_col = jnp.where(below, cs * v2[:, col] + sn * x, v2[:, col]).at[col].set(r)
    x = jnp.where(below, cs * x - sn * v2[:, col], x)
    new_c = cs * c2[:, col] + sn * a
    a = cs * a - sn * c2[:, col]
    return v2.at[:, col].set(new_col), c2.at[:, col].set(new_c), x, a

  if m > 1:                                  # (window 2 keeps one row: nothing to rotate)
    v2, c2, x, a = jax.lax.fori_loop(0, m - 1, rotate, (v2, c2, x, a))
  v = jnp.zeros_like(v).at[:m - 1, :m - 1].set(v2)
  c = jnp.zeros_like(c).at[:, :m - 1].set(c2)
  return v, c, d2 + a * a


def _dpp_one(rel, sim, valid, alpha, *, k, window, epsilon):
  """rel [N], sim [N, N], valid [N] -> picks [k] int32 (-1 after stopping)."""
  n = rel.shape[0]
  m = k if window is None else min(window - 1, k)    # rows of the factor kept
  ids = jnp.arange(n)

  def step(t, carry):
    picks, free, v, c, d2, size, stopped = carry
    gain = jnp.where(free & (d2 > epsilon), 2.0 * alpha * rel + jnp.log(jnp.maximum(d2, 1e-30)),
                     -jnp.inf)
    j = jnp.argmax(gain)
    ok = jnp.isfinite(gain[j]) & ~stopped
    if window is not None:                    # drop the oldest pick when the window is full
      full = ok & (size == m)
      v_d, c_d, d2_d = _rank_one_drop_oldest(v, c, d2)
      v, c = jnp.where(full, v_d, v), jnp.where(full, c_d, c)
      d2 = jnp.where(full, d2_d, d2)
      size = jnp.where(full, size - 1, size)
    dj = jnp.sqrt(jnp.maximum(d2[j], 1e-30))
    e = (sim[j] - c @ c[j]) / dj                 # unused columns of c are 0
    slot = ids[:m] == size
    v_new = v.at[size].set(jnp.where(slot, dj, c[j]))
    c_new = jnp.where(slot[None, :], e[:, None], c)
    picks = picks.at[t].set(jnp.where(ok, j, -1))
    return (picks, free & ~((ids == j) & ok), jnp.where(ok, v_new, v), jnp.where(ok, c_new, c),
            jnp.where(ok, d2 - e * e, d2), jnp.where(ok, size + 1, size), ~ok)

  d2 = jnp.where(valid, jnp.diagonal(sim), 0.0)
  init = (jnp.full((k,), -1, jnp.int32), valid, jnp.zeros((m, m), jnp.float32),
          jnp.zeros((n, m), jnp.float32), d2, jnp.int32(0), jnp.bool_(False))
  return jax.lax.fori_loop(0, k, step, init)[0]


@functools.partial(jax.jit, static_argnames=('k', 'window', 'epsilon'))
def _dpp(rel, sim, valid, alpha, *, k, window, epsilon):
  one = functools.partial(_dpp_one, k=k, window=window, epsilon=epsilon)
  return jax.vmap(one, in_axes=(0, 0, 0, None))(rel, sim, valid, alpha)


def dpp(rel, sim, k: int, *, alpha: float, valid=None, window: int | None = None,
        epsilon: float = 1e-6):
  """rel [R, N], sim [R, N, N] (PSD, unit diagonal), valid [R, N] bool (None = all)
  -> picks [R, k] int32 candidate indices in list order, -1 after the greedy stops.
  alpha >= 0 weighs relevance (alpha = 0: diversity only; `alpha_from_theta`); window = None
  is Algorithm 1, window = w >= 2 Algorithm 2 (w >= k + 1 equals Algorithm 1)."""
  if not (np.isfinite(alpha) and alpha >= 0):
    raise ValueError(f'dpp: alpha={alpha} must be finite and >= 0')
  if window is not None and window < 2:
    raise ValueError(f'dpp: window={window} must be >= 2 or None (window 1 = ranker order)')
  if not epsilon >= 0:
    raise ValueError(f'dpp: epsilon={epsilon} must be >= 0')
  rel, sim, valid = check_inputs('dpp', rel, sim, valid, k)
  return _dpp(rel, sim, valid, jnp.float32(alpha), k=int(k),
              window=None if window is None else int(window), epsilon=float(epsilon))
