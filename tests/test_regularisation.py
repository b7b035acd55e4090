"""DIN paper regularisers (Sec. 4.3.1, Table 4): mini-batch aware L2 (MBA), id dropout, the item
frequency filter, dense L2 (optim.weight_decay), and the exponential-decay schedule."""
import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from seqrec_jax import evaluate, metrics, models, state, steps
from seqrec_jax.data.features import DataSpec
from seqrec_jax.data.id_counts import IdCounts, count_ids
from seqrec_jax.data.id_filter import filter_items, kept_items
from seqrec_jax.layers.embedding import Embedder

SPEC = DataSpec(num_users=5, num_items=8, num_cates=4, max_len=3)
# Two samples. Item ids present (non-zero): 3 (target and history of row 0: one id), 5, 2, 7.
BATCH = dict(
    user_id=np.array([1, 2], np.int32),
    target_item=np.array([3, 2], np.int32), target_cate=np.array([1, 2], np.int32),
    hist_items=np.array([[0, 5, 3], [0, 0, 7]], np.int32),
    hist_cates=np.array([[0, 1, 1], [0, 0, 3]], np.int32),
    hist_mask=np.array([[False, True, True], [False, False, True]]),
    label=np.array([1.0, 0.0], np.float32))
N_ITEM = np.array([0, 1, 2, 4, 1, 8, 1, 5])    # n_j per item id
N_CATE = np.array([0, 6, 3, 2])


def _embedder(counts=True):
  spec = dataclasses.replace(SPEC, id_counts=IdCounts.from_counts(
      {'item': N_ITEM, 'cate': N_CATE})) if counts else SPEC
  emb = Embedder(spec, embed_dim=3)
  params = emb.init(jax.random.key(0), BATCH['target_item'], BATCH['target_cate'],
                    method=Embedder.items)['params']
  return emb, params


def test_mba_gradient_is_eq6_on_batch_rows_and_zero_elsewhere():
  lam = 0.3
  emb, params = _embedder()
  grad = jax.grad(lambda p: emb.apply({'params': p}, BATCH, lam, method=Embedder.mba_penalty))(
      params)
  for table, present, n in (('item', [2, 3, 5, 7], N_ITEM), ('cate', [1, 2, 3], N_CATE)):
    w = np.asarray(params[table]['embedding'])
    expected = np.zeros_like(w)
    for j in present:                        # eq. 6: lambda * alpha_mj / n_j * w_j
      expected[j] = lam / n[j] * w[j]
    g = np.asarray(grad[table]['embedding'])
    np.testing.assert_allclose(g, expected, rtol=1e-6)
    absent = np.setdiff1d(np.arange(len(w)), present)   # incl. padding id 0
    assert np.all(g[absent] == 0.0)


def test_mba_value_counts_each_id_once():
  emb, params = _embedder()
  value = emb.apply({'params': params}, BATCH, 2.0, method=Embedder.mba_penalty)
  w_i, w_c = np.asarray(params['item']['embedding']), np.asarray(params['cate']['embedding'])
  expected = sum((w_i[j] ** 2).sum() / N_ITEM[j] for j in (2, 3, 5, 7))
  expected += sum((w_c[j] ** 2).sum() / N_CATE[j] for j in (1, 2, 3))
  assert float(value) == pytest.approx(expected, rel=1e-6)    # (2.0 / 2) * sum


def _mba(emb, params, batch, lam):
  """(penalty, grad) of Embedder.mba_penalty at params."""
  f = lambda p: emb.apply({'params': p}, batch, lam, method=Embedder.mba_penalty)
  return jax.value_and_grad(f)(params)


