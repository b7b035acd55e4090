"""Serving: score one user against N candidates, computing the history side once.

A ranking service calls DIN with one user (history [L]) and N candidate items. Tiling the
history to N rows and running the model repeats the user-side work N times. Here the request
keeps the history at batch 1 and the model runs on it directly: embeddings of the history are
gathered once, and the DIN attention's first layer (`ConcatDense`, shared-history path)
computes its k-part once per user and the candidate part as one matmul; every later layer
broadcasts. The result equals `model.apply` on the tiled batch (up to float rounding;
tests/test_serving.py).

  scorer = CandidateScorer(model, state.variables)
  probs = scorer({'hist_items': [L], 'hist_cates': [L], 'hist_mask': [L],
                  'target_item': [N], 'target_cate': [N], 'user_id': ()})   # -> [N] or [N, T]

Attention units that do not broadcast over a batch-1 history are detected on the first
request of each shape (both paths are run and compared) and then served by tiling.
"""
from __future__ import annotations

from typing import Any, Mapping

from absl import logging
import jax
import numpy as np

from seqrec_jax.data import packing


# Per-user fields: kept at batch 1 (history) or tiled to the N candidates (cheap features).
HISTORY_KEYS = ('hist_items', 'hist_cates', 'hist_mask')
USER_KEYS = ('user_id', 'dense', 'sparse')
CANDIDATE_KEYS = ('target_item', 'target_cate')


def _as_rows(x, what: str):
  """A user-level field as one row: [...] -> [1, ...]."""
  x = np.asarray(x)
  if what == 'user_id':
    return x.reshape(1)
  if what in HISTORY_KEYS:
    if x.ndim == 1:
      return x[None]
    if x.ndim != 2 or x.shape[0] != 1:
      raise ValueError(f'request[{what!r}] has shape {x.shape}; expected [L] or [1, L] '
                       '(one user per request)')
    return x
  return x if x.ndim == 2 else x[None]


def make_request_batch(request: Mapping[str, Any], tile_history: bool) -> dict[str, np.ndarray]:
  """A request -> a model batch with N rows (history at batch 1 unless tile_history)."""
  for key in CANDIDATE_KEYS:
    if key not in request:
      raise ValueError(f'request has no {key!r} (the candidates, shape [N])')
  n = len(np.asarray(request['target_item']))
  if n == 0:
    raise ValueError("request['target_item'] is empty: no candidates to score")
  batch = {k: np.asarray(request[k]).reshape(n) for k in CANDIDATE_KEYS}
  for key in HISTORY_KEYS:
    if key in request:
      rows = _as_rows(request[key], key)
      batch[key] = np.repeat(rows, n, axis=0) if tile_history else rows
  for key in USER_KEYS:
    if key in request:
      rows = _as_rows(request[key], key)
      if rows.shape[0] not in (1, n):
        raise ValueError(f'request[{key!r}] has {rows.shape[0]} rows; expected 1 (per user) '
                         f'or {n} (per candidate)')
      batch[key] = rows if rows.shape[0] == n else np.repeat(rows, n, axis=0)
  if 'hist_mask' in batch:
    batch['hist_mask'] = batch['hist_mask'].astype(bool)
  return batch


class CandidateScorer:
  """Scores requests (one user x N candidates) with a jitted inference apply.

  Args:
    model: a model from `models.build_model` (called as model.apply(vars, batch, train)).
    variables: {'params': ..., 'batch_stats': ...} (e.g. TrainState.variables).
    shared_history: True (history at batch 1), False (tile it), or 'auto' (check on the
      first request of each shape that the shared path matches tiling, else tile).
    probabilities: apply a sigmoid (binary tasks); False returns logits.
  """

  def __init__(self, model, variables, shared_history: bool | str = 'auto',
               probabilities: bool = True, rtol: float = 1e-4, atol: float = 1e-5):
    if shared_history not in (True, False, 'auto'):
      raise ValueError(f"shared_history must be True, False or 'auto', got {shared_history!r}")
    self.variables = variables
    self.shared_history = shared_history
    self._decided: dict[tuple, bool] = {}
    self._tol = (rtol, atol)

    def score(v, batch):
      logits = model.apply(v, batch, train=False)
      return jax.nn.sigmoid(logits) if probabilities else logits

    self._score = jax.jit(score)

  def _shape_key(self, request) -> tuple:
    return tuple(sorted((k, np.shape(v)) for k, v in request.items()))

  def uses_shared_history(self, request) -> bool:
    """Whether requests shaped like `request` are served on the shared-history path."""
    if self.shared_history != 'auto':
      return bool(self.shared_history)
    key = self._shape_key(request)
    if key not in self._decided:
      tiled = np.asarray(self._score(self.variables, make_request_batch(request, True)))
      try:
        shared = np.asarray(self._score(self.variables, make_request_batch(request, False)))
        ok = shared.shape == tiled.shape and np.allclose(shared, tiled, *self._tol)
      except (ValueError, TypeError) as e:       # a unit that cannot broadcast the history
        logging.info('shared-history serving unavailable (%s); tiling the history', e)
        ok = False
      self._decided[key] = ok
    return self._decided[key]

  def batch(self, request) -> dict[str, np.ndarray]:
    return make_request_batch(request, tile_history=not self.uses_shared_history(request))

  def __call__(self, request) -> jax.Array:
    """request: history [L] (or [1, L]), candidates [N] -> scores [N] (or [N, T])."""
    return self._score(self.variables, self.batch(request))


def score_batch_fn(model, probabilities: bool = True, pack_buckets: int = 0,
                   pack_max_fill: float = 0.8):
  """Jitted batch scoring (independent users, one candidate each): (vars, batch) -> [B].

  pack_buckets > 0: host (numpy) batches get the packed history index first
  (data/packing.py; same scores, no work on padding; one compilation per capacity bucket).
  """
  def score(v, batch):
    logits = model.apply(v, batch, train=False)
    return jax.nn.sigmoid(logits) if probabilities else logits
  jitted = jax.jit(score)
  if pack_buckets <= 0:
    return jitted
  return lambda v, batch: jitted(v, packing.add_history_index(batch, pack_buckets,
                                                              pack_max_fill))
