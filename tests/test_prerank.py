"""Three-tower pre-ranker: serving path (user tower once, cached item vectors) == batch forward."""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from seqrec_jax import models
from seqrec_jax.configs import load_config
from seqrec_jax.data import video
from seqrec_jax.data.features import FeatureSpec
from test_models_registry import make_input


def test_serving_path_equals_batch_forward():
  spec, batch = make_input('rich')
  cfg = load_config('seqrec_jax/configs/test.py:prerank', {'model.use_user_embedding': True})
  model = models.build_model(cfg.model, spec)
  # One request: one user (row 0's user, history and user fields) and every row's candidate.
  req = {k: np.array(v) for k, v in batch.items()}
  for k in ('user_id', 'hist_items', 'hist_cates', 'hist_mask', 'sparse'):
    req[k] = np.repeat(req[k][:1], len(req[k]), axis=0)
  v = model.init(jax.random.key(0), req)
  want = model.apply(v, req)
  assert want.shape == (len(req['user_id']), 2)
  # Offline: item vectors of the whole catalogue (item i with its category) into a cache.
  items = np.arange(spec.num_items)
  cate_of = np.zeros(spec.num_items, np.int32)
  cate_of[req['target_item']] = req['target_cate']
  cache = model.apply(v, items, cate_of, method=model.item_vectors)          # [V, U]
  u = model.apply(v, req, method=model.serve_user)                            # [1, U] once
  got = model.apply(v, u, cache[req['target_item']], req, method=model.score)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # A different user changes the scores (the user tower is used).
  other = dict(req, user_id=req['user_id'] + 1)
  assert not np.allclose(model.apply(v, other), want)


# ------------------------------------------------ field sides (issue 28.3): towers read only
# their own side, so serving from one row equals the batch forward on every row.

VIDEO = dict(num_users=30, num_items=60, num_cates=5, max_len=6, candidates=10,
             requests_per_user=1, interest_alpha=0.3, kappa=4.0, valid_frac=0.0,
             test_frac=0.0, seed=0)


def _video_request():
  """(spec, rows of the first request): one user, 10 candidates with distinct durations."""
  ds, orc = video.generate_with_oracle(**VIDEO)
  rows = np.flatnonzero(orc['train']['request'] == orc['train']['request'][0])
  return ds.spec, ds.splits['train'].__getitems__(rows)


def _model(spec, batch):
  cfg = load_config('seqrec_jax/configs/test.py:prerank', {'model.use_user_embedding': True})
  model = models.build_model(cfg.model, spec)
  return model, model.init(jax.random.key(0), batch)


def _served(model, v, req, row=0):
  """serve_user from one row, cached item vectors, score every candidate: logits [N, T]."""
  u = model.apply(v, {k: x[row:row + 1] for k, x in req.items()}, method=model.serve_user)
  feats = model.spec.side_inputs(req, 'item')
  items = model.apply(v, req['target_item'], req['target_cate'], feats,
                      method=model.item_vectors)
  return np.asarray(model.apply(v, u, items, req, method=model.score))


def test_video_serving_equals_batch_forward_and_ignores_row_order():
  spec, req = _video_request()
  assert np.ptp(req['sparse']) > 0 and np.ptp(req['dense']) > 0   # candidates really differ
  assert (req['user_id'] == req['user_id'][0]).all()
  model, v = _model(spec, req)
  # The user vector of a request does not depend on which candidate is row 0.
  u = [np.asarray(model.apply(v, {k: x[i:i + 1] for k, x in req.items()},
                              method=model.serve_user)) for i in range(len(req['user_id']))]
  for i, ui in enumerate(u[1:], 1):
    np.testing.assert_allclose(ui, u[0], rtol=1e-6, atol=1e-7, err_msg=f'row {i}')
  want = np.asarray(model.apply(v, req))
  for row in (0, 3):
    np.testing.assert_allclose(_served(model, v, req, row), want, rtol=1e-5, atol=1e-6)
  perm = np.random.default_rng(0).permutation(len(req['user_id']))
  shuffled = {k: x[perm] for k, x in req.items()}
  np.testing.assert_allclose(_served(model, v, shuffled), want[perm], rtol=1e-5, atol=1e-6)
  for i in (0, 7):                                   # the batch forward one row at a time
    one = np.asarray(model.apply(v, {k: x[i:i + 1] for k, x in req.items()}))
    np.testing.assert_allclose(one[0], want[i], rtol=1e-5, atol=1e-6)


SIDED = (FeatureSpec('city', 6, side='user'), FeatureSpec('shop', 7, side='item'),
         FeatureSpec('slot', 5, side='context'))


def _sided_request(n=9, seed=0):
  """A request on a spec with a field of each side: user-side values shared by the rows,
  item / context values distinct per row."""
  spec, batch = make_input('rich')
  spec = dataclasses.replace(spec, sparse=SIDED, dense_dim=3,
                             dense_sides=('user', 'item', 'context'))
  r = np.random.default_rng(seed)
  req = {k: np.array(x[:n]) for k, x in batch.items()}
  for k in ('user_id', 'hist_items', 'hist_cates', 'hist_mask'):
    req[k] = np.repeat(req[k][:1], n, axis=0)
  req['sparse'] = np.stack([np.full(n, 3), r.permutation(np.arange(n) % 6 + 1),
                            r.permutation(np.arange(n) % 4 + 1)], 1).astype(np.int32)
  req['dense'] = np.concatenate([np.full((n, 1), 0.7), r.normal(size=(n, 2))],
                                1).astype(np.float32)
  return spec, req


def test_each_tower_reads_its_own_side():
  spec, req = _sided_request()
  model, v = _model(spec, req)
  want = np.asarray(model.apply(v, req))
  np.testing.assert_allclose(_served(model, v, req, row=5), want, rtol=1e-5, atol=1e-6)
  # A context value changes that row's score only (the cross tower, per candidate).
  ctx = {**req, 'sparse': req['sparse'].copy(), 'dense': req['dense'].copy()}
  ctx['sparse'][2, 2] = 5 - ctx['sparse'][2, 2] % 4
  ctx['dense'][2, 2] += 1.0
  out = np.asarray(model.apply(v, ctx))
  assert not np.allclose(out[2], want[2]) and np.allclose(np.delete(out, 2, 0),
                                                           np.delete(want, 2, 0))
  # The user-side values reach the user tower (every row's score moves).
  user = {**req, 'sparse': req['sparse'].copy(), 'dense': req['dense'] + [[1.0, 0, 0]]}
  user['sparse'][:, 0] = 1
  moved = np.abs(np.asarray(model.apply(v, user)) - want).max(-1)
  assert (moved > 1e-6).all(), moved


def test_item_vectors_without_item_side_features_is_an_error():
  spec, req = _sided_request()
  model, v = _model(spec, req)
  with pytest.raises(ValueError, match=r"item-side.*'shop'"):
    model.apply(v, req['target_item'], req['target_cate'], method=model.item_vectors)
