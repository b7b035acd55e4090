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

Every request is validated against the model's DataSpec before it is scored
(`validate_request`): every field the model reads present (`required_fields`), known fields
only, integer ids inside their vocabularies (JAX gathers would clamp an out-of-range id
silently), shapes ([N] candidates, [L] history with L <= max_len, matching lengths; item-side
sparse / dense columns per candidate), a bool or 0/1 mask, dense values finite in float32 (the
model's dtype: 1e300 in float64 would become inf). A bad request is a `RequestError` naming the
field, the value and its position.
"""
from __future__ import annotations

from typing import Any, Mapping

from absl import logging
import jax
import numpy as np

from seqrec_jax import steps
from seqrec_jax.data import packing
from seqrec_jax.data.features import Task


# Per-user fields: kept at batch 1 (history) or tiled to the N candidates (cheap features).
HISTORY_KEYS = ('hist_items', 'hist_cates', 'hist_mask')
USER_KEYS = ('user_id', 'dense', 'sparse')
CANDIDATE_KEYS = ('target_item', 'target_cate')
# What the models compute in: dense values are checked after this cast and fed in it.
MODEL_FLOAT = np.float32


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


class RequestError(ValueError):
  """A malformed serving request; the message names the field, the value and its position."""


def _ids(request, key: str, vocab: int, what: str) -> np.ndarray:
  x = np.asarray(request[key])
  if x.dtype == object or not (np.issubdtype(x.dtype, np.integer) or x.size == 0):
    raise RequestError(f'request[{key!r}] has dtype {x.dtype}; {what} ids must be integers')
  bad = (x < 0) | (x >= vocab)
  if bad.any():
    pos = tuple(int(i) for i in np.argwhere(bad)[0])
    raise RequestError(
        f'request[{key!r}]{list(pos)} = {x[pos].item()} is outside [0, {vocab}) (the {what} '
        f'vocabulary; 0 = padding / out-of-vocabulary); {int(bad.sum())} bad of {x.size}')
  return x


def required_fields(spec) -> dict[str, str]:
  """{field: what it is} for every request field a model on `spec` reads (the batch contract's
  fields that the spec has)."""
  out = {'target_item': 'the candidates, shape [N]'}
  if spec.num_cates:
    out['target_cate'] = 'the candidates, shape [N]'
  out['user_id'] = 'the user id, a scalar; 0 = unknown'
  if spec.num_items and spec.max_len:
    out['hist_items'] = 'the history, shape [L]; padding ids 0 with hist_mask False'
    if spec.num_cates:
      out['hist_cates'] = 'the history categories, shape [L]'
    out['hist_mask'] = 'True at real behaviours, shape [L]'
  if spec.sparse:
    out['sparse'] = f'the sparse fields {[f.name for f in spec.sparse]}, [F] or [N, F]'
  if spec.dense_dim:
    out['dense'] = f'the {spec.dense_dim} dense features, [D] or [N, D]'
  return out


def _per_candidate(key: str, x: np.ndarray, spec, n: int) -> None:
  """Item-side columns describe each candidate: one row for N > 1 candidates is refused."""
  cols = spec.sparse_columns('item') if key == 'sparse' else spec.dense_columns('item')
  if cols and n > 1 and (x.ndim == 1 or x.shape[0] == 1):
    names = ([spec.sparse[j].name for j in cols] if key == 'sparse'
             else [f'column {j}' for j in cols])
    raise RequestError(f'request[{key!r}] has shape {x.shape}, one row for {n} candidates, but '
                       f'{names} are item-side (one value per candidate): send '
                       f'[{n}, {x.shape[-1]}]')


def _finite_dense(x: np.ndarray) -> None:
  """Dense values must be finite after the cast to MODEL_FLOAT."""
  if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
    raise RequestError(f"request['dense'] must hold finite numbers; got dtype {x.dtype}")
  with np.errstate(over='ignore', invalid='ignore'):
    bad = ~np.isfinite(x.astype(MODEL_FLOAT))
  if bad.any():
    pos = tuple(int(i) for i in np.argwhere(bad)[0])
    raise RequestError(
        f"request['dense'] must hold finite numbers in {np.dtype(MODEL_FLOAT).name} (the "
        f'model\'s dtype, |x| <= {np.finfo(MODEL_FLOAT).max:.3g}); got dtype {x.dtype}, '
        f'{x[pos].item():g} at {list(pos)} ({int(bad.sum())} bad of {x.size})')


def validate_request(request, spec) -> None:
  """Checks a request against the model's DataSpec: every field the model reads present,
  keys, dtypes, shapes, history length (<= max_len), every id against its vocabulary, a 0/1
  (or bool) mask, dense values finite in float32, item-side columns per candidate.
  Raises RequestError naming the field, the value and its position."""
  if not isinstance(request, Mapping):
    raise RequestError(f'a request is a dict of arrays, got {type(request).__name__}')
  allowed = CANDIDATE_KEYS + HISTORY_KEYS + USER_KEYS
  unknown = sorted(set(request) - set(allowed))
  if unknown:
    raise RequestError(f'request has unknown fields {unknown}; allowed: {list(allowed)}')
  need = required_fields(spec)
  for key, what in need.items():
    if key not in request:
      raise RequestError(f'request has no {key!r} ({what}); the model reads {list(need)}')
  cand = _ids(request, 'target_item', spec.num_items, 'item')
  if cand.ndim != 1 or cand.size == 0:
    raise RequestError(f"request['target_item'] has shape {cand.shape}; expected [N], N >= 1")
  n = cand.shape[0]
  if 'target_cate' in request:
    c = _ids(request, 'target_cate', max(spec.num_cates, 1), 'category')
    if c.shape != cand.shape:
      raise RequestError(f"request['target_cate'] has shape {c.shape}; expected {cand.shape} "
                         "like request['target_item']")
  hist_shape = None
  for key, vocab, what in (('hist_items', spec.num_items, 'item'),
                           ('hist_cates', max(spec.num_cates, 1), 'category')):
    if key not in request:
      continue
    h = _ids(request, key, vocab, what)
    if not (h.ndim == 1 or (h.ndim == 2 and h.shape[0] == 1)):
      raise RequestError(f'request[{key!r}] has shape {h.shape}; expected [L] or [1, L] '
                         '(one user per request)')
    if h.shape[-1] == 0:
      raise RequestError(f'request[{key!r}] is empty; a user without behaviours is sent as '
                         'padding (ids 0, hist_mask False)')
    if h.shape[-1] > spec.max_len:
      raise RequestError(f'request[{key!r}] has length {h.shape[-1]}, more than the model\'s '
                         f'max_len {spec.max_len} (keep the newest {spec.max_len}, newest last)')
    if hist_shape is not None and h.shape != hist_shape:
      raise RequestError(f'request[{key!r}] has shape {h.shape}; expected {hist_shape} like '
                         "request['hist_items']")
    hist_shape = h.shape
  if 'hist_mask' in request:
    m = np.asarray(request['hist_mask'])
    if hist_shape is not None and m.shape != hist_shape:
      raise RequestError(f"request['hist_mask'] has shape {m.shape}; expected {hist_shape} "
                         "like request['hist_items']")
    if m.dtype != bool:
      if not np.issubdtype(m.dtype, np.number):
        raise RequestError(f"request['hist_mask'] has dtype {m.dtype}; expected bool or 0/1")
      bad = ~np.isin(m, (0, 1))
      if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise RequestError(f"request['hist_mask']{list(pos)} = {m[pos].item()}; mask values "
                           'must be bool or 0/1')
  if 'user_id' in request:
    u = _ids(request, 'user_id', spec.num_users, 'user')
    if u.size != 1:
      raise RequestError(f"request['user_id'] has shape {u.shape}; expected a scalar or [1]")
  if 'sparse' in request:
    x = np.asarray(request['sparse'])
    f = len(spec.sparse)
    if x.ndim not in (1, 2) or x.shape[-1] != f or (x.ndim == 2 and x.shape[0] not in (1, n)):
      raise RequestError(f"request['sparse'] has shape {x.shape}; expected [{f}], [1, {f}] or "
                         f'[{n}, {f}] (fields {[s.name for s in spec.sparse]})')
    if not np.issubdtype(x.dtype, np.integer):
      raise RequestError(f"request['sparse'] has dtype {x.dtype}; field ids must be integers")
    for j, fs in enumerate(spec.sparse):
      bad = (x[..., j] < 0) | (x[..., j] >= fs.vocab_size)
      if bad.any():
        pos = [int(i) for i in np.argwhere(bad)[0]] + [j]
        raise RequestError(f"request['sparse']{pos} = {x[tuple(pos)].item()} is outside "
                           f'[0, {fs.vocab_size}) (field {fs.name!r}; 0 = padding / OOV)')
    _per_candidate('sparse', x, spec, n)
  if 'dense' in request:
    x = np.asarray(request['dense'])
    d = spec.dense_dim
    if x.ndim not in (1, 2) or x.shape[-1] != d or (x.ndim == 2 and x.shape[0] not in (1, n)):
      raise RequestError(f"request['dense'] has shape {x.shape}; expected [{d}], [1, {d}] or "
                         f'[{n}, {d}]')
    _finite_dense(x)
    _per_candidate('dense', x, spec, n)


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
  if 'dense' in batch:
    batch['dense'] = batch['dense'].astype(MODEL_FLOAT)    # the values validate_request checked
  return batch


class CandidateScorer:
  """Scores requests (one user x N candidates) with a jitted inference apply.

  Args:
    model: a model from `models.build_model` (called as model.apply(vars, batch, train)).
    variables: {'params': ..., 'batch_stats': ...} (e.g. TrainState.variables).
    shared_history: True (history at batch 1), False (tile it), or 'auto' (check on the
      first request of each shape that the shared path matches tiling, else tile).
    probabilities: serve each task's value (`steps.task_outputs`: sigmoid for binary /
      completion_rate, exp for watch_time, raw for regression); False returns logits.
    spec: the DataSpec requests are validated against (default: model.spec); its tasks
      choose the output mapping.
  """

  def __init__(self, model, variables, shared_history: bool | str = 'auto',
               probabilities: bool = True, rtol: float = 1e-4, atol: float = 1e-5,
               spec=None):
    if shared_history not in (True, False, 'auto'):
      raise ValueError(f"shared_history must be True, False or 'auto', got {shared_history!r}")
    self.spec = spec if spec is not None else getattr(model, 'spec', None)
    if self.spec is None:
      raise ValueError('CandidateScorer needs the DataSpec to validate requests: the model has '
                       'no .spec; pass spec=')
    self.variables = variables
    self.shared_history = shared_history
    self._decided: dict[tuple, bool] = {}
    self._tol = (rtol, atol)

    tasks = self.spec.tasks

    def score(v, batch):
      logits = model.apply(v, batch, train=False)
      return steps.task_outputs(logits, tasks) if probabilities else logits

    self._score = jax.jit(score)

  def _shape_key(self, request) -> tuple:
    return tuple(sorted((k, np.shape(v)) for k, v in request.items()))

  def uses_shared_history(self, request) -> bool:
    """Whether requests shaped like `request` are served on the shared-history path."""
    if self.shared_history != 'auto':
      return bool(self.shared_history)
    validate_request(request, self.spec)
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
    validate_request(request, self.spec)
    return make_request_batch(request, tile_history=not self.uses_shared_history(request))

  def __call__(self, request) -> jax.Array:
    """request: history [L] (or [1, L]), candidates [N] -> scores [N] (or [N, T])."""
    return self._score(self.variables, self.batch(request))


def score_batch_fn(model, probabilities: bool = True, pack_buckets: int = 0,
                   pack_max_fill: float = 0.8):
  """Jitted batch scoring (independent users, one candidate each): (vars, batch) -> [B].

  pack_buckets > 0: host (numpy) batches get the packed history index first
  (data/packing.py; same scores, no work on padding; one compilation per capacity bucket).
  probabilities: per-task served values (`steps.task_outputs`, tasks from model.spec; a model
  without a spec is taken as one binary task); False returns logits.
  """
  spec = getattr(model, 'spec', None)
  tasks = spec.tasks if spec is not None else (Task('click'),)

  def score(v, batch):
    logits = model.apply(v, batch, train=False)
    return steps.task_outputs(logits, tasks) if probabilities else logits
  jitted = jax.jit(score)
  if pack_buckets <= 0:
    return jitted
  return lambda v, batch: jitted(v, packing.add_history_index(batch, pack_buckets,
                                                              pack_max_fill))
