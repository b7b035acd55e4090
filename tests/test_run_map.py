"""run_map.map_runs: a group's per-run function over chunks of runs equals one vmap over them."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax.run_map import map_runs

S = 5


def _step(p, x, key):
  """A small per-run 'train step': params {w [3, 2], b [2]}, batch x [4, 3], a PRNG key."""
  h = jnp.tanh(x @ p['w'] + p['b'] + 0.1 * jax.random.normal(key, (2,)))
  loss = jnp.mean(h ** 2)
  return jax.tree.map(lambda v: v * 0.9, p), {'loss': loss, 'h': h}


def _args():
  r = np.random.default_rng(0)
  p = {'w': jnp.asarray(r.normal(size=(S, 3, 2)), jnp.float32),
       'b': jnp.asarray(r.normal(size=(S, 2)), jnp.float32)}
  x = jnp.asarray(r.normal(size=(S, 4, 3)), jnp.float32)
  return p, x, jax.random.split(jax.random.key(1), S)


@pytest.mark.parametrize('chunk', [1, 8])       # 1: lax.map; 8 >= S: vmap
def test_map_runs_equals_vmap(chunk):
  want = jax.jit(jax.vmap(_step))(*_args())
  seen = []

  def step(p, x, key):
    seen.append(x.shape)                               # traced shapes: one run's
    return _step(p, x, key)

  got = jax.jit(lambda *a: map_runs(step, *a, chunk=chunk))(*_args())
  assert seen and set(seen) == {(4, 3)}
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert g.shape == w.shape
    np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)


def test_map_runs_rejects_bad_chunk_and_mismatched_run_axes():
  p, x, key = _args()
  with pytest.raises(ValueError, match=r'chunk=0 must be an int >= 1'):
    map_runs(_step, p, x, key, chunk=0)
  with pytest.raises(ValueError, match=r'same leading run axis.*\[4, 5\]'):
    map_runs(_step, p, x[:4], key, chunk=1)


def test_map_runs_passes_unmapped_arguments_whole():
  """in_axes None (an eval batch shared by the runs) as in jax.vmap; chunk 2 of 5 runs: two
  vmapped chunks and a remainder of one."""
  p, x, key = _args()
  f = lambda p, x, key: _step(p, x, key)[1]['h']
  want = jax.jit(jax.vmap(f, in_axes=(0, None, 0)))(p, x[0], key)
  got = jax.jit(lambda *a: map_runs(f, *a, chunk=2, in_axes=(0, None, 0)))(p, x[0], key)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  with pytest.raises(ValueError, match=r'in_axes=\(0, 1, 0\)'):
    map_runs(f, p, x, key, chunk=2, in_axes=(0, 1, 0))
