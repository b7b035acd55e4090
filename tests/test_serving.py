"""Serving one user x N candidates with the history side computed once (seqrec_jax/serving.py):
equal to model.apply on the tiled batch, one compilation per shape, clear request errors."""
from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
import pytest

from seqrec_jax import models
from seqrec_jax.configs import default
from seqrec_jax.data.features import DataSpec, FeatureSpec, Task
from seqrec_jax.models import builders
from seqrec_jax.serving import CandidateScorer, make_request_batch, score_batch_fn

LEN, N, ITEMS, CATES = 7, 9, 40, 6


@functools.lru_cache(maxsize=None)
def _model(activation='dice', inputs=('q', 'k', 'q-k', 'q*k'), attention='din',
           with_side=False, normalizer='none'):
  """A model and random variables (shared by the tests asking for the same model)."""
  spec = DataSpec(num_users=30, num_items=ITEMS, num_cates=CATES, max_len=LEN,
                  sparse=(FeatureSpec('city', 5),) if with_side else (),
                  dense_dim=3 if with_side else 0)
  c = default.get_config()
  c.model.embed_dim, c.model.hidden = 4, (8, 4)
  c.model.attention.hidden, c.model.attention.inputs = (6, 3), inputs
  c.model.attention.name, c.model.attention.normalizer = attention, normalizer
  c.model.activation, c.model.use_user_embedding = activation, with_side
  model = models.build_model(c.model, spec)
  # Random values in the variables' shapes (eval_shape compiles nothing; an op-by-op init and
  # train step were ~40% of this file's CPU time): params 0.3 N(0, 1); Dice's statistics
  # non-trivial, as after one update (count 1: bias correction 1 - momentum = 0.01), moving
  # mean ~ N(0, 0.3), var in (0.5, 1.5).
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), _batch(16, with_side),
                                             train=False))
  r = np.random.default_rng(0)

  def draw(path, x):
    stats, name = path[0].key == 'batch_stats', path[-1].key
    if stats and name == 'count':
      return np.ones(x.shape, x.dtype)
    if stats and name == 'var':
      return (0.01 * r.uniform(0.5, 1.5, x.shape)).astype(x.dtype)
    return ((0.003 if stats else 0.3) * r.normal(size=x.shape)).astype(x.dtype)
  return model, jax.tree_util.tree_map_with_path(draw, shapes)


def _batch(n, with_side=False, seed=1):
  r = np.random.default_rng(seed)
  lens = r.integers(0, LEN + 1, n)
  mask = np.arange(LEN)[None] >= (LEN - lens)[:, None]
  b = dict(user_id=r.integers(1, 30, n).astype(np.int32),
           target_item=r.integers(1, ITEMS, n).astype(np.int32),
           target_cate=r.integers(1, CATES, n).astype(np.int32),
           hist_items=(r.integers(1, ITEMS, (n, LEN)) * mask).astype(np.int32),
           hist_cates=(r.integers(1, CATES, (n, LEN)) * mask).astype(np.int32),
           hist_mask=mask, label=r.integers(0, 2, n).astype(np.float32))
  if with_side:
    b.update(sparse=r.integers(0, 5, (n, 1)).astype(np.int32),
             dense=r.normal(size=(n, 3)).astype(np.float32))
  return b


def _request(seed, length=4, with_side=False):
  r = np.random.default_rng(seed)
  mask = np.arange(LEN) >= LEN - length
  req = dict(user_id=np.int32(r.integers(1, 30)),
             hist_items=(r.integers(1, ITEMS, LEN) * mask).astype(np.int32),
             hist_cates=(r.integers(1, CATES, LEN) * mask).astype(np.int32), hist_mask=mask,
             target_item=r.integers(1, ITEMS, N).astype(np.int32),
             target_cate=r.integers(1, CATES, N).astype(np.int32))
  if with_side:
    req.update(sparse=np.array([2], np.int32), dense=r.normal(size=3).astype(np.float32))
  return req


@functools.lru_cache(maxsize=None)
def _reference_fn(model):
  return jax.jit(lambda v, b: jax.nn.sigmoid(model.apply(v, b, train=False)))


def _tiled_reference(model, v, req):
  """model.apply on the tiled batch (one compilation per model and shape)."""
  return np.asarray(_reference_fn(model)(v, make_request_batch(req, True)))


@pytest.mark.parametrize('activation,inputs,with_side', [
    ('dice', ('q', 'k', 'q-k', 'q*k'), False), ('prelu', ('q', 'k', 'q-k', 'q*k'), False),
    ('dice', ('q*k', 'k', 'outer'), False), ('dice', ('q', 'k', 'q-k', 'q*k'), True)])
