"""List diversity metrics for re-ranked lists (picks [R, k], -1 = empty slot).

  intra_list_distance : mean over pairs in the list of 1 - cos(e_i, e_j)
  coverage            : distinct categories in the list / listed items
  mean_relevance      : mean rel over the listed items
Each returns [R] float32; a list with fewer than two items has distance 0.
"""
from __future__ import annotations

import jax.numpy as jnp


def _gather(x, picks):
  idx = jnp.maximum(picks, 0).reshape(picks.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, idx, axis=1)


def intra_list_distance(emb, picks):
  """emb [R, N, D], picks [R, k] -> [R]."""
  emb = jnp.asarray(emb, jnp.float32)
  picks = jnp.asarray(picks)
  f = _gather(emb, picks)
  f = f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), 1e-12)
  on = picks >= 0
  pair = on[:, :, None] & on[:, None, :] & ~jnp.eye(picks.shape[1], dtype=bool)[None]
  d = 1.0 - jnp.einsum('rid,rjd->rij', f, f)
  return jnp.where(pair, d, 0.0).sum((1, 2)) / jnp.maximum(pair.sum((1, 2)), 1)


def coverage(cates, picks):
  """cates [R, N] int, picks [R, k] -> [R]: distinct categories among the listed items / count."""
  c = jnp.where(jnp.asarray(picks) >= 0, _gather(jnp.asarray(cates), jnp.asarray(picks)), -1)
  s = jnp.sort(c, axis=1)
  first = (s >= 0) & jnp.concatenate([jnp.ones_like(s[:, :1], bool), s[:, 1:] != s[:, :-1]], 1)
  return first.sum(1) / jnp.maximum((c >= 0).sum(1), 1)


def mean_relevance(rel, picks):
  """rel [R, N], picks [R, k] -> [R]."""
  on = jnp.asarray(picks) >= 0
  r = _gather(jnp.asarray(rel, jnp.float32), jnp.asarray(picks))
  return jnp.where(on, r, 0.0).sum(1) / jnp.maximum(on.sum(1), 1)
