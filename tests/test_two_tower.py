"""Two-tower retrieval: the model's towers, training (seeds vmapped == single runs, learning on
a planted dataset) and the TwoTowerChannel against brute force.

The registry contract tests (tests/test_models_registry.py) cover 'two_tower' as a ranker too.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
import optax
import pytest

from seqrec_jax import models
from seqrec_jax.configs import load_config
from seqrec_jax.data import video
from seqrec_jax.data.features import FeatureSpec
from seqrec_jax.retrieval import negatives as NEG
from seqrec_jax.retrieval import train_two_tower as T
from seqrec_jax.retrieval import two_tower_study as S

CLUSTERS, PER, MAX_LEN, SEQ = 6, 20, 8, 10


@functools.lru_cache(maxsize=1)
def planted(num_users: int = 360, seed: int = 0):
  """Each user draws SEQ + 1 distinct items from one of CLUSTERS clusters of PER items (uniform
  within it); categories are random, so only the ids carry the clusters. Train: next-item
  examples at positions 2..SEQ-1; test: the last item given the previous MAX_LEN."""
  rng = np.random.default_rng(seed)
  num_items = CLUSTERS * PER + 1
  cate_of_item = np.concatenate([[0], rng.integers(1, 5, num_items - 1)]).astype(np.int32)
  ex = {'user_id': [], 'hist_item': [], 'item_id': []}
  test = {'user_id': [], 'hist_item': [], 'item_id': []}

  def add(out, u, seq, t):
    past = seq[max(0, t - MAX_LEN):t]
    out['user_id'].append(u)
    out['hist_item'].append(np.pad(past, (MAX_LEN - len(past), 0)))
    out['item_id'].append(seq[t])

  for u in range(1, num_users + 1):
    seq = 1 + rng.integers(CLUSTERS) * PER + rng.choice(PER, SEQ + 1, replace=False)
    for t in range(2, SEQ):
      add(ex, u, seq, t)
    add(test, u, seq, SEQ)
  ex = {k: np.asarray(v, np.int32) for k, v in ex.items()}
  test = {k: np.asarray(v, np.int32) for k, v in test.items()}
  ex['hist_cate'], ex['cate_id'] = cate_of_item[ex['hist_item']], cate_of_item[ex['item_id']]
  cat = {'item_count': np.bincount(ex['item_id'], minlength=num_items),
         'cate_of_item': cate_of_item}
  return ex, cat, test


# These runs are compile-bound (120 steps of a tiny model): XLA's backend optimisation level 0
# halves the compile time of the tests' programs on CPU (3.9 -> 2.3 s for the 4-loss program).
FAST_COMPILE = {'xla_backend_optimization_level': 0}
CFG = T.TwoTowerConfig(embed_dim=8, tower=(32, 16), batch_size=128, num_steps=120,
                       learning_rate=1e-2)


@functools.lru_cache(maxsize=1)
def trained():
  ex, cat, _ = planted()
  return T.train(ex, cat, CFG, seeds=(0, 1, 2), compiler_options=FAST_COMPILE)


def recall_at(ids, target):
  return float((ids == target[:, None]).any(1).mean())


def test_learns_planted_clusters_far_above_popularity():
  _, cat, test = planted()
  res = trained()
  assert res.losses.shape == (CFG.num_steps, 3) and np.isfinite(res.losses).all()
  assert (res.losses[-10:].mean(0) < res.losses[:10].mean(0) - 1.0).all(), res.losses[[0, -1]]
  pop = np.argsort(-cat['item_count'][1:])[:10] + 1
  pop_recall = float(np.isin(test['item_id'], pop).mean())
  for s in range(3):
    ids, _ = res.channel(s, cat['cate_of_item']).retrieve(test['hist_item'], 10)
    # Ideal: 10 of the cluster's 20 - 8 unseen items ~ 0.8; popularity ~ 10/120.
    assert recall_at(ids, test['item_id']) > max(0.4, 4 * pop_recall), (s, pop_recall)


def test_vmapped_seeds_equal_single_runs():
  ex, cat, _ = planted()
  group = trained()
  single = T.train(ex, cat, CFG, seeds=(1,), compiler_options=FAST_COMPILE)
  np.testing.assert_allclose(single.losses[:, 0], group.losses[:, 1], rtol=2e-4, atol=2e-4)
  for a, b in zip(jax.tree.leaves(single.params_of(0)), jax.tree.leaves(group.params_of(1))):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)
  assert not np.allclose(group.losses[:, 0], group.losses[:, 1])   # seeds differ


def test_channel_equals_brute_force_and_excludes_history():
  _, cat, test = planted()
  res = trained()
  ch = res.channel(0, cat['cate_of_item'], chunk=100)
  hist = test['hist_item'][:150]
  ids, scores = ch.retrieve(hist, 15)
  assert ids.shape == (150, 15) and ids.dtype == np.int32 and scores.dtype == np.float32
  u = ch.user_vectors(hist)
  full = u @ ch.item_vectors.T                                        # [U, I]
  for r in range(len(hist)):
    full[r, 0] = -np.inf
    full[r, hist[r][hist[r] > 0]] = -np.inf
  want = np.argsort(-full, axis=1, kind='stable')[:, :15]
  np.testing.assert_allclose(scores, np.take_along_axis(full, want, 1), rtol=1e-5, atol=1e-5)
  assert (ids == want).mean() > 0.99                                  # ties may swap
  assert not (ids == 0).any()
  assert not np.any([np.isin(ids[r], hist[r][hist[r] > 0]).any() for r in range(len(hist))])
  assert (np.diff(scores, axis=1) <= 0).all()
  kept, _ = ch.retrieve(hist, 15, exclude_history=False)
  assert np.any([np.isin(kept[r], hist[r]).any() for r in range(len(hist))])


def test_cosine_towers_and_forward():
  _, cat, test = planted()
  res = trained()
  ch = res.channel(2, cat['cate_of_item'])
  u, v = ch.user_vectors(test['hist_item']), ch.item_vectors * CFG.temperature
  np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(v[1:], axis=1), 1.0, rtol=1e-5)
  b = T.model_batch(test['user_id'], test['hist_item'], cat['cate_of_item'][test['hist_item']],
                    test['item_id'], cat['cate_of_item'][test['item_id']])
  logits = jax.jit(res.model.apply)({'params': res.params_of(2)}, b)
  np.testing.assert_allclose(logits, (u * v[test['item_id']]).sum(1) / CFG.temperature,
                             rtol=1e-4, atol=1e-4)


def test_every_loss_mode_descends_with_catalogue_and_hard_negatives():
  """Each loss (softmax with M shared catalogue columns; the others with per-row count^0.75
  negatives), hard negatives at rate 0.5: the gradient is finite, reaches both towers, and a
  small step along it lowers that loss (same negatives). One compiled program for all four."""
  ex, cat, _ = planted()
  batch = {k: ex[k][:128] for k in T._KEYS}   # pylint: disable=protected-access
  batch['hard_item'] = np.random.default_rng(0).integers(
      0, len(cat['cate_of_item']), (128, 3)).astype(np.int32)
  cfgs = [dataclasses.replace(CFG, loss=loss, num_catalogue=16, num_negatives=4,
                              hard_negative_rate=0.5) for loss in T.LOSSES]
  model, params = trained().model, {'params': trained().params_of(0)}   # trained towers
  sampler = NEG.CatalogueSampler(cat['item_count'])
  batches = [T.draw_negatives(np.random.default_rng(3), batch, cfg, sampler) for cfg in cfgs]
  fns = [functools.partial(T.loss_fn, model=model, cfg=cfg, consts=T.constants(cat, cfg))
         for cfg in cfgs]
  value_and_grads = jax.jit(
      lambda ps, bs: [jax.value_and_grad(f)(p, batch=b) for f, p, b in zip(fns, ps, bs)],
      compiler_options=FAST_COMPILE)
  out = value_and_grads([params['params']] * 4, batches)
  step = jax.jit(lambda p, g: jax.tree.map(lambda a, d: a - 0.02 * d / optax.tree.norm(g), p, g))
  after = value_and_grads([step(params['params'], g) for _, g in out], batches)
  for cfg, (loss, g), (loss2, _) in zip(cfgs, out, after):
    norms = [float(optax.tree.norm(g[k])) for k in ('item_tower', 'user_tower', 'embed')]
    assert np.isfinite(float(loss)) and min(norms) > 0, (cfg.loss, norms)
    assert float(loss2) < float(loss), (cfg.loss, loss, loss2)


def test_config_errors_name_the_key():
  with pytest.raises(ValueError, match='TwoTowerConfig.loss'):
    T.TwoTowerConfig(loss='listwise')
  with pytest.raises(ValueError, match='hard_negative_rate'):
    T.TwoTowerConfig(hard_negative_rate=1.5)
  ex, cat, _ = planted()
  with pytest.raises(ValueError, match='item_count'):
    T.train(ex, {'cate_of_item': cat['cate_of_item']}, CFG)


def test_study_mines_hard_negatives_and_summarizes_paired_differences():
  ex, cat, _ = planted()
  ex = dict(ex, cate_of_item=cat['cate_of_item'])
  hard = S.mine_hard(trained(), ex, 5, 20, per_row=3)
  assert hard.shape == (len(ex['item_id']), 3)
  liked = {(u, i) for u, i in zip(ex['user_id'], ex['item_id'])}
  assert not any((u, h) in liked for u, row in zip(ex['user_id'], hard) for h in row if h)
  in_hist = (hard[:, :, None] == ex['hist_item'][:, None, :]) & (hard[:, :, None] > 0)
  assert not in_hist.any()
  assert (hard > 0).mean() > 0.5                 # mostly real items, from the same cluster
  rows = [{'variant': 'softmax', 'split': 'test', 'seed': s, 'recall@50': r}
          for s, r in enumerate([0.20, 0.22, 0.21])]
  rows += [{'variant': 'bce', 'split': 'test', 'seed': s, 'recall@50': r}
           for s, r in enumerate([0.10, 0.13, 0.10])]
  table = S.summarize(rows)
  # Paired differences -0.10, -0.09, -0.11: mean -0.100, sd 0.01, t(0.975, 2) = 4.303.
  assert '| bce | 0.110 ± 0.017 | -0.100 ± 0.025 (resolved) |' in table, table


# ------------------------------------------------ field sides (issue 28.3): the user tower
# reads user-side fields only, the item tower item-side ones, context fields neither.

VIDEO = dict(num_users=30, num_items=60, num_cates=5, max_len=6, candidates=10,
             requests_per_user=1, interest_alpha=0.3, kappa=4.0, valid_frac=0.0,
             test_frac=0.0, seed=0)


def _video_model(**replace):
  """(model, variables, rows of one request): one user, 10 candidates of distinct durations."""
  ds, orc = video.generate_with_oracle(**VIDEO)
  rows = np.flatnonzero(orc['train']['request'] == orc['train']['request'][0])
  req = ds.splits['train'].__getitems__(rows)
  spec = dataclasses.replace(ds.spec, **replace)
  cfg = load_config('seqrec_jax/configs/test.py:two_tower', {'model.use_user_embedding': True})
  model = models.build_model(cfg.model, spec)
  return model, model.init(jax.random.key(0), req), req


def test_video_user_vector_ignores_the_candidate_and_forward_is_u_dot_v():
  model, v, req = _video_model()
  assert np.ptp(req['sparse']) > 0 and np.ptp(req['dense']) > 0
  assert (req['user_id'] == req['user_id'][0]).all()
  u = np.asarray(model.apply(v, req, method=model.user_vectors))
  np.testing.assert_allclose(u, np.repeat(u[:1], len(u), 0), rtol=1e-6, atol=1e-7)
  feats = model.spec.side_inputs(req, 'item')
  items = np.asarray(model.apply(v, req['target_item'], req['target_cate'], feats,
                                 method=model.item_vectors))
  want = np.asarray(model.apply(v, req))[:, 0]                        # the shared similarity
  np.testing.assert_allclose((u[0] * items).sum(-1) / model.temperature
                             + np.asarray(v['params']['task_bias'])[0], want,
                             rtol=1e-4, atol=1e-4)
  # The item-side duration reaches the item tower.
  longer = dict(req, dense=req['dense'] + 1.0)
  assert not np.allclose(np.asarray(model.apply(v, longer))[:, 0], want)


def test_context_fields_enter_neither_tower():
  model, v, req = _video_model(
      sparse=(FeatureSpec('dur_bucket', 11, side='context'),), dense_sides=('context',))
  want = np.asarray(model.apply(v, req))
  other = dict(req, sparse=np.roll(req['sparse'], 1, 0), dense=req['dense'] * -3.0)
  np.testing.assert_allclose(np.asarray(model.apply(v, other)), want, rtol=1e-6)
  assert not any('sparse_' in k for k in v['params']['embed'])      # no table, no parameter


def test_item_vectors_need_the_item_side_features():
  model, v, req = _video_model()
  with pytest.raises(ValueError, match=r"item-side sparse fields \['dur_bucket'\]"):
    model.apply(v, req['target_item'], req['target_cate'], method=model.item_vectors)