def test_shared_history_equals_tiled_apply(activation, inputs, with_side):
  model, v = _model(activation, inputs, with_side=with_side)
  scorer = CandidateScorer(model, v, shared_history=True)
  for seed, length in [(0, 4), (1, LEN), (2, 0)]:          # partial, full, empty history
    req = _request(seed, length, with_side)
    out = np.asarray(scorer(req))
    assert out.shape == (N,)
    assert np.ptp(out) > 1e-3                                # candidates really differ
    np.testing.assert_allclose(out, _tiled_reference(model, v, req), rtol=1e-5, atol=1e-6)


def test_shared_history_matches_per_example_batch_scoring():
  """Row i of a request == scoring (history, candidate i) alone as an ordinary batch row."""
  model, v = _model()
  req = _request(5)
  out = np.asarray(CandidateScorer(model, v)(req))
  for i in (0, N - 1):
    one = {k: (np.asarray(x)[None] if np.ndim(x) <= 1 and k.startswith('hist') else x)
           for k, x in req.items()}
    one.update(target_item=req['target_item'][i:i + 1], target_cate=req['target_cate'][i:i + 1])
    np.testing.assert_allclose(out[i], _tiled_reference(model, v, one)[0], rtol=1e-5)


def test_auto_picks_the_shared_path_for_din_and_is_right_for_every_unit():
  for name in sorted(builders.ATTENTIONS):
    model, v = _model(attention=name, normalizer='softmax' if name == 'multihead' else 'none')
    scorer = CandidateScorer(model, v)
    req = _request(3)
    np.testing.assert_allclose(np.asarray(scorer(req)), _tiled_reference(model, v, req),
                               rtol=1e-5, atol=1e-6, err_msg=name)
    if name == 'din':
      assert scorer.uses_shared_history(req)


def test_one_compilation_per_request_shape():
  model, v = _model()
  scorer = CandidateScorer(model, v, shared_history=True)
  for seed in range(4):
    scorer(_request(seed, length=seed + 1))
  assert scorer._score._cache_size() == 1  # pylint: disable=protected-access


def test_bad_requests_name_the_field():
  model, v = _model()
  scorer = CandidateScorer(model, v, shared_history=True)
  req = _request(0)
  with pytest.raises(ValueError, match='target_item'):
    scorer({k: x for k, x in req.items() if k != 'target_item'})
  with pytest.raises(ValueError, match="hist_items.*one user"):
    scorer({**req, 'hist_items': np.zeros((2, LEN), np.int32)})
  with pytest.raises(ValueError, match='shared_history'):
    CandidateScorer(model, v, shared_history='yes')


class _ThreeHeads:
  """A served model with three task kinds: the DIN logit z, then -z and 0.5 z as extra heads."""

  def __init__(self, model, tasks):
    self.spec = dataclasses.replace(model.spec, tasks=tasks)
    self._model = model

  def apply(self, v, batch, train=False):
    z = self._model.apply(v, batch, train=train)
    return jax.numpy.stack([z, -z, 0.5 * z], axis=-1)


def test_each_task_kind_is_served_as_evaluation_reports_it():
  """binary -> sigmoid, watch_time -> exp (not a sigmoid), regression -> the raw value."""
  model, v = _model()
  tasks = (Task('click'), Task('watch', 'watch_time'), Task('rating', 'regression'))
  req = _request(4)
  z = np.asarray(jax.jit(lambda v, b: model.apply(v, b, train=False))(
      v, make_request_batch(req, True)))
  for shared in (True, False):
    out = np.asarray(CandidateScorer(_ThreeHeads(model, tasks), v, shared_history=shared)(req))
    assert out.shape == (N, 3)
    np.testing.assert_allclose(out[:, 0], 1 / (1 + np.exp(-z)), rtol=1e-5)
    np.testing.assert_allclose(out[:, 1], np.exp(-z), rtol=1e-5)
    np.testing.assert_allclose(out[:, 2], 0.5 * z, rtol=1e-5, atol=1e-6)
  logits = np.asarray(CandidateScorer(_ThreeHeads(model, tasks), v, probabilities=False)(req))
  np.testing.assert_allclose(logits[:, 1], -z, rtol=1e-5)
  batch = np.asarray(score_batch_fn(_ThreeHeads(model, tasks))(v, _batch(5)))
  assert batch.shape == (5, 3) and (batch[:, 1] > 0).all()


def test_outputs_and_spec_tasks_must_agree():
  model, v = _model()
  two = (Task('click'), Task('watch', 'watch_time'))
  with pytest.raises(ValueError, match=r"3 outputs.*2 tasks.*'click', 'watch'"):
    CandidateScorer(_ThreeHeads(model, two), v, shared_history=True)(_request(0))
