"""SENet field gating and LHUC / PPNet gates (layers/gating.py) alone and inside every model."""
from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax import models
from seqrec_jax.configs import load_config
from seqrec_jax.layers.gating import LHUCGate, SENet
from seqrec_jax.models.builders import lhuc_layers
from test_models_registry import make_input

# Every model with field embeddings (lr has none; prerank's towers are not a field layer).
FIELD_MODELS = sorted(set(models.MODELS) - {'lr', 'prerank'})


def _flat(tree):
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep='/')


@pytest.mark.parametrize('excitation', ['relu', 'sigmoid'])
def test_senet_shapes(excitation):
  x = jax.random.normal(jax.random.key(0), (4, 7, 3))
  layer = SENet(reduction=3, excitation=excitation)
  v = layer.init(jax.random.key(1), x)
  assert v['params']['squeeze']['kernel'].shape == (7, 2)     # F -> F // r
  assert v['params']['excite']['kernel'].shape == (2, 7)
  y, a = layer.apply(v, x)
  assert y.shape == x.shape and a.shape == (4, 7)
  np.testing.assert_allclose(y, x * a[..., None], rtol=1e-6)
  if excitation == 'sigmoid':
    assert ((a > 0) & (a < 1)).all()



def _randomise(v, seed):
  """Every parameter drawn N(0, 0.5^2): values that do not depend on the initialisers."""
  flat = _flat(v['params'])
  keys = jax.random.split(jax.random.key(seed), len(flat))
  return {'params': flax.traverse_util.unflatten_dict(
      {k: 0.5 * jax.random.normal(r, x.shape) for r, (k, x) in zip(keys, flat.items())},
      sep='/')}


@pytest.mark.parametrize('excitation', ['relu', 'sigmoid'])
def test_senet_matches_numpy(excitation):
  """FiBiNET Sec. 3.3 by hand: z = mean_k E[:, f, k], a = sigma2(W2 relu(W1 z + b1) + b2),
  V = a * E, on fields with distinct per-field means (mean and max squeezes differ)."""
  x = (jax.random.normal(jax.random.key(0), (5, 6, 4))
       + jnp.arange(6.0)[None, :, None] - 2.5)
  layer = SENet(reduction=2, excitation=excitation)
  v = _randomise(layer.init(jax.random.key(1), x), 2)
  y, a = layer.apply(v, x)
  p, e = jax.tree.map(np.asarray, v['params']), np.asarray(x, np.float64)
  h = np.maximum(e.mean(-1) @ p['squeeze']['kernel'] + p['squeeze']['bias'], 0)     # [B, 3]
  logits = h @ p['excite']['kernel'] + p['excite']['bias']                          # [B, F]
  want = np.maximum(logits, 0) if excitation == 'relu' else 1 / (1 + np.exp(-logits))
  np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y, e * want[..., None], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('scale', [0.05, 1.0])
def test_senet_relu_gate_starts_near_one(scale):
  """Default init (F = 9, d = 16; embedding-scale and unit-scale fields): the ReLU gate starts
  near 1 (fields pass unchanged) and no gate is exactly 0 (no field switched off)."""
  for seed in range(3):
    x = scale * jax.random.normal(jax.random.key(seed), (256, 9, 16))
    layer = SENet()
    _, a = layer.apply(layer.init(jax.random.key(seed + 10), x), x)
    a = np.asarray(a)
    assert 0.5 <= a.mean() <= 2.0 and (a > 0).all(), (seed, a.mean(), (a == 0).mean())
    assert np.abs(a - 1).max() < 0.1, seed

def _unit_gate(params):
  """params with every SENet's excitation set to W2 = 0, b2 = 1 (ReLU gate = 1)."""
  flat = _flat(params)
  for k in list(flat):
    if '/field_gate/excite/' in f'/{k}':
      flat[k] = jnp.zeros_like(flat[k]) if k.endswith('kernel') else jnp.ones_like(flat[k])
  return flax.traverse_util.unflatten_dict(flat, sep='/')


def _build(name, spec, **kw):
  cfg = load_config(f'seqrec_jax/configs/test.py:{name}', dict(kw))
  return models.build_model(cfg.model, spec)


