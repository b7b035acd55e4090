"""Maximal marginal relevance (Carbonell & Goldstein 1998) over the ranker's top-N.

  step t: pick  argmax_{i not in S, valid}  lam * rel_i - (1 - lam) * max_{j in S} sim(i, j)
The max over the empty set is 0 (the first pick is the most relevant item). lam = 1 is the
ranker's order; lam = 0 picks by dissimilarity alone. Ties go to the lower candidate index.
Relevance and similarity should share a scale (e.g. relevance in [0, 1] and cosine).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from seqrec_jax.rerank.dpp import check_inputs


def _mmr_one(rel, sim, valid, lam, *, k):
  """rel [N], sim [N, N], valid [N] -> picks [k] int32 (-1 when no valid candidate is left)."""
  n = rel.shape[0]

  def step(t, carry):
    picks, free, maxsim = carry
    penalty = jnp.where(t == 0, 0.0, maxsim)
    score = jnp.where(free, lam * rel - (1.0 - lam) * penalty, -jnp.inf)
    j = jnp.argmax(score)
    ok = free[j]
    picks = picks.at[t].set(jnp.where(ok, j, -1))
    free = free & ~((jnp.arange(n) == j) & ok)
    maxsim = jnp.where(ok, jnp.maximum(maxsim, sim[j]), maxsim)
    return picks, free, maxsim

  init = (jnp.full((k,), -1, jnp.int32), valid, jnp.full((n,), -jnp.inf, jnp.float32))
  return jax.lax.fori_loop(0, k, step, init)[0]


@functools.partial(jax.jit, static_argnames=('k',))
def _mmr(rel, sim, valid, lam, *, k):
  return jax.vmap(functools.partial(_mmr_one, k=k), in_axes=(0, 0, 0, None))(
      rel, sim, valid, lam)


def mmr(rel, sim, k: int, *, lam: float, valid=None):
  """rel [R, N], sim [R, N, N], valid [R, N] bool (None = all) -> picks [R, k] int32, the
  candidate indices in list order; -1 fills slots when fewer than k candidates are valid."""
  if not 0.0 <= lam <= 1.0:
    raise ValueError(f'mmr: lam={lam} must be in [0, 1]')
  rel, sim, valid = check_inputs('mmr', rel, sim, valid, k)
  return _mmr(rel, sim, valid, jnp.float32(lam), k=int(k))
