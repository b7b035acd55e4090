"""Attention units: contract tests over the whole ATTENTIONS registry + closed-form checks.

A newly registered unit is picked up by `_cases()` and gets every contract test for free:
shapes, padding / alignment invariance, all-padding -> zeros (never NaN), permutation
invariance if it declares `order_free`, gradients reaching every parameter, one compilation
per shape. The contract checks run eagerly (small shapes; cheaper than compiling each case).
"""
from __future__ import annotations

import itertools
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from seqrec_jax.configs import default
from seqrec_jax.layers import attention as att
from seqrec_jax.models import builders
from seqrec_jax.layers.attention_proj import PARTS, ConcatDense

B, L, D = 4, 6, 8
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(name, **kw):
  c = ml_collections.ConfigDict(default.get_config().model.attention.to_dict())
  c.name, c.hidden, c.activation = name, (8, 4), 'dice'
  c.update(kw)
  return c


def _cases():
  """Every registry entry x normaliser x position (x activation for MLP scorers), deduplicated
  on the built module (entries ignore keys they do not use)."""
  seen = {}
  for name in sorted(builders.ATTENTIONS):
    for norm, pos, act in itertools.product(att.NORMALIZERS, (False, True), ('dice', 'prelu')):
      cfg = _cfg(name, normalizer=norm, use_position=pos, activation=act)
      unit = builders.build_attention(cfg)
      seen.setdefault(repr(unit), (f'{name}-{norm}-pos{int(pos)}-{act}', cfg))
  return [pytest.param(cfg, id=i) for i, cfg in seen.values()]


CASES = _cases()


def _data(seed=0):
  r = np.random.default_rng(seed)
  q = r.normal(size=(B, D)).astype(np.float32)
  k = r.normal(size=(B, L, D)).astype(np.float32)
  lens = np.array([L, 3, 1, 0])              # full, partial, one behaviour, empty history
  mask = np.arange(L)[None, :] >= L - lens[:, None]   # right-aligned, newest last
  return q, k, mask


def _init(unit, q, k, mask, seed=1):
  """Initialised variables with params perturbed, so zero-initialised tables matter too."""
  v = unit.init(jax.random.key(0), q, k, mask, False)
  leaves, tree = jax.tree.flatten(v.get('params', {}))
  keys = jax.random.split(jax.random.key(seed), max(len(leaves), 1))
  leaves = [x + 0.3 * jax.random.normal(kk, x.shape) for x, kk in zip(leaves, keys)]
  return dict(v, params=jax.tree.unflatten(tree, leaves))


def _apply(unit, v, q, k, mask, train):
  out, _ = unit.apply(v, q, k, mask, train, mutable=['batch_stats'])
  return np.asarray(out)


@pytest.mark.parametrize('cfg', CASES)
def test_contract(cfg):
  unit = builders.build_attention(cfg)
  q, k, mask = _data()
  v = _init(unit, q, k, mask)
  r = np.random.default_rng(3)
  for train in (True, False):
    out = _apply(unit, v, q, k, mask, train)
    assert out.shape == (B, D) and np.isfinite(out).all()
    # All-padding history (row 3) -> exactly zero.
    np.testing.assert_array_equal(out[3], 0.0)
    # Garbage at padded positions changes nothing.
    k_junk = np.where(mask[..., None], k, 1e3 * r.normal(size=k.shape)).astype(np.float32)
    np.testing.assert_allclose(_apply(unit, v, q, k_junk, mask, train), out, rtol=1e-5, atol=1e-5)
    # Extra padding, and left- instead of right-alignment, change nothing (recency uses the mask).
    k_pad = np.concatenate([np.zeros((B, 3, D), np.float32), k], 1)
    m_pad = np.concatenate([np.zeros((B, 3), bool), mask], 1)
    np.testing.assert_allclose(_apply(unit, v, q, k_pad, m_pad, train), out, rtol=1e-5, atol=1e-5)
    order = np.argsort(~mask, axis=1, kind='stable')          # real first, order kept
    k_left = np.take_along_axis(k, order[..., None], 1)
    m_left = np.take_along_axis(mask, order, 1)
    np.testing.assert_allclose(_apply(unit, v, q, k_left, m_left, train), out, rtol=1e-5,
                               atol=1e-5)
    # Permuting the history: no change iff the unit declares itself order-free.
    perm = np.stack([r.permutation(L) for _ in range(B)])
    k_perm = np.take_along_axis(k, perm[..., None], 1)
    m_perm = np.take_along_axis(mask, perm, 1)
    out_perm = _apply(unit, v, q, k_perm, m_perm, train)
    if unit.order_free:
      np.testing.assert_allclose(out_perm, out, rtol=1e-5, atol=1e-5)
    else:
      assert np.abs(out_perm - out).max() > 1e-4, 'order-dependent unit ignores the order'


