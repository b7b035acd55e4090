"""Training entry of the two-tower retrieval model: every seed of a group in one compiled step.

  result = train(examples, catalog, TwoTowerConfig(loss='softmax'), seeds=(0, 1, 2))
  channel = result.channel(0, catalog['cate_of_item'])       # retrieval/two_tower.py

examples (docs RETRIEVAL_API): user_id [N], hist_item [N, L] (right-aligned, 0-padded),
hist_cate [N, L], item_id [N] (the positive next item), cate_id [N], optional hard_item [N, h]
(0 = none); catalog: item_count [I] (train occurrences), cate_of_item [I], optional num_users
(default: max user_id + 1). Either may hold the catalogue arrays (catalog=None: from examples).

Seeds: params and optimiser state carry a leading run axis [S]; one jax.vmap'ed, jitted step
advances every seed at once (as seqrec_jax/multirun.py does for train.py). Run s is exactly the
single run train(..., seeds=(seeds[s],)): its init key (jax.random.key(seed)), its data order
(a permutation per epoch from numpy's generator seeded with (seed, epoch)) and its negatives
(drawn on the host from a generator seeded with (seed, 1), retrieval/negatives.py) depend on
its own seed only; the compiled step holds no random number code.
Why not train.py's multi-run engine: its step is a per-row loss on labels
(losses.task_losses); the listwise losses need the whole batch's item vectors, sampled catalogue
columns and per-row hard negatives: a different step, not a small change (docs/retrieval.md).

Losses (cfg.loss; retrieval/losses.py): 'softmax' (in-batch, log-Q corrected if cfg.log_q, plus
cfg.num_catalogue shared negatives from count^cfg.negative_power and the kept hard negatives as
extra columns), 'bce' (pointwise, logits = similarity / temperature), 'hinge' / 'triplet_log'
(pairwise on the raw similarity: cosines when similarity='cosine'); the last three take
cfg.num_negatives per row from the count^power sampler plus the kept hard negatives.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqrec_jax.data.features import DataSpec
from seqrec_jax.models.two_tower import TwoTower
from seqrec_jax.retrieval import losses as L
from seqrec_jax.retrieval import negatives as NEG

LOSSES = ('softmax', 'bce', 'hinge', 'triplet_log')
_KEYS = ('user_id', 'hist_item', 'hist_cate', 'item_id', 'cate_id')


@dataclasses.dataclass(frozen=True)
class TwoTowerConfig:
  """Model (embed_dim .. temperature), loss and negatives, optimisation."""
  embed_dim: int = 16
  tower: tuple = (64, 32)
  history: str = 'mean'          # sum | mean | max | attention
  num_heads: int = 2             # history='attention'
  use_user: bool = False
  similarity: str = 'cosine'     # cosine | dot
  temperature: float = 0.05
  loss: str = 'softmax'          # softmax | bce | hinge | triplet_log
  log_q: bool = True             # softmax: subtract log Q (Yi et al. 2019)
  num_catalogue: int = 0         # softmax: M shared negatives per step from count^power
  num_negatives: int = 8         # bce / hinge / triplet_log: sampled negatives per row
  negative_power: float = 0.75
  margin: float = 0.2            # hinge
  triplet_scale: float = 10.0    # triplet_log: softplus(scale * (neg - pos))
  hard_negative_rate: float = 0.0  # probability each hard_item slot is used in a step
  batch_size: int = 256
  num_steps: int = 1000
  learning_rate: float = 3e-3

  def __post_init__(self):
    if self.loss not in LOSSES:
      raise ValueError(f'TwoTowerConfig.loss={self.loss!r}; choose from {LOSSES}')
    if not 0.0 <= self.hard_negative_rate <= 1.0:
      raise ValueError(f'TwoTowerConfig.hard_negative_rate={self.hard_negative_rate} must be '
                       'in [0, 1]')
    for key in ('batch_size', 'num_steps'):
      if getattr(self, key) < 1:
        raise ValueError(f'TwoTowerConfig.{key}={getattr(self, key)} must be >= 1')


@dataclasses.dataclass
class TwoTowerResult:
  """params: the model's params with a leading run axis [S] (one row per seed); losses
  [num_steps, S]: each step's training loss; wall_s: training seconds (compile included)."""
  model: TwoTower
  params: Any
  seeds: tuple
  losses: np.ndarray
  config: TwoTowerConfig
  wall_s: float

  def params_of(self, s: int):
    return jax.tree.map(lambda x: x[s], self.params)

  def channel(self, s: int, cate_of_item, **kwargs):
    from seqrec_jax.retrieval.two_tower import TwoTowerChannel  # pylint: disable=g-import-not-at-top
    return TwoTowerChannel(self.model, self.params_of(s), cate_of_item, **kwargs)


def make_model(cfg: TwoTowerConfig, spec: DataSpec) -> TwoTower:
  return TwoTower(spec, cfg.embed_dim, cfg.use_user, tuple(cfg.tower), cfg.history,
                  cfg.num_heads, cfg.similarity, cfg.temperature)