def test_mba_skips_ids_at_masked_history_positions():
  """A masked position does not occur in the sample (eq. 4/5's alpha_mj), so a stray id there
  gives the same penalty and gradient as the padding id 0 (as data.id_counts already does)."""
  emb, params = _embedder()
  stray = dict(BATCH, hist_items=np.array([[4, 5, 3], [6, 1, 7]], np.int32),   # 4, 6, 1: absent
               hist_cates=np.array([[2, 1, 1], [3, 2, 3]], np.int32))
  (v0, g0), (v1, g1) = _mba(emb, params, BATCH, 0.3), _mba(emb, params, stray, 0.3)
  assert float(v1) == pytest.approx(float(v0), rel=1e-6)
  for table in ('item', 'cate'):
    np.testing.assert_allclose(g1[table]['embedding'], g0[table]['embedding'], rtol=1e-6)
  assert np.all(np.asarray(g1['item']['embedding'])[[1, 4, 6]] == 0.0)


def test_mba_matches_numpy_on_random_masked_batches():
  """Eq. 5 by hand: (lambda / 2) sum_j ||w_j||^2 / n_j over the distinct non-zero ids j that
  occur in the batch (targets, users and the unmasked history positions)."""
  rng = np.random.default_rng(0)
  spec = dataclasses.replace(SPEC, id_counts=IdCounts.from_counts(
      {'item': N_ITEM, 'cate': N_CATE, 'user': np.array([0, 3, 1, 2, 5])}))
  emb = Embedder(spec, embed_dim=3, use_user=True)
  for trial in range(3):
    b, l = 4, 3
    batch = dict(user_id=rng.integers(0, 5, b).astype(np.int32),
                 target_item=rng.integers(0, 8, b).astype(np.int32),
                 target_cate=rng.integers(0, 4, b).astype(np.int32),
                 hist_items=rng.integers(0, 8, (b, l)).astype(np.int32),
                 hist_cates=rng.integers(0, 4, (b, l)).astype(np.int32),
                 hist_mask=rng.random((b, l)) < 0.5)
    params = emb.init(jax.random.key(trial), batch, 1.0, method=Embedder.mba_penalty)['params']
    m = batch['hist_mask']
    expected = 0.0
    for table, ids, n in (
        ('item', [batch['target_item'], batch['hist_items'][m]], N_ITEM),
        ('cate', [batch['target_cate'], batch['hist_cates'][m]], N_CATE),
        ('user', [batch['user_id']], spec.id_counts.counts('user'))):
      w = np.asarray(params[table]['embedding'], np.float64)
      for j in set(np.concatenate(ids).tolist()) - {0}:
        expected += (w[j] ** 2).sum() / max(n[j], 1)
    value = emb.apply({'params': params}, batch, 0.4, method=Embedder.mba_penalty)
    assert float(value) == pytest.approx(0.5 * 0.4 * expected, rel=1e-5), trial


def test_mba_needs_counts():
  emb, params = _embedder(counts=False)
  with pytest.raises(ValueError, match='mba_lambda'):
    emb.apply({'params': params}, BATCH, 0.1, method=Embedder.mba_penalty)


def test_dense_l2_touches_every_row_mba_only_the_batch():
  """The contrast: optim.weight_decay (plain L2) moves every embedding row each step."""
  _, params = _embedder()
  cfg = ml_collections.ConfigDict(dict(name='sgd', learning_rate=1.0, schedule='constant',
                                       warmup_steps=0, clip_norm=0.0, weight_decay=0.1,
                                       momentum=0.0))
  tx = state.make_optimizer(cfg, 10)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  w = np.asarray(params['item']['embedding'])
  np.testing.assert_allclose(np.asarray(updates['item']['embedding']), -0.1 * w, rtol=1e-6)
  assert np.all(np.asarray(updates['item']['embedding'])[[1, 4, 6]] != 0)   # not in the batch


def test_count_ids_counts_samples_not_occurrences():
  batch = dict(BATCH, hist_items=np.array([[3, 3, 3], [2, 2, 7]], np.int32),
               hist_mask=np.array([[True, True, True], [False, True, True]]))
  c = count_ids(batch, SPEC)
  # Row 0 holds 3 (target + 3x history): one sample. Row 1: target 2, history 2 and 7; the
  # masked position reads as padding id 0, which is never counted (nor regularised).
  np.testing.assert_array_equal(c['item'], [0, 0, 1, 1, 0, 0, 0, 1])
  np.testing.assert_array_equal(c['cate'], [0, 1, 1, 1])   # row 0: {0, 1}; row 1: {0, 2, 3}
  np.testing.assert_array_equal(c['user'], [0, 1, 1, 0, 0])


