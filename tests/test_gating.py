"""SENet field gating and LHUC / PPNet gates (layers/gating.py) alone and inside every model."""
from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax import models
from seqrec_jax.configs import load_config
from seqrec_jax.layers.gating import SENet
from test_models_registry import make_input

FIELD_MODELS = sorted(set(models.MODELS) - {'lr'})   # every model with field embeddings


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


# One model per input block: SequenceInput (din), FieldEmbedding (deepfm), multi-task (mmoe).
@pytest.mark.parametrize('name', ['din', 'deepfm', 'mmoe'])
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
  rest = flax.traverse_util.unflatten_dict(
      {k: x for k, x in _flat(v['params']).items() if 'field_gate' not in k}, sep='/')

  @jax.jit
  def run(v, unit, rest):   # one compilation instead of hundreds of eager ops
    def loss(p):
      return jnp.sum(jnp.sin(gated.apply({**v, 'params': p}, batch, train=False)))
    return (gated.apply(unit, batch, train=False), plain.apply({**v, 'params': rest}, batch,
                                                              train=False),
            gated.apply(v, batch, train=False), jax.grad(loss)(v['params']))
  unit_out, want, out, grads = run(v, unit, rest)
  np.testing.assert_allclose(unit_out, want, rtol=1e-5, atol=1e-6)
  assert not np.allclose(out, want, atol=1e-6)
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
