"""Packed histories (data/packing.py): same outputs, gradients and Dice statistics as the
dense [B, L] path, for every unit that declares `packable`."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from seqrec_jax import models, parallel, platform_defaults, steps, train
from seqrec_jax.configs import default
from seqrec_jax.data import packing
from seqrec_jax.data.features import DataSpec
from seqrec_jax.models import builders
from seqrec_jax.state import TrainState, make_optimizer

B, L = 12, 9


def _batch(seed=0, right_aligned=True):
  rng = np.random.default_rng(seed)
  lens = rng.integers(0, L + 1, B)
  lens[0], lens[1] = 0, L                        # an empty history and a full one
  pos = np.arange(L)[None, :]
  mask = pos >= L - lens[:, None] if right_aligned else pos < lens[:, None]
  return dict(
      user_id=rng.integers(1, 50, B).astype(np.int32),
      target_item=rng.integers(1, 40, B).astype(np.int32),
      target_cate=rng.integers(1, 7, B).astype(np.int32),
      hist_items=(rng.integers(1, 40, (B, L)) * mask).astype(np.int32),
      hist_cates=(rng.integers(1, 7, (B, L)) * mask).astype(np.int32),
      hist_mask=mask, label=rng.integers(0, 2, B).astype(np.float32))


def test_history_index_lists_real_positions_then_filler():
  mask = np.array([[0, 1, 1], [0, 0, 0], [1, 1, 1]], bool)
  idx = packing.history_index(mask, buckets=3)          # granule 3 -> capacity 6
  np.testing.assert_array_equal(idx, [1, 2, 6, 7, 8, -1])
  assert idx.dtype == np.int32
  assert packing.history_index(np.zeros((2, 3), bool), buckets=3).tolist() == [-1] * 2
  with pytest.raises(ValueError, match=r'hist_mask must be \[B, L\]'):
    packing.history_index(np.ones(5, bool))


def test_batches_with_little_padding_stay_padded():
  full = _batch(0)
  full['hist_mask'] = np.ones((B, L), bool)
  assert packing.add_history_index(full) is full
  assert 'hist_index' in packing.add_history_index(full, max_fill=1.0)
  assert 'hist_index' in packing.add_history_index(_batch(0))          # ~half padding
  no_history = {'label': np.zeros(3)}
  assert packing.add_history_index(no_history) is no_history


def test_capacity_takes_at_most_buckets_values():
  total, buckets = 1024 * 50, 32
  caps = {packing.capacity(n, total, buckets) for n in range(0, total + 1, 7)}
  assert len(caps) == buckets
  for n in (1, 1600, 1601, 26000, total):
    c = packing.capacity(n, total, buckets)
    assert n <= c < n + 1600 + 1 and c % 1600 == 0


def _model(model_name, activation, att_kw):
  """att_kw: config.model.attention overrides; 'pooling' sets config.model.pooling."""
  c = default.get_config()
  c.model.name = model_name
  c.model.embed_dim = 4
  c.model.hidden = (8,)
  c.model.activation = activation
  c.model.attention.hidden = (6, 5)
  for k, v in att_kw.items():
    if k == 'pooling':
      c.model.pooling = v
    else:
      c.model.attention[k] = v
  spec = DataSpec(num_users=50, num_items=40, num_cates=7, max_len=L)
  return models.build_model(c.model, spec)


def _variables(model, batch, runs=None):
  """Random params (0.3 N(0, 1)) in the model's shapes and its initial (zero) statistics,
  drawn in numpy: jax.eval_shape compiles nothing, where an op-by-op init compiles every
  initialiser per parameter shape. runs: a leading [runs] axis on the params."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), batch, train=False))
  r = np.random.default_rng(3)
  lead = () if runs is None else (runs,)
  draw = lambda x: (0.3 * r.normal(size=lead + x.shape)).astype(x.dtype)
  zero = lambda x: np.zeros(x.shape, x.dtype)
  return {k: jax.tree.map(draw if k == 'params' else zero, c) for k, c in shapes.items()}


CASES = [('din', 'dice', {}), ('din', 'prelu', {}),
         ('din', 'dice', {'normalizer': 'softmax'}), ('din', 'dice', {'normalizer': 'sigmoid'}),
         ('din', 'dice', {'use_position': True}),
         ('din', 'relu', {'inputs': ('k', 'q*k')}),
         ('base', 'prelu', {'pooling': 'sum'}), ('base', 'prelu', {'pooling': 'mean'}),
         ('base', 'prelu', {'pooling': 'max'})]