def test_train_step_adds_sown_penalty(tiny_config, tiny_dataset):
  cfg = tiny_config
  batch = {k: jnp.asarray(v) for k, v in
           tiny_dataset.splits['train'].__getitems__(np.arange(16)).items()}
  step = jax.jit(functools.partial(steps.train_step, tasks=tiny_dataset.spec.tasks))
  cfg.model.name, cfg.model.activation = 'base', 'prelu'
  out = {}
  for lam in (0.0, 0.5):
    cfg.model.mba_lambda = lam
    model = models.build_model(cfg.model, tiny_dataset.spec)
    v = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), batch)
    st = state.TrainState.create(model.apply, v, optax.sgd(0.0))
    out[lam] = step(st, batch, jax.random.key(1))[1]
  emb = v['params']['input']['embed']
  present = np.unique(np.concatenate([batch['target_item'], np.asarray(batch['hist_items'])[
      np.asarray(batch['hist_mask'])]]))
  n = tiny_dataset.spec.id_counts.counts('item')
  w = np.asarray(emb['item']['embedding'])
  penalty = 0.25 * sum((w[j] ** 2).sum() / n[j] for j in present if j)
  present_c = np.unique(np.concatenate([batch['target_cate'], np.asarray(batch['hist_cates'])[
      np.asarray(batch['hist_mask'])]]))
  n_c, w_c = tiny_dataset.spec.id_counts.counts('cate'), np.asarray(emb['cate']['embedding'])
  penalty += 0.25 * sum((w_c[j] ** 2).sum() / n_c[j] for j in present_c if j)
  assert 'reg_loss' not in out[0.0]
  assert float(out[0.5]['reg_loss']) == pytest.approx(penalty, rel=1e-5) and penalty > 0
  assert float(out[0.5]['loss']) == pytest.approx(float(out[0.0]['loss']) + penalty, rel=1e-5)


def test_regularisers_are_rejected_where_not_implemented(tiny_config, tiny_dataset):
  tiny_config.model.name, tiny_config.model.mba_lambda = 'lr', 0.1
  with pytest.raises(ValueError, match='mba_lambda'):
    models.build_model(tiny_config.model, tiny_dataset.spec)


def test_id_dropout_zeroes_whole_vectors_in_training_only():
  spec = DataSpec(num_users=2, num_items=50, num_cates=0, max_len=0)
  emb = Embedder(spec, embed_dim=4, id_dropout=0.5)
  ids = jnp.asarray(np.random.default_rng(0).integers(1, 50, size=(400, 5)), jnp.int32)
  v = emb.init(jax.random.key(0), ids, ids, method=Embedder.items)
  plain = emb.apply(v, ids, ids, method=Embedder.items)
  dropped = emb.apply(v, ids, ids, True, method=Embedder.items, rngs={'dropout': jax.random.key(1)})
  zero = np.all(np.asarray(dropped) == 0, axis=-1)                  # [400, 5]
  assert 0.45 < zero.mean() < 0.55
  np.testing.assert_allclose(np.asarray(dropped)[~zero], 2 * np.asarray(plain)[~zero], rtol=1e-6)
  assert np.all(np.asarray(plain) != 0)


def test_kept_items_top_k_with_ties():
  counts = np.array([99, 5, 7, 5, 0, 7, 1])     # id 0 never kept; ties -> smaller id
  np.testing.assert_array_equal(np.flatnonzero(kept_items(counts, 3)), [1, 2, 5])
  np.testing.assert_array_equal(np.flatnonzero(kept_items(counts, 10)), [1, 2, 3, 5, 6])


