"""Cross layers (layers/cross.py) against NumPy references of the DCN / DCN-V2 equations."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seqrec_jax import metrics
from seqrec_jax.layers import cross

B, D = 5, 6


def _x0(seed=0, b=B, d=D):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(b, d)), jnp.float32)


def _init(module, x0, seed=1):
  return module.init(jax.random.key(seed), x0)['params']


def _apply(module, params, *args):
  return jax.jit(module.apply)({'params': params}, *args)


def _np(tree):
  return jax.tree.map(np.asarray, tree)


def _randomize(params, seed=2):
  """Non-zero biases too, so the reference checks them."""
  leaves, tree = jax.tree.flatten(params)
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(tree, [jnp.asarray(rng.normal(scale=0.5, size=l.shape), jnp.float32)
                                   for l in leaves])


def test_crossnet_v1_matches_numpy():
  x0 = _x0()
  net = cross.CrossNet(num_layers=3)
  p = _randomize(_init(net, x0))
  out = _apply(net, p, x0)
  q, x = _np(p), np.asarray(x0, np.float64)
  xl = x
  for i in range(3):
    w, b = q[f'w_{i}'][:, 0], q[f'b_{i}']
    xl = x * (xl @ w)[:, None] + b + xl            # x_{l+1} = x_0 x_l^T w + b + x_l
  np.testing.assert_allclose(out, xl, rtol=1e-4, atol=1e-4)
  assert out.shape == (B, D)


def _ref_v2_full(x, layers):
  xl = x
  for w, b in layers:                               # w: the paper's W [d, d] (column form)
    xl = x * (xl @ w.T + b) + xl
  return xl


@pytest.mark.parametrize('cross_type', ['full', 'lowrank'])
def test_crossnet_v2_matches_numpy(cross_type):
  x0 = _x0()
  net = cross.CrossNetV2(num_layers=2, cross_type=cross_type, rank=3)
  p = _randomize(_init(net, x0))
  out = _apply(net, p, x0)
  q = _np(p)
  layers = []
  for i in range(2):
    l = q[f'layer_{i}']
    if cross_type == 'full':
      w, b = l['w']['kernel'].T, l['w']['bias']
    else:
      v, u = l['v']['kernel'], l['u']['kernel'].T   # V [d, r], U [d, r]
      assert v.shape == (D, 3) and u.shape == (D, 3)
      w, b = u @ v.T, l['u']['bias']                # W = U V^T
    layers.append((w, b))
  np.testing.assert_allclose(out, _ref_v2_full(np.asarray(x0, np.float64), layers),
                             rtol=1e-4, atol=1e-4)


def test_mix_matches_numpy():
  x0 = _x0()
  k, r = 3, 2
  net = cross.CrossNetV2(num_layers=2, cross_type='mix', rank=r, num_experts=k)
  p = _randomize(_init(net, x0))
  out = _apply(net, p, x0)
  x = np.asarray(x0, np.float64)
  xl = x
  for i in range(2):
    l = _np(p[f'layer_{i}'])
    logits = xl @ l['gate']                                     # [B, K]
    g = np.exp(logits - logits.max(1, keepdims=True))
    g /= g.sum(1, keepdims=True)
    nxt = xl.copy()
    for e in range(k):
      v, c, u = l['v'][e], l['c'][e].T, l['u'][e].T             # V [d,r], C [r,r], U [d,r]
      h = np.tanh(c @ np.tanh(v.T @ xl.T))                      # g(C g(V^T x))  [r, B]
      expert = x * ((u @ h).T + l['b'])                          # x_0 ⊙ (U h + b)
      nxt += g[:, e:e + 1] * expert
    xl = nxt
  np.testing.assert_allclose(out, xl, rtol=1e-4, atol=1e-4)


def test_lowrank_full_rank_equals_full_when_uv_equals_w():
  x0 = _x0(d=D)
  low = cross.CrossNetV2(num_layers=2, cross_type='lowrank', rank=D)
  full = cross.CrossNetV2(num_layers=2, cross_type='full')
  pl = _randomize(_init(low, x0))
  pf = {f'layer_{i}': {'w': {'kernel': pl[f'layer_{i}']['v']['kernel']
                                       @ pl[f'layer_{i}']['u']['kernel'],
                             'bias': pl[f'layer_{i}']['u']['bias']}} for i in range(2)}
  assert jax.tree.map(jnp.shape, pf) == jax.tree.map(jnp.shape, _init(full, x0))
  np.testing.assert_allclose(_apply(low, pl, x0), _apply(full, pf, x0),
                             rtol=1e-4, atol=1e-4)


def test_mix_one_expert_identity_reduces_to_lowrank():
  x0 = _x0()
  r = 3
  mix = cross.CrossNetV2(num_layers=2, cross_type='mix', rank=r, num_experts=1,
                         nonlinearity='identity')
  low = cross.CrossNetV2(num_layers=2, cross_type='lowrank', rank=r)
  pl = _randomize(_init(low, x0))
  pm = _randomize(_init(mix, x0), seed=5)      # random gate: softmax over 1 expert is 1
  pm = {f'layer_{i}': dict(pm[f'layer_{i}'], v=pl[f'layer_{i}']['v']['kernel'][None],
                           c=jnp.eye(r)[None], u=pl[f'layer_{i}']['u']['kernel'][None],
                           b=pl[f'layer_{i}']['u']['bias']) for i in range(2)}
  np.testing.assert_allclose(_apply(mix, pm, x0), _apply(low, pl, x0),
                             rtol=1e-4, atol=1e-4)


def test_rank_fraction_and_errors():
  assert cross.resolve_rank(0.25, 64) == 16 and cross.resolve_rank(5, 64) == 5
  assert cross.resolve_rank(0.01, 10) == 1
  x0 = _x0(d=8)
  p = _init(cross.CrossNetV2(1, 'lowrank', rank=0.25), x0)
  assert p['layer_0']['v']['kernel'].shape == (8, 2)
  with pytest.raises(ValueError, match='cross_rank'):
    _init(cross.CrossNetV2(1, 'lowrank', rank=0), x0)
  with pytest.raises(ValueError, match="unknown cross_type 'diag'"):
    _init(cross.CrossNetV2(1, 'diag'), x0)
  with pytest.raises(ValueError, match='structure'):
    cross.CrossDeep(cross.CrossNet(1), (4,), 'sideways').init(jax.random.key(0), x0, False)


@pytest.mark.parametrize('structure,hidden,width', [
    ('stacked', (7, 4), 4), ('parallel', (7, 4), D + 4), ('stacked', (), D), ('parallel', (), D)])
def test_cross_deep_shapes(structure, hidden, width):
  x0 = _x0()
  m = cross.CrossDeep(cross.CrossNetV2(2, 'full'), hidden, structure)
  v = m.init(jax.random.key(0), x0, False)
  assert m.apply(v, x0, False).shape == (B, width)
  assert ('deep' in v['params']) == bool(hidden)


@pytest.mark.parametrize('net', [
    cross.CrossNet(2), cross.CrossNetV2(2, 'full'), cross.CrossNetV2(2, 'lowrank', rank=2),
    cross.CrossNetV2(2, 'mix', rank=2, num_experts=3)], ids=['v1', 'full', 'lowrank', 'mix'])
def test_gradients_reach_every_parameter(net):
  x0 = _x0()
  p = _randomize(_init(net, x0))
  y = jnp.asarray(np.random.default_rng(3).normal(size=(B, D)), jnp.float32)
  grads = jax.grad(lambda q: jnp.mean((_apply(net, q, x0) - y) ** 2))(p)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.isfinite(g).all() and np.abs(g).max() > 0, jax.tree_util.keystr(path)


def _fit(net, x, y, steps=300, lr=0.03):
  """Cross net + linear logit, full-batch Adam; returns train-set AUC."""
  def logit(p, xx):
    return net.apply({'params': p['net']}, xx) @ p['w'] + p['b']
  p = {'net': net.init(jax.random.key(0), x[:2]).get('params', {}),
       'w': jnp.zeros((x.shape[1],)), 'b': jnp.zeros(())}
  tx = optax.adam(lr)
  opt = tx.init(p)

  @jax.jit
  def step(p, opt):
    loss, g = jax.value_and_grad(
        lambda q: optax.sigmoid_binary_cross_entropy(logit(q, x), y).mean())(p)
    upd, opt = tx.update(g, opt, p)
    return optax.apply_updates(p, upd), opt, loss
  for _ in range(steps):
    p, opt, _ = step(p, opt)
  return metrics.auc(np.asarray(y), np.asarray(jax.nn.sigmoid(logit(p, x))))


@pytest.mark.slow
def test_cross_layers_learn_a_pairwise_interaction():
  """y ~ Bernoulli(sigmoid(3 (x1 x2 - x3 x4))): invisible to a linear model (AUC ~0.5), exactly
  representable by one DCN-V2 layer + a linear logit. DCN (v1) layers only add the rank-1
  quadratic forms x^T a w^T x, so they cannot represent it: they land in between."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2000, 8)).astype(np.float32)
  prob = 1 / (1 + np.exp(-3 * (x[:, 1] * x[:, 2] - x[:, 3] * x[:, 4])))
  y = (rng.random(2000) < prob).astype(np.float32)
  oracle = metrics.auc(y, prob)                      # 0.93
  fit = lambda net: _fit(net, jnp.asarray(x), jnp.asarray(y), steps=150)
  linear = fit(cross.CrossNetV2(0))                  # 0 layers = identity
  assert linear < 0.6, linear
  v2 = [fit(net) for net in (cross.CrossNetV2(1, 'full'), cross.CrossNetV2(1, 'lowrank', rank=4),
                             cross.CrossNetV2(1, 'mix', rank=4, num_experts=2))]
  assert min(v2) > oracle - 0.03, (v2, oracle)
  v1 = fit(cross.CrossNet(1))
  assert 0.65 < v1 < min(v2) - 0.05, (v1, v2)