@pytest.mark.parametrize('name,act,kw', CASES)
@pytest.mark.parametrize('right_aligned', [True, False])
def test_packed_matches_dense_outputs_gradients_and_dice_stats(name, act, kw, right_aligned):
  model = _model(name, act, kw)
  dense = _batch(3, right_aligned)
  packed = packing.add_history_index(dense, buckets=4, max_fill=1.0)
  assert packed['hist_index'].shape[0] == 54            # 41 real rows + filler; less work
  v = _variables(model, dense)     # random: alpha/bias/recency terms are non-trivial
  params = v['params']
  w = jnp.linspace(-1.0, 1.0, B)

  def loss(p, batch):
    y, nv = model.apply({'params': p, 'batch_stats': v.get('batch_stats', {})}, batch,
                        train=True, mutable=['batch_stats'])
    return (y * w).sum() + (y ** 2).sum(), nv

  (l_d, nv_d), g_d = jax.value_and_grad(loss, has_aux=True)(params, dense)
  (l_p, nv_p), g_p = jax.value_and_grad(loss, has_aux=True)(params, packed)
  np.testing.assert_allclose(l_p, l_d, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), g_p, g_d)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), nv_p, nv_d)
  e_d = model.apply({**v, 'params': params}, dense, train=False)
  e_p = model.apply({**v, 'params': params}, packed, train=False)
  np.testing.assert_allclose(e_p, e_d, rtol=1e-5, atol=1e-6)


def test_units_without_packed_support_ignore_the_index():
  model = _model('din', 'dice', {'name': 'dot', 'normalizer': 'softmax'})
  dense = _batch(2)
  v = _variables(model, dense)
  np.testing.assert_array_equal(model.apply(v, packing.add_history_index(dense, max_fill=1.0),
                                            train=False),
                                model.apply(v, dense, train=False))
  assert not builders.build_attention(ml_collections.ConfigDict(
      {'name': 'din', 'inputs': ('q', 'k', 'outer'), 'hidden': (4,), 'activation': 'dice',
       'normalizer': 'none'})).packable


def test_packed_train_steps_follow_the_dense_trajectory():
  model = _model('din', 'dice', {})
  spec_tasks = DataSpec(num_users=50, num_items=40, num_cates=7, max_len=L).tasks
  # One packed capacity (54) for the 4 steps: one compiled step per path, not one per shape.
  batches = [_batch(s) for s in (0, 2, 3, 5)]
  step = jax.jit(functools.partial(steps.train_step, tasks=spec_tasks))
  v = _variables(model, batches[0])
  c = default.get_config().optim
  runs = []
  for pack in (False, True):
    st = TrainState.create(model.apply, v, make_optimizer(c, 10))
    for b in batches:
      st, m = step(st, packing.add_history_index(b, 4, 1.0) if pack else b, jax.random.key(1))
    runs.append((st, m))
  (sd, md), (sp, mp) = runs
  np.testing.assert_allclose(mp['loss'], md['loss'], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               sp.params, sd.params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               sp.batch_stats, sd.batch_stats)


def test_training_run_with_packing_matches_padded_run(tiny_config, tmp_path):
  """train.py packs its train and eval batches (single device); the summary is the same.
  Model `base` (sum pooling over the packed rows; compiles in about half DIN's time): the
  units' packed maths are the cases above, DIN's packed runs through train.py test_multirun's
  test_packed_group_equals_padded_group_and_its_single_runs."""
  cfg = tiny_config
  cfg.model.name = 'base'
  cfg.data.pack_history = True                # on every platform (its default is per platform)
  cfg.data.pack_max_fill = 1.0                # pack every batch, whatever its padding
  resolved = platform_defaults.resolve(cfg)   # as train_and_evaluate does
  assert train._packer(resolved, parallel.Partitioner(cfg.parallel)) is not None  # pylint: disable=protected-access
  packed = train.train_and_evaluate(cfg, str(tmp_path / 'packed'))
  cfg.data.pack_history = False
  padded = train.train_and_evaluate(cfg, str(tmp_path / 'padded'))
  for k in ('eval/test/auc', 'eval/test/logloss', 'eval/valid/gauc'):
    np.testing.assert_allclose(packed[k], padded[k], rtol=1e-4, err_msg=k)


def test_batch_scoring_with_packing_gives_the_same_scores():
  from seqrec_jax import serving  # pylint: disable=g-import-not-at-top
  model = _model('din', 'dice', {})
  batch = _batch(5)
  v = _variables(model, batch)
  plain = serving.score_batch_fn(model)(v, batch)
  packed = serving.score_batch_fn(model, pack_buckets=4, pack_max_fill=1.0)(v, batch)
  np.testing.assert_allclose(packed, plain, rtol=1e-5, atol=1e-6)