def test_filter_items_maps_rare_items_to_oov(tiny_dataset):
  ds = filter_items(tiny_dataset, 10)
  keep = kept_items(count_ids(tiny_dataset.splits['train'].all(), tiny_dataset.spec)['item'], 10)
  for name, split in ds.splits.items():
    before, after = tiny_dataset.splits[name].all(), split.all()
    for k in ('target_item', 'hist_items'):
      np.testing.assert_array_equal(after[k], np.where(keep[before[k]], before[k], 0))
    np.testing.assert_array_equal(after['hist_cates'], before['hist_cates'])
    np.testing.assert_array_equal(after['hist_mask'], before['hist_mask'])
    rows = np.arange(5)
    np.testing.assert_array_equal(split.__getitems__(rows)['target_item'],
                                  after['target_item'][rows])
  assert len(np.unique(ds.splits['train'].all()['target_item'])) <= 11   # 10 kept + OOV


def test_exponential_schedule():
  cfg = ml_collections.ConfigDict(dict(learning_rate=1.0, schedule='exponential', warmup_steps=0,
                                       decay_rate=0.1, decay_steps=0, staircase=False))
  sched = state.make_schedule(cfg, 100)
  assert float(sched(0)) == pytest.approx(1.0)
  assert float(sched(50)) == pytest.approx(0.1 ** 0.5, rel=1e-5)
  assert float(sched(100)) == pytest.approx(0.1, rel=1e-5)
  cfg.decay_steps, cfg.staircase = 30, True
  sched = state.make_schedule(cfg, 100)
  assert float(sched(29)) == pytest.approx(1.0) and float(sched(30)) == pytest.approx(0.1)



@pytest.mark.parametrize('name', ['exponential', 'cosine', 'linear', 'constant'])
def test_schedule_values_after_warmup(name):
  """Closed form at given steps (W = 20 warmup steps of T = 120): lr * s / W while warming up,
  then the decay of step s - W over the T - W steps left (exponential: rate 0.1 at step T)."""
  w, t, lr = 20, 120, 0.5
  cfg = ml_collections.ConfigDict(dict(learning_rate=lr, schedule=name, warmup_steps=w,
                                       decay_rate=0.1, decay_steps=0, staircase=False))
  decay = {'exponential': lambda u: 0.1 ** u, 'cosine': lambda u: 0.5 * (1 + np.cos(np.pi * u)),
           'linear': lambda u: 1 - u, 'constant': lambda u: 1.0}[name]
  sched = state.make_schedule(cfg, t)
  for s in (0, 5, 19, 20, 45, 70, 119, 120):
    want = lr * s / w if s < w else lr * decay((s - w) / (t - w))
    assert float(sched(s)) == pytest.approx(want, rel=1e-5, abs=1e-7), (name, s)

def test_training_run_with_mba_filter_dropout_and_saved_predictions(tiny_config, tmp_path):
  from seqrec_jax import train   # pylint: disable=g-import-not-at-top
  cfg = tiny_config
  cfg.model.mba_lambda, cfg.model.embed_dropout, cfg.data.item_top_k = 0.1, 0.5, 30
  cfg.train.save_predictions = True
  summary = train.train_and_evaluate(cfg, str(tmp_path))
  assert np.isfinite(summary['eval/test/auc'])
  # The saved test predictions are the ones the summary's test metrics came from.
  preds, labels, users = evaluate.load_predictions(str(tmp_path), 'test')
  assert metrics.gauc(labels[:, 0], preds[:, 0], users) == pytest.approx(
      summary['eval/test/gauc'], abs=1e-6)
  lines = [json.loads(l) for l in open(os.path.join(tmp_path, 'metrics.jsonl'))]
  assert all(l['train/reg_loss'] > 0 for l in lines if 'train/loss' in l)


