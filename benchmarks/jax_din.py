"""seqrec_jax DIN at the reference configuration, timed through the project's own code path:
`models.build_model`, `TrainState`, `steps.train_step` jitted with donation (as train.py does),
`serving.CandidateScorer` for one user x N candidates, `serving.score_batch_fn` for batches.

pack=True (data.pack_history; its default depends on the platform, seqrec_jax/platform_defaults.py):
every batch gets its packed history index (data/packing.py) on the host inside the timed loop,
as train.py's input pipeline does.
"""
from __future__ import annotations

import functools

import jax
import numpy as np

from benchmarks import data as bd
from seqrec_jax import models, platform_defaults, precision, serving, steps
from seqrec_jax.configs import default
from seqrec_jax.data import packing
from seqrec_jax.data.features import DataSpec
from seqrec_jax.state import TrainState, make_optimizer


def reference_config(activation: str = 'dice'):
  c = default.get_config()
  c.model.name = 'din'
  c.model.embed_dim = bd.EMBED_DIM
  c.model.hidden = bd.HIDDEN
  c.model.attention.hidden = bd.ATT_HIDDEN
  c.model.activation = activation
  c.optim.name = 'adam'
  c.data.batch_size = bd.BATCH
  return platform_defaults.resolve(c)          # packing: this platform's defaults


class JaxDin:
  """The benchmark interface every system implements (see benchmarks/peers/runner.py)."""
  framework = 'jax'

  def __init__(self, seq_len: int, activation: str = 'dice', seed: int = 0,
               pack: bool | None = None, compute_dtype: str = 'float32'):
    self.config = reference_config(activation)
    self.config.model.compute_dtype = compute_dtype
    self.pack = self.config.data.pack_history if pack is None else pack
    self.spec = DataSpec(num_users=bd.NUM_USERS, num_items=bd.NUM_ITEMS,
                         num_cates=bd.NUM_CATES, max_len=seq_len)
    self.model = models.build_model(self.config.model, self.spec)
    self.tasks = self.spec.tasks
    self.batches = bd.make_batches(seq_len)
    tx = make_optimizer(self.config.optim, 1000)
    v = self.model.init(jax.random.key(seed), self.batches[0], train=False)
    self.state = TrainState.create(precision.cast_apply(self.model.apply, compute_dtype), v, tx)
    self.step_fn = jax.jit(functools.partial(steps.train_step, tasks=self.tasks),
                           donate_argnums=(0,))
    self.rng = jax.random.key(seed + 1)
    self._i = 0
    self.scorer = None
    c = self.config.data
    self.batch_fn = serving.score_batch_fn(
        self.model, pack_buckets=c.pack_buckets if self.pack else 0, pack_max_fill=c.pack_max_fill)

  def train(self, num_steps: int) -> float:
    """Runs num_steps optimiser steps on host batches (transfer included); returns last loss."""
    m = None
    for _ in range(num_steps):
      b = self._prepare(self.batches[self._i % len(self.batches)])
      self._i += 1
      self.state, m = self.step_fn(self.state, b, self.rng)
    return float(m['loss'])

  def _prepare(self, batch):
    if not self.pack:
      return batch
    return packing.add_history_index(batch, self.config.data.pack_buckets,
                                     self.config.data.pack_max_fill)

  def cost_analysis(self) -> dict:
    """XLA's cost analysis of the compiled train step (flops, bytes accessed) per batch."""
    b = self._prepare(self.batches[0])
    comp = self.step_fn.lower(self.state, b, self.rng).compile()
    ca = comp.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return {'flops': float(ca.get('flops', np.nan)),
            'bytes': float(ca.get('bytes accessed', np.nan))}

  def serve(self, request) -> np.ndarray:
    if self.scorer is None:
      self.scorer = serving.CandidateScorer(self.model, self.state.variables)
    self.scorer.variables = self.state.variables     # the train step donates the old state
    return np.asarray(self.scorer(request))

  def serving_path(self, request) -> str:
    """'shared' (history computed once per request) or 'tiled' (the scorer's check found the
    shared path off by more than its tolerance, e.g. under reduced-precision matmuls)."""
    self.serve(request)
    return 'shared' if self.scorer.uses_shared_history(request) else 'tiled'

  def score(self, batch) -> np.ndarray:
    return np.asarray(self.batch_fn(self.state.variables, batch))

  def compile_count(self) -> int:
    return self.step_fn._cache_size()  # pylint: disable=protected-access
