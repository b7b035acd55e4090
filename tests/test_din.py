"""`base` and `din` models: shapes, padding invariance, empty histories, Dice semantics."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax import models


def _batch(ds, n=16, split='train'):
  return {k: jnp.asarray(v) for k, v in ds.splits[split].__getitems__(np.arange(n)).items()}


class _Jitted:
  """model.apply jitted per (train, mutable): one compile per shape instead of op-by-op."""

  def __init__(self, model):
    self.model = model
    self._fn = jax.jit(model.apply, static_argnames=('train', 'mutable'))

  def apply(self, variables, batch, train=False, mutable=False):
    return self._fn(variables, batch, train=train, mutable=tuple(mutable) if mutable else False)


_MODELS = {}     # (config.model, spec) -> _Jitted, shared by this file's tests


def _init(cfg, ds, batch):
  """The model (one per model config: tests with the same config, most test.py's DIN with
  Dice, share its compiled programs) and variables: random params (0.3 N(0, 1)) and the
  initial (zero) Dice statistics, drawn in numpy in jax.eval_shape's shapes (no init
  compiled)."""
  key = (cfg.model.to_json(), ds.spec)
  if key not in _MODELS:
    _MODELS[key] = _Jitted(models.build_model(cfg.model, ds.spec))
  model = _MODELS[key]
  shapes = jax.eval_shape(lambda: model.model.init(jax.random.key(0), batch, train=False))
  r = np.random.default_rng(0)
  draw = lambda x: (0.3 * r.normal(size=x.shape)).astype(x.dtype)
  zero = lambda x: np.zeros(x.shape, x.dtype)
  return model, {k: jax.tree.map(draw if k == 'params' else zero, c) for k, c in shapes.items()}


@pytest.mark.parametrize('name,act', [('base', 'prelu'), ('din', 'dice'), ('din', 'prelu')])
def test_shapes_and_padding_invariance(tiny_config, tiny_dataset, name, act):
  cfg = tiny_config
  cfg.model.name, cfg.model.activation = name, act
  batch = _batch(tiny_dataset)
  model, v = _init(cfg, tiny_dataset, batch)
  for train in (False, True):
    out = model.apply(v, batch, train=train, mutable=['batch_stats'])[0]
    assert out.shape == (16,)
    # Change ids at padded positions only: nothing may change (also Dice's train statistics).
    mask = batch['hist_mask']
    noisy = dict(batch, hist_items=jnp.where(mask, batch['hist_items'], 7),
                 hist_cates=jnp.where(mask, batch['hist_cates'], 3))
    out2 = model.apply(v, noisy, train=train, mutable=['batch_stats'])[0]
    np.testing.assert_allclose(out, out2, rtol=1e-5, atol=1e-6)


def test_padding_does_change_something_when_unmasked(tiny_config, tiny_dataset):
  """Sanity check that the invariance test above can fail: unmasking changes the output."""
  batch = _batch(tiny_dataset)
  model, v = _init(tiny_config, tiny_dataset, batch)
  out = model.apply(v, batch, train=False)
  opened = dict(batch, hist_mask=jnp.ones_like(batch['hist_mask']),
                hist_items=jnp.where(batch['hist_mask'], batch['hist_items'], 7))
  assert not np.allclose(out, model.apply(v, opened, train=False))


@pytest.mark.parametrize('name', ['base', 'din'])
def test_all_padding_history_is_finite(tiny_config, tiny_dataset, name):
  tiny_config.model.name = name
  batch = _batch(tiny_dataset)
  batch = dict(batch, hist_mask=jnp.zeros_like(batch['hist_mask']))
  model, v = _init(tiny_config, tiny_dataset, batch)
  for train in (False, True):
    out, new = model.apply(v, batch, train=train, mutable=['batch_stats'])
    assert np.isfinite(out).all()
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(new))
  grads = jax.jit(jax.grad(lambda p: model.model.apply(
      {**v, 'params': p}, batch, train=True, mutable=['batch_stats'])[0].sum()))(v['params'])
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_dice_eval_independent_of_batch_train_is_not(tiny_config, tiny_dataset):
  tiny_config.model.activation = 'dice'
  rows = _batch(tiny_dataset, 24)
  batch = {k: x[:16] for k, x in rows.items()}     # 16 rows: the shapes compiled above
  model, v = _init(tiny_config, tiny_dataset, batch)
  # Give the moving averages non-trivial values first.
  _, upd = model.apply(v, batch, train=True, mutable=['batch_stats'])
  v = {**v, **upd}
  half = {k: x[:8] for k, x in rows.items()}
  other = {k: jnp.concatenate([x[:8], x[16:24]]) for k, x in rows.items()}
  ev = lambda b: model.apply(v, b, train=False)[:8]
  np.testing.assert_allclose(ev(half), ev(other), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(ev(half), ev(batch)[:8], rtol=1e-6, atol=1e-6)
  tr = lambda b: model.apply(v, b, train=True, mutable=['batch_stats'])[0][:8]
  assert not np.allclose(tr(half), tr(other), atol=1e-6)   # batch statistics in training


def test_dice_moving_averages_update_only_in_training(tiny_config, tiny_dataset):
  batch = _batch(tiny_dataset)
  model, v = _init(tiny_config, tiny_dataset, batch)
  _, upd = model.apply(v, batch, train=True, mutable=['batch_stats'])
  before, after = jax.tree.leaves(v['batch_stats']), jax.tree.leaves(upd['batch_stats'])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))
  _, same = model.apply(v, batch, train=False, mutable=['batch_stats'])
  for a, b in zip(before, jax.tree.leaves(same['batch_stats'])):
    np.testing.assert_array_equal(a, b)


def test_unknown_model_name(tiny_config, tiny_dataset):
  tiny_config.model.name = 'dinn'
  with pytest.raises(ValueError, match=r"unknown model 'dinn' \(config.model.name\)"):
    models.build_model(tiny_config.model, tiny_dataset.spec)


@pytest.mark.slow
def test_din_learns_planted_interests_and_beats_mean_pooling(tiny_config, tmp_path):
  """Short learning test: DIN gets close to the oracle AUC, above mean pooling."""
  from seqrec_jax import train
  c = tiny_config
  s = c.data.synthetic
  s.num_users, s.num_items, s.num_cates, s.max_len, s.impressions_per_user = 3000, 100, 10, 15, 8
  c.data.batch_size, c.data.eval_batch_size = 128, 1024
  c.model.embed_dim, c.model.hidden, c.model.attention.hidden = 8, (32, 16), (16, 8)
  c.optim.learning_rate = 5e-3
  c.train.num_steps, c.train.eval_every, c.train.log_every = 400, 200, 100
  # One checkpoint per run, not test.py's one every 2 steps (~0.25 s each: 100 of this test's
  # 135 s); checkpointing is tested in test_train.py.
  c.train.checkpoint_every = 400
  c.data.pack_history = False   # one compiled step shape (packing's equality: test_packing)
  din = train.train_and_evaluate(c, str(tmp_path / 'din'))
  c.model.name, c.model.pooling = 'base', 'mean'
  base = train.train_and_evaluate(c, str(tmp_path / 'base'))
  oracle = din['oracle/test/oracle_auc']
  assert din['eval/test/auc'] > oracle - 0.05, (din['eval/test/auc'], oracle)
  assert din['eval/test/auc'] > base['eval/test/auc'] + 0.01, (din, base)