@pytest.mark.parametrize('cfg', CASES)
def test_gradients_reach_every_parameter_and_stay_finite(cfg):
  unit = builders.build_attention(cfg)
  q, k, mask = _data()
  v = _init(unit, q, k, mask)
  w = jax.random.normal(jax.random.key(7), (B, D))

  def loss(params, mask):
    out, _ = unit.apply(dict(v, params=params), q, k, mask, True, mutable=['batch_stats'])
    return jnp.sum(out * w)

  grads = jax.grad(loss)(v.get('params', {}), mask)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.isfinite(g).all(), path
    assert np.abs(g).max() > 0, f'no gradient reaches {jax.tree_util.keystr(path)}'
  # A batch with no real behaviour at all: zero output, finite (here zero) gradients.
  grads0 = jax.grad(loss)(v.get('params', {}), np.zeros_like(mask))
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads0))


@pytest.mark.parametrize('name', sorted(builders.ATTENTIONS))
def test_jitted_train_step_compiles_once(name):
  unit = builders.build_attention(_cfg(name, use_position=True))
  q, k, mask = _data()
  v = unit.init(jax.random.key(0), q, k, mask, False)
  traces = []

  @jax.jit
  def step(v, q, k, mask):
    traces.append(1)                       # runs only while tracing
    def loss(params):
      out, new = unit.apply(dict(v, params=params), q, k, mask, True, mutable=['batch_stats'])
      return jnp.sum(out ** 2), new
    (l, new), g = jax.value_and_grad(loss, has_aux=True)(v.get('params', {}))
    return l, g, new

  for seed in range(3):
    q, k, mask = _data(seed)
    mask = np.roll(mask, seed, axis=0)      # different values and masks, same shapes
    l, _, new = step(v, q, k, mask)
    v = dict(v, **new)
    assert np.isfinite(l)
  assert len(traces) == 1
  assert step._cache_size() == 1  # pylint: disable=protected-access


def _np_norm(s, mask, norm):
  if norm == 'none':
    return np.where(mask, s, 0.0)
  if norm == 'sigmoid':
    return np.where(mask, 1 / (1 + np.exp(-s)), 0.0)
  e = np.where(mask, np.exp(s - np.where(mask, s, -np.inf).max(1, keepdims=True)), 0.0)
  return e / np.maximum(e.sum(1, keepdims=True), 1e-30)