@pytest.mark.parametrize('name', FIELD_MODELS)
def test_senet_builds_in_every_field_model(name):
  # Abstract (tracing only): every field-based model takes model.field_gate=senet.
  spec, batch = make_input('rich')
  model = _build(name, spec, **{'model.field_gate': 'senet'})
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  v = jax.eval_shape(lambda: model.init(rngs, batch, train=False))
  assert any('field_gate/excite' in k for k in _flat(v['params'])), name
  out = jax.eval_shape(lambda v: model.apply(v, batch, train=False), v)
  assert out.shape == (len(batch['user_id']), len(spec.tasks))


# One model per input block: SequenceInput (din; the multi-task models use it too and build
# with SENet above) and FieldEmbedding (deepfm).
@pytest.mark.parametrize('name', ['din', 'deepfm'])
def test_senet_identity_and_gradient(name):
  """Gate 1 is the identity (same outputs as the model without SENet on the other params),
  a trained-looking gate changes the outputs, and the gradient reaches every SENet weight."""
  spec, batch = make_input('rich')
  gated = _build(name, spec, **{'model.field_gate': 'senet'})
  plain = _build(name, spec)
  v = gated.init({'params': jax.random.key(0), 'dropout': jax.random.key(1)}, batch, train=False)
  gate_keys = [k for k in _flat(v['params']) if 'field_gate' in k]
  assert gate_keys, f'{name}: no SENet parameters'
  unit = {**v, 'params': _unit_gate(v['params'])}
  flat = _flat(v['params'])
  trained = {**v, 'params': flax.traverse_util.unflatten_dict(   # gate weights ~ N(0, 0.5^2)
      {**flat, **_flat(_randomise({'params': {k: flat[k] for k in gate_keys}}, 4)['params'])},
      sep='/')}
  rest = flax.traverse_util.unflatten_dict(
      {k: x for k, x in flat.items() if 'field_gate' not in k}, sep='/')

  @jax.jit
  def run(v, unit, rest, trained):   # one compilation instead of hundreds of eager ops
    def loss(p):
      return jnp.sum(jnp.sin(gated.apply({**v, 'params': p}, batch, train=False)))
    return (gated.apply(unit, batch, train=False), plain.apply({**v, 'params': rest}, batch,
                                                              train=False),
            gated.apply(trained, batch, train=False), jax.grad(loss)(v['params']))
  unit_out, want, out, grads = run(v, unit, rest, trained)
  np.testing.assert_allclose(unit_out, want, rtol=1e-5, atol=1e-6)
  assert not np.allclose(out, want, atol=1e-4)
  grads = _flat(grads)
  for k in gate_keys:
    assert float(jnp.abs(grads[k]).max()) > 0, f'{name}: no gradient reaches {k}'


def test_lr_rejects_field_gate():
  spec, _ = make_input('rich')
  with pytest.raises(ValueError, match='field_gate'):
    _build('lr', spec, **{'model.field_gate': 'senet'})


def test_field_gate_config_is_validated():
  from seqrec_jax.configs.validate import ConfigError, validate_config
  cfg = load_config('seqrec_jax/configs/test.py:din', {'model.field_gate': 'senett'})
  with pytest.raises(ConfigError, match='model.field_gate'):
    validate_config(cfg)


def test_lhuc_gate_range_and_layers():
  # 2 * sigmoid is in (0, 2) exactly; float32 rounds |logit| > ~17 to an end point, so the
  # check uses unsaturated logits (unit-scale inputs, default init) with a wide spread.
  p = 2.0 * jax.random.normal(jax.random.key(0), (64, 4))
  layer = LHUCGate(sizes=(8, 5, 3), layers=(0, 2), hidden=16)
  v = layer.init(jax.random.key(1), p)
  gates = layer.apply(v, p)
  assert gates[1] is None and gates[0].shape == (64, 8) and gates[2].shape == (64, 3)
  for g in (gates[0], gates[2]):
    assert ((g > 0) & (g < 2)).all() and float(g.max() - g.min()) > 0.5
  assert lhuc_layers('all', 3) == (0, 1, 2) and lhuc_layers('last', 3) == (2,)
  assert lhuc_layers('0,-1', 3) == (0, 2) and lhuc_layers('none', 3) == ()
  with pytest.raises(ValueError, match='config.model.lhuc'):
    lhuc_layers('3', 3)