def model_batch(user_id, hist_item, hist_cate, item_id, cate_id):
  """RETRIEVAL_API arrays -> the model's batch keys (hist_mask = hist_item != 0)."""
  return {'user_id': user_id, 'hist_items': hist_item, 'hist_cates': hist_cate,
          'hist_mask': hist_item != 0, 'target_item': item_id, 'target_cate': cate_id}


def _catalog(examples, catalog):
  cat = dict(examples if catalog is None else catalog)
  for key in ('item_count', 'cate_of_item'):
    if key not in cat:
      raise ValueError(f'two-tower training needs catalog[{key!r}] (docs RETRIEVAL_API)')
  return cat


def spec_of(examples, catalog) -> DataSpec:
  cat = _catalog(examples, catalog)
  cate_of_item = np.asarray(cat['cate_of_item'])
  num_items = len(cate_of_item)
  if len(cat['item_count']) != num_items:
    raise ValueError(f'item_count has {len(cat["item_count"])} entries, cate_of_item '
                     f'{num_items}: both are [I]')
  for key in ('item_id', 'hist_item'):
    top = int(np.max(examples[key]))
    if top >= num_items:
      raise ValueError(f'examples[{key!r}] holds item {top} >= I={num_items} (cate_of_item)')
  num_cates = int(max(cate_of_item.max(), np.max(examples['hist_cate']),
                      np.max(examples['cate_id']))) + 1
  num_users = int(cat.get('num_users', int(np.max(examples['user_id'])) + 1))
  return DataSpec(num_users=num_users, num_items=num_items, num_cates=num_cates,
                  max_len=int(examples['hist_item'].shape[1]))


def constants(catalog, cfg: TwoTowerConfig) -> dict:
  """{'log_q' [I]: log Q of a step's candidate set, 'cate_of_item' [I]} as jnp arrays."""
  m = cfg.num_catalogue if cfg.loss == 'softmax' else 0
  return {'log_q': jnp.asarray(NEG.log_q(catalog['item_count'], cfg.batch_size, m,
                                         cfg.negative_power)),
          'cate_of_item': jnp.asarray(catalog['cate_of_item'], jnp.int32)}


def draw_negatives(rng: np.random.Generator, batch: dict, cfg: TwoTowerConfig,
                   sampler: NEG.CatalogueSampler) -> dict:
  """The step's sampled inputs, added to a host batch: 'cat_item' [M] (softmax with
  num_catalogue) or 'neg_item' [B, n] (the other losses), and 'hard_keep' [B, h] bool."""
  out, b = dict(batch), len(batch['item_id'])
  if cfg.loss == 'softmax':
    if cfg.num_catalogue:
      out['cat_item'] = sampler.sample(rng, (cfg.num_catalogue,))
  else:
    out['neg_item'] = sampler.sample(rng, (b, cfg.num_negatives))
  if 'hard_item' in batch:
    if cfg.hard_negative_rate > 0:
      out['hard_keep'] = NEG.hard_mask(rng, batch['hard_item'], batch['item_id'],
                                       cfg.hard_negative_rate)
    else:
      del out['hard_item']
  return out


def loss_fn(params, batch, *, model: TwoTower, cfg: TwoTowerConfig, consts):
  """One seed's loss on a batch: RETRIEVAL_API keys [B, ...] plus draw_negatives' keys;
  consts: constants(catalog, cfg)."""
  tv = model.temperature
  mb = model_batch(*(batch[k] for k in _KEYS))
  u = model.apply({'params': params}, mb, method=TwoTower.user_vectors)          # [B, D]

  # Every item the loss reads (positives, sampled and hard negatives) goes through the item
  # tower in one call: one gather and one tower in the program, not one per kind.
  pos, hard = batch['item_id'], batch.get('hard_item')
  b = pos.shape[0]
  neg = batch.get('cat_item' if cfg.loss == 'softmax' else 'neg_item')
  parts = [pos] + [x.reshape(-1) for x in (neg, hard) if x is not None]
  ids = jnp.concatenate(parts)
  vecs = model.apply({'params': params}, ids, consts['cate_of_item'][ids],
                     method=TwoTower.item_vectors)
  v, rest = vecs[:b], vecs[b:]
  if neg is not None:
    n_vec, rest = rest[:neg.size].reshape(neg.shape + (-1,)), rest[neg.size:]
  if hard is not None:
    h_mask = batch['hard_keep']
    h_sim = jnp.einsum('bd,bhd->bh', u, rest.reshape(hard.shape + (-1,)))        # [B, h]
  if cfg.loss == 'softmax':
    lq = consts['log_q'] if cfg.log_q else None
    extra, e_mask, e_lq = [], [], []
    if neg is not None:                                     # catalogue columns [M]
      extra.append(u @ n_vec.T / tv)
      e_mask.append(neg[None, :] != pos[:, None])
      e_lq.append(jnp.broadcast_to(lq[neg], (b, neg.shape[0])) if lq is not None else None)
    if hard is not None:
      extra.append(h_sim / tv)
      e_mask.append(h_mask)
      # A kept hard slot is one more expected occurrence of its item in this row's candidates.
      e_lq.append(jnp.log(jnp.exp(lq[hard]) + cfg.hard_negative_rate) if lq is not None
                  else None)
    cat_args = {}
    if extra:
      cat_args = dict(extra_logit=jnp.concatenate(extra, 1),
                      extra_mask=jnp.concatenate(e_mask, 1),
                      extra_log_q=jnp.concatenate(e_lq, 1) if lq is not None else None)
    return L.in_batch_softmax(u @ v.T / tv, pos, None if lq is None else lq[pos], **cat_args)
  n_sim = jnp.einsum('bd,bnd->bn', u, n_vec)
  n_mask = neg != pos[:, None]
  if hard is not None:
    n_sim, n_mask = jnp.concatenate([n_sim, h_sim], 1), jnp.concatenate([n_mask, h_mask], 1)
  p_sim = jnp.sum(u * v, -1)
  if cfg.loss == 'bce':
    return L.pointwise_bce(p_sim / tv, n_sim / tv, n_mask)
  if cfg.loss == 'hinge':
    return L.triplet_hinge(p_sim, n_sim, n_mask, cfg.margin)
  return L.triplet_log(p_sim, n_sim, n_mask, cfg.triplet_scale)


