"""Negative samplers for two-tower training and the log-Q of each.

  catalogue_probs   p(j) proportional to count_j ** power over the catalogue (word2vec's 0.75,
                    Mikolov et al. 2013: between popularity (1) and uniform (0)); p(0) = 0
  CatalogueSampler  draws from p by inverse CDF on the host (numpy searchsorted)
  log_q             log of the expected number of times each item is among the candidates of a
                    batch: B in-batch positives (drawn from the data, p_data = count / N) plus M
                    catalogue samples from p -> log(B p_data(j) + M p(j)); the candidate set is
                    one draw from that mixture, so one Q serves every column whichever stream
                    delivered it (with M = 0 it is the in-batch Q of Yi et al. 2019)
  hard_mask         which hard negatives (items the ranker scored high but that were not
                    positives, hard_item [B, h], 0 = none) a step uses: each slot with
                    probability `rate`, never padding, never the row's own positive

Exposed-but-not-clicked items are never sampled as negatives here: see docs/retrieval.md.
"""
from __future__ import annotations

import numpy as np

_TINY = 1e-30


def catalogue_probs(item_count, power: float = 0.75) -> np.ndarray:
  """item_count [I] (train occurrences; row 0 = padding) -> p [I] float64, p[0] = 0, sum 1."""
  c = np.asarray(item_count, np.float64).copy()
  if c.ndim != 1 or c.shape[0] < 2:
    raise ValueError(f'item_count must be [I] with I >= 2, got shape {c.shape}')
  if (c < 0).any():
    raise ValueError(f'item_count has a negative entry at item {int(np.argmin(c))}')
  c[0] = 0.0
  w = np.where(c > 0, c, 0.0) ** power
  if w.sum() <= 0:
    raise ValueError('item_count has no positive entry outside item 0: nothing to sample')
  return w / w.sum()


class CatalogueSampler:
  """Draws item ids from catalogue_probs(item_count, power) by inverse CDF, on the host.

  Host-side on purpose: the draws enter the compiled step as inputs, like the batch, so the
  step holds no PRNG code (jax.random's threefry adds ~1 s of XLA compile per use on a 2-core
  CPU, docs/retrieval.md) and the negatives of a run are a function of its seed.
  """

  def __init__(self, item_count, power: float = 0.75):
    self.probs = catalogue_probs(item_count, power)
    self.cdf = np.cumsum(self.probs)

  def sample(self, rng: np.random.Generator, shape) -> np.ndarray:
    """-> item ids int32 of `shape`, with replacement; never an item of probability 0."""
    u = rng.random(shape) * self.cdf[-1]
    ids = np.searchsorted(self.cdf, u, side='right')    # first item whose cdf exceeds u
    return np.minimum(ids, len(self.cdf) - 1).astype(np.int32)


def log_q(item_count, batch_size: int, num_catalogue: int = 0,
          power: float = 0.75) -> np.ndarray:
  """[I] float32: log(B * count_j / N + M * p_power(j)) (see the module docstring); items
  never counted get log(1e-30) (they can only be candidates through hard negatives, which
  take no correction)."""
  c = np.asarray(item_count, np.float64).copy()
  c[0] = 0.0
  q = batch_size * c / max(c.sum(), 1.0)
  if num_catalogue:
    q = q + num_catalogue * catalogue_probs(item_count, power)
  return np.log(np.maximum(q, _TINY)).astype(np.float32)


def hard_mask(rng: np.random.Generator, hard_item, pos_item, rate: float) -> np.ndarray:
  """hard_item [B, h] int32 (0 = none), pos_item [B] -> [B, h] bool: the slots used this step
  (each kept with probability rate; padding and the row's own positive never)."""
  hard_item = np.asarray(hard_item)
  keep = rng.random(hard_item.shape) < rate
  return keep & (hard_item != 0) & (hard_item != np.asarray(pos_item)[:, None])