def test_lhuc_matches_numpy():
  """g_l = 2 sigmoid(W_l relu(V p + b) + c_l) by hand, for the gated layers only."""
  p = jax.random.normal(jax.random.key(0), (6, 4))
  layer = LHUCGate(sizes=(5, 3, 2), layers=(0, 2), hidden=7)
  v = _randomise(layer.init(jax.random.key(1), p), 3)
  gates = layer.apply(v, p)
  w = jax.tree.map(np.asarray, v['params'])
  h = np.maximum(np.asarray(p, np.float64) @ w['hidden']['kernel'] + w['hidden']['bias'], 0)
  assert gates[1] is None and 'gate_1' not in w
  for i in (0, 2):
    want = 2 / (1 + np.exp(-(h @ w[f'gate_{i}']['kernel'] + w[f'gate_{i}']['bias'])))
    np.testing.assert_allclose(gates[i], want, rtol=1e-5, atol=1e-6)

def _unit_lhuc(params):
  """Every LHUC gate layer's kernel and bias set to 0: 2 * sigmoid(0) = 1 exactly."""
  flat = _flat(params)
  for k in list(flat):
    if '/lhuc/gate_' in f'/{k}':
      flat[k] = jnp.zeros_like(flat[k])
  return flax.traverse_util.unflatten_dict(flat, sep='/')


# One model per MLP head: Head (din), the ctr deep tower (deepfm), the task towers (mmoe).
@pytest.mark.parametrize('name', ['din', 'deepfm', 'mmoe'])
def test_lhuc_in_mlp_models(name):
  """Gate 1 gives the plain MLP exactly; gates lie in (0, 2); no gradient reaches the user
  embeddings (id and user field) through the gates; the gate network's weights do get one."""
  spec, batch = make_input('rich')
  kw = {'model.use_user_embedding': True}
  gated = _build(name, spec, **kw, **{'model.lhuc': 'all', 'model.lhuc_inputs': ('user', 'f0')})
  plain = _build(name, spec, **kw)
  v = gated.init({'params': jax.random.key(0), 'dropout': jax.random.key(1)}, batch, train=False)
  gate_keys = [k for k in _flat(v['params']) if '/lhuc/' in f'/{k}']
  assert gate_keys, f'{name}: no LHUC parameters'
  rest = flax.traverse_util.unflatten_dict(
      {k: x for k, x in _flat(v['params']).items() if '/lhuc/' not in f'/{k}'}, sep='/')

  @jax.jit
  def run(v, unit, rest):
    def gate_sum(p):
      _, st = gated.apply({**v, 'params': p}, batch, train=False, mutable=['intermediates'])
      gates = jax.tree.leaves(st['intermediates'])
      return sum(jnp.sum(g) for g in gates), gates
    (_, gates), grads = jax.value_and_grad(gate_sum, has_aux=True)(v['params'])
    return (gated.apply(unit, batch, train=False),
            plain.apply({**v, 'params': rest}, batch, train=False), gates, grads)
  unit_out, want, gates, grads = run(v, {**v, 'params': _unit_lhuc(v['params'])}, rest)
  np.testing.assert_array_equal(unit_out, want)
  assert gates and all(((g > 0) & (g < 2)).all() for g in gates)
  grads = _flat(grads)
  emb = [k for k in grads if k.endswith('embed/user/embedding')
         or k.endswith('embed/sparse_f0/embedding')]
  assert emb, sorted(grads)
  for k in emb:
    assert float(jnp.abs(grads[k]).max()) == 0.0, f'{name}: gradient reaches {k} via the gate'
  assert all(float(jnp.abs(grads[k]).max()) > 0 for k in gate_keys if 'hidden' in k)


def test_lhuc_errors_name_the_key():
  spec, _ = make_input('rich')
  with pytest.raises(ValueError, match='use_user_embedding'):
    _build('din', spec, **{'model.lhuc': 'all'})
  with pytest.raises(ValueError, match='lhuc_inputs'):
    _build('din', spec, **{'model.lhuc': 'all', 'model.lhuc_inputs': ('nope',)})
  with pytest.raises(ValueError, match='backbone'):
    _build('dcnv2', spec, **{'model.lhuc': 'all', 'model.lhuc_inputs': ('f0',)})