def _step(params, opt_state, batch, *, tx, **kw):
  loss, grads = jax.value_and_grad(loss_fn)(params, batch, **kw)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


class _RunData:
  """One run's host-side data stream: the rows of each step (epoch-wise permutations from
  (seed, epoch), sorted) and its negatives (a generator seeded with (seed, 1))."""

  def __init__(self, seed: int, n: int, batch_size: int):
    self.seed, self.n, self.batch_size = seed, n, batch_size
    self.epoch, self.perm = -1, None
    self.rng = np.random.default_rng([seed, 1])

  def rows(self, step: int) -> np.ndarray:
    epoch, pos = divmod(step, self.n // self.batch_size)
    if epoch != self.epoch:
      self.epoch, self.perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
    return np.sort(self.perm[pos * self.batch_size:(pos + 1) * self.batch_size])


def train(examples: dict, catalog: dict | None, cfg: TwoTowerConfig,
          seeds: Sequence[int] = (0, 1, 2), compiler_options: dict | None = None
          ) -> TwoTowerResult:
  """Trains one two-tower model per seed, all seeds in one compiled step. See the module
  docstring for the inputs; returns TwoTowerResult (params with a leading [S] axis).
  compiler_options: XLA options of the jitted init and step (tests pass
  {'xla_backend_optimization_level': 0}: their runs are compile-bound)."""
  t0 = time.perf_counter()
  seeds = tuple(int(s) for s in seeds)
  if not seeds:
    raise ValueError('train(seeds=()) needs at least one seed')
  cat = _catalog(examples, catalog)
  spec = spec_of(examples, catalog)
  model = make_model(cfg, spec)
  keys = list(_KEYS) + (['hard_item'] if 'hard_item' in examples else [])
  data = {k: np.asarray(examples[k], np.int32) for k in keys}
  n = len(data['item_id'])
  if n < cfg.batch_size:
    raise ValueError(f'{n} training examples, fewer than TwoTowerConfig.batch_size='
                     f'{cfg.batch_size}')
  consts = constants(cat, cfg)
  sampler = NEG.CatalogueSampler(cat['item_count'], cfg.negative_power)
  tx = optax.adam(cfg.learning_rate)
  sample = model_batch(*(data[k][:2] for k in _KEYS))
  keys = jnp.stack([jax.random.key(s) for s in seeds])
  jit = functools.partial(jax.jit, compiler_options=compiler_options)
  params = jit(jax.vmap(lambda k: model.init(k, sample)['params']))(keys)
  opt_state = jit(jax.vmap(tx.init))(params)
  one = functools.partial(_step, tx=tx, model=model, cfg=cfg, consts=consts)
  # Donated: the [S] params / opt-state are updated in place, step after step.
  step = jit(jax.vmap(one), donate_argnums=(0, 1))
  runs = [_RunData(s, n, cfg.batch_size) for s in seeds]
  losses = []
  for i in range(cfg.num_steps):
    per_run = []
    for r in runs:
      rows = r.rows(i)
      per_run.append(draw_negatives(r.rng, {k: v[rows] for k, v in data.items()}, cfg, sampler))
    batch = {k: np.stack([b[k] for b in per_run]) for k in per_run[0]}           # [S, B, ...]
    params, opt_state, loss = step(params, opt_state, batch)
    losses.append(loss)
  losses = np.stack([np.asarray(x) for x in losses])                         # [steps, S]
  if not np.isfinite(losses).all():
    bad = np.argwhere(~np.isfinite(losses))[0]
    raise FloatingPointError(f'two-tower loss not finite at step {bad[0]} (seed '
                             f'{seeds[bad[1]]}), TwoTowerConfig {cfg}')
  return TwoTowerResult(model, params, seeds, losses, cfg, time.perf_counter() - t0)