def test_difacto_penalty_and_update_match_numpy():
  """model.frequency_reg='difacto': (lambda / 2) sum_j ||w_j||^2 over the distinct non-zero ids
  present in the batch (no 1 / n_j; no counts needed), gradient lambda * w_j on those rows and 0
  elsewhere; over an epoch row j is shrunk once per batch that holds it, so its total strength
  grows with its frequency (DiFacto), while MBA's is about flat (1 / n_j per batch)."""
  rng = np.random.default_rng(1)
  lam, b, l = 0.2, 4, 3
  emb = Embedder(SPEC, embed_dim=3, frequency_reg='difacto')
  mba = Embedder(dataclasses.replace(SPEC, id_counts=IdCounts.from_counts(
      {'item': N_ITEM, 'cate': N_CATE})), embed_dim=3)
  batches = [dict(user_id=np.zeros(b, np.int32),
                  target_item=rng.integers(0, 8, b).astype(np.int32),
                  target_cate=rng.integers(0, 4, b).astype(np.int32),
                  hist_items=rng.integers(0, 8, (b, l)).astype(np.int32),
                  hist_cates=rng.integers(0, 4, (b, l)).astype(np.int32),
                  hist_mask=rng.random((b, l)) < 0.5) for _ in range(5)]
  params = emb.init(jax.random.key(0), batches[0], lam, method=Embedder.mba_penalty)['params']
  grad_fn = jax.jit(jax.grad(lambda p, x, m: m.apply({'params': p}, x, lam,
                                                    method=Embedder.mba_penalty)),
                    static_argnums=2)
  total = {'difacto': 0.0, 'mba': 0.0}
  held = np.zeros(8)                          # batches holding each item id
  w = np.asarray(params['item']['embedding'], np.float64)
  for batch in batches:
    m = batch['hist_mask']
    present = {t: set(np.concatenate(ids).tolist()) - {0} for t, ids in (
        ('item', [batch['target_item'], batch['hist_items'][m]]),
        ('cate', [batch['target_cate'], batch['hist_cates'][m]]))}
    expected = sum((np.asarray(params[t]['embedding'], np.float64)[j] ** 2).sum()
                   for t in present for j in present[t])
    value = emb.apply({'params': params}, batch, lam, method=Embedder.mba_penalty)
    assert float(value) == pytest.approx(0.5 * lam * expected, rel=1e-5)
    g = np.asarray(grad_fn(params, batch, emb)['item']['embedding'])
    rows = sorted(present['item'])
    np.testing.assert_allclose(g[rows], lam * w[rows], rtol=1e-5)
    assert np.all(np.delete(g, rows, axis=0) == 0.0)
    held[rows] += 1
    total['difacto'] = total['difacto'] + g[:, 0] / np.where(w[:, 0] == 0, 1, w[:, 0])
    gm = np.asarray(grad_fn(params, batch, mba)['item']['embedding'])
    total['mba'] = total['mba'] + gm[:, 0] / np.where(w[:, 0] == 0, 1, w[:, 0])
  # Summed shrink coefficient of each item row over the "epoch": lambda * (batches holding it)
  # for DiFacto, lambda * (batches holding it) / n_j for MBA.
  np.testing.assert_allclose(total['difacto'], lam * held, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(total['mba'], lam * held / np.maximum(N_ITEM, 1), rtol=1e-5,
                             atol=1e-7)
  # A group's run lambda reaches the DiFacto penalty too (multirun.runtime_hparams).
  from seqrec_jax import multirun  # pylint: disable=g-import-not-at-top
  with multirun.runtime_hparams({'mba_lambda': jnp.float32(0.05)}):
    v = emb.apply({'params': params}, batches[0], lam, method=Embedder.mba_penalty)
  ref = emb.apply({'params': params}, batches[0], 0.05, method=Embedder.mba_penalty)
  assert float(v) == pytest.approx(float(ref), rel=1e-6)
  with pytest.raises(ValueError, match='frequency_reg'):
    Embedder(SPEC, frequency_reg='l2').init(jax.random.key(0), batches[0], lam,
                                            method=Embedder.mba_penalty)