@pytest.mark.parametrize('norm', att.NORMALIZERS)
@pytest.mark.parametrize('name', ['dot', 'scaled_dot'])
def test_dot_attention_matches_numpy(name, norm):
  q, k, mask = _data()
  out = builders.build_attention(_cfg(name, normalizer=norm)).apply({}, q, k, mask, False)
  s = np.einsum('bd,bld->bl', q, k) / (np.sqrt(D) if name == 'scaled_dot' else 1.0)
  ref = np.einsum('bl,bld->bd', np.nan_to_num(_np_norm(s, mask, norm)), k)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_multihead_matches_numpy():
  q, k, mask = _data()
  unit = builders.build_attention(_cfg('multihead', num_heads=2, normalizer='softmax'))
  v = _init(unit, q, k, mask)
  p = jax.tree.map(np.asarray, v['params'])
  h, e = 2, D // 2
  qh = (q @ p['query']['kernel']).reshape(B, h, e)
  kh = (k @ p['key']['kernel']).reshape(B, L, h, e)
  vh = (k @ p['value']['kernel']).reshape(B, L, h, e)
  s = np.einsum('bhe,blhe->bhl', qh, kh) / np.sqrt(e)
  w = np.stack([_np_norm(s[:, j], mask, 'softmax') for j in range(h)], 1)
  ref = np.einsum('bhl,blhe->bhe', w, vh).reshape(B, D) @ p['out']['kernel']
  np.testing.assert_allclose(unit.apply(v, q, k, mask, False), ref, rtol=1e-4, atol=1e-5)


def test_recency_counts_newer_real_behaviours():
  mask = np.array([[0, 0, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 1, 0, 1]], bool)
  rec = np.asarray(att.recency(mask))
  np.testing.assert_array_equal(np.where(mask, rec, -1),
                                [[-1, -1, 2, 1, 0], [1, 0, -1, -1, -1], [2, -1, 1, -1, 0]])


def test_concat_dense_matches_reference_concat_for_every_subset():
  q, k, _ = _data()
  rng = np.random.default_rng(0)
  subsets = [p for n in range(1, len(PARTS) + 1) for p in itertools.combinations(PARTS, n)]
  orders = subsets + [p[::-1] for p in subsets if len(p) > 1]      # and reversed orders
  for order in orders:
    fast, ref = ConcatDense(5, order), ConcatDense(5, order, reference=True)
    v = jax.eval_shape(lambda f=fast: f.init(jax.random.key(0), q, k))
    v = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), v)
    assert v['params']['kernel'].shape == (sum(D * D if p == 'outer' else D for p in order), 5)
    ref_shapes = jax.eval_shape(lambda r=ref: r.init(jax.random.key(0), q, k))
    assert jax.tree.map(jnp.shape, v) == jax.tree.map(lambda x: x.shape, ref_shapes)
    np.testing.assert_allclose(fast.apply(v, q, k), ref.apply(v, q, k), rtol=1e-4, atol=1e-4,
                               err_msg=str(order))


def test_bad_config_errors_name_the_key():
  with pytest.raises(ValueError, match=r'config.model.attention.normalizer'):
    builders.build_attention(_cfg('din', normalizer='softmx'))
  with pytest.raises(ValueError, match=r'config.model.attention.inputs'):
    builders.build_attention(_cfg('din', inputs=('q', 'kk')))
  with pytest.raises(ValueError, match=r'config.model.attention.activation'):
    builders.build_attention(_cfg('din', activation='same'))
  with pytest.raises(ValueError, match=r'config.model.attention.name'):
    builders.build_attention(_cfg('dinn'))
  q, k, mask = _data()
  with pytest.raises(ValueError, match=r'num_heads=3'):
    unit = builders.build_attention(_cfg('multihead', num_heads=3))
    unit.init(jax.random.key(0), q, k, mask, False)


def test_docs_example_is_the_registered_code():
  """docs/attention.md's "Add an attention variant" code block is attention_cosine.py verbatim."""
  src = open(os.path.join(ROOT, 'seqrec_jax/models/attention_cosine.py')).read()
  example = src.split('# [example:start]\n')[1].split('# [example:end]')[0].strip()
  assert len(example.splitlines()) <= 30
  page = open(os.path.join(ROOT, 'docs', 'attention.md')).read()
  blocks = [b.strip() for b in re.findall(r'```python\n(.*?)```', page, re.S)]
  assert example in blocks, 'docs/attention.md example differs from models/attention_cosine.py'
  assert 'cosine' in builders.ATTENTIONS and any('cosine' in c.id for c in CASES)
