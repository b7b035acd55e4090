"""Three-tower pre-ranker: serving path (user tower once, cached item vectors) == batch forward."""
from __future__ import annotations

import jax
import numpy as np

from seqrec_jax import models
from seqrec_jax.configs import load_config
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