def test_all_empty_histories_packed_match_padded_and_stay_finite():
  model = _model('din', 'dice', {'normalizer': 'softmax'})
  dense = _batch(3)
  dense['hist_mask'] = np.zeros((B, L), bool)
  dense['hist_items'] *= 0
  dense['hist_cates'] *= 0
  packed = packing.add_history_index(dense, buckets=2)   # capacity 54, as the cases above
  assert (packed['hist_index'] == -1).all() and packed['hist_index'].shape == (54,)
  v = _variables(model, dense)
  loss = lambda p, b: model.apply({**v, 'params': p}, b, train=True,
                                  mutable=['batch_stats'])[0].sum()
  g_d = jax.grad(loss)(v['params'], dense)
  g_p = jax.grad(loss)(v['params'], packed)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g_p, g_d)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(g_p))


def _group_masks(fills, seed=0):
  """[S, B, L] masks, run s with about fills[s] of its positions real (right-aligned)."""
  rng = np.random.default_rng(seed)
  lens = np.stack([np.minimum(rng.binomial(L, f, B), L) for f in fills])
  return np.arange(L)[None, None, :] >= L - lens[:, :, None]


def test_group_history_index_matches_a_per_run_reference():
  masks = _group_masks([0.2, 0.6, 0.4])
  idx = packing.group_history_index(masks, buckets=4)
  flats = [np.flatnonzero(m.reshape(-1)) for m in masks]     # NumPy reference, run by run
  cap = packing.capacity(max(f.size for f in flats), B * L, 4)
  assert idx.shape == (3, cap) and idx.dtype == np.int32
  for s, f in enumerate(flats):
    np.testing.assert_array_equal(idx[s, :f.size], f)
    assert (idx[s, f.size:] == -1).all()
  assert (idx[0] == -1).sum() > (idx[1] == -1).sum()          # runs differ, one shape
  assert packing.group_history_index(np.zeros((2, 3, 4), bool), 3).tolist() == [[-1] * 4] * 2
  with pytest.raises(ValueError, match=r'\[S, B, L\]'):
    packing.group_history_index(masks[0])


def test_group_of_one_is_the_single_run_index_and_decision():
  for b in (_batch(0), dict(_batch(1), hist_mask=np.ones((B, L), bool))):
    one = packing.add_history_index(b, buckets=4)
    group = packing.add_group_history_index({k: v[None] for k, v in b.items()}, buckets=4)
    assert ('hist_index' in one) == ('hist_index' in group)
    if 'hist_index' in one:
      np.testing.assert_array_equal(group['hist_index'][0], one['hist_index'])


def test_group_stays_padded_when_its_fullest_run_is_over_max_fill():
  masks = _group_masks([0.3, 0.3, 1.0])
  fill = masks.reshape(3, -1).mean(axis=1)
  assert fill.mean() < 0.8 < fill.max()
  batch = {'hist_mask': masks}
  assert packing.add_group_history_index(batch, max_fill=0.8) is batch      # whole group
  assert packing.add_group_history_index(batch, max_fill=1.0)['hist_index'].shape[0] == 3
  sparse = {'hist_mask': masks[:2]}
  assert 'hist_index' in packing.add_group_history_index(sparse, max_fill=0.8)
  no_history = {'label': np.zeros((2, 3))}
  assert packing.add_group_history_index(no_history) is no_history


@pytest.mark.parametrize('over_runs', ['vmap', 'lax.map'])
def test_group_packed_rows_match_dense_per_run_under_vmap_and_map(over_runs):
  """Each run of a packed group batch (own index, shared capacity, filler rows) gives its
  dense outputs, gradients and Dice statistics, vmapped (GPU: run_chunk 0) or mapped (CPU)."""
  model = _model('din', 'dice', {})
  runs = [_batch(s) for s in (2, 3, 4)]
  dense = {k: np.stack([r[k] for r in runs]) for k in runs[0]}
  dense['hist_mask'][0, :, :L - 2] = False                 # run 0: far fewer real rows
  packed = packing.add_group_history_index(dense, buckets=4, max_fill=1.0)
  assert (packed['hist_index'][0] == -1).sum() > B          # many filler rows in run 0
  v = _variables(model, runs[0], runs=3)     # params per run
  params = v['params']

  def one(p, batch):
    def loss(p):
      y, nv = model.apply({'params': p, 'batch_stats': v['batch_stats']}, batch, train=True,
                          mutable=['batch_stats'])
      return (y * jnp.linspace(-1.0, 1.0, B)).sum() + (y ** 2).sum(), nv
    return jax.value_and_grad(loss, has_aux=True)(p)

  over = jax.vmap(one) if over_runs == 'vmap' else lambda *a: jax.lax.map(lambda x: one(*x), a)
  (l_p, nv_p), g_p = jax.jit(over)(params, packed)
  for s in range(3):   # each run alone on its dense batch, op by op (the cases above' ops)
    run = lambda tree, s=s: jax.tree.map(lambda x: x[s], tree)
    (l_d, nv_d), g_d = one(run(params), run(dense))
    np.testing.assert_allclose(l_p[s], l_d, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5),
                 run(g_p), g_d)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 run(nv_p), nv_d)
