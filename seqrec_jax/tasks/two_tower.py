"""Two-tower retrieval on the training loop: a listwise (or sampled pointwise / pairwise) loss
over the towers' vectors, recall@K / NDCG@K over the whole catalogue on valid and test.

  ds = data.retrieval.next_item_dataset(split, max_len=50)      # name 'next_item'
  train.train_and_evaluate(configs.two_tower.get_config(), workdir, ds)
  channels = retrieval.two_tower.channels(workdir, ds)          # each run's TwoTowerChannel

Data: a Dataset whose rows follow the batch contract (train: one positive next item per row,
target_item; valid / test: each evaluated user's held-out target) and whose info holds the
catalogue: cate_of_item [I] and item_count [I] (train occurrences: the negatives' sampler and
log Q). Train rows may carry hard_item [N, h] (0 = none).
Model: config.model.name='two_tower' (models/two_tower.py, keys model.two_tower.*).
Loss (config.train.two_tower, retrieval/losses.two_tower_loss): 'softmax' = in-batch softmax,
log-Q corrected (log_q), plus num_catalogue shared columns from count^negative_power and the
kept hard negatives; 'bce' / 'hinge' / 'triplet_log' take num_negatives per row from the same
sampler plus the kept hard negatives (docs/retrieval.md).
Negatives are drawn on the host (`prepare_batch`, in the loop's read-ahead thread) from a
generator seeded by (run seed, step): a resumed run draws the same ones, and the compiled
step holds no PRNG code (docs/retrieval.md: ~1 s more XLA compile per program with it).
Evaluation: every catalogue item's vector once per evaluation, each query's top max(ks) by
similarity (item 0 and the query's own history never retrieved: retrieval/index.py), then
eval/<split>/recall@k and ndcg@k (retrieval/metrics.py); selection by
config.train.two_tower.select_metric on valid, higher is better.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax import models
from seqrec_jax.data.pipeline import ArraySplit
from seqrec_jax.models.two_tower import TwoTower
from seqrec_jax.retrieval import losses as L
from seqrec_jax.retrieval import metrics as RM
from seqrec_jax.retrieval import negatives as NEG
from seqrec_jax.retrieval.index import ItemIndex
from seqrec_jax.tasks import base

SELECT = re.compile(r'(recall|ndcg)@(\d+)')
_NEG_STREAM = 1     # SeedSequence spawn key of the negatives (batch order: data/pipeline.py)


def catalogue(ds) -> tuple[np.ndarray, np.ndarray]:
  """(cate_of_item [I] int32, item_count [I] int64) of a next-item Dataset (its info), checked
  against its spec."""
  where = f'dataset {ds.name!r}'
  out = []
  for key in ('cate_of_item', 'item_count'):
    if key not in ds.info:
      raise ValueError(f"the two_tower task needs {where}.info[{key!r}] [I] (the catalogue; "
                       'data/retrieval.next_item_dataset builds it)')
    a = np.asarray(ds.info[key])
    if a.shape != (ds.spec.num_items,):
      raise ValueError(f'{where}.info[{key!r}] has shape {a.shape}; the spec has '
                       f'num_items={ds.spec.num_items}: one entry per item id')
    out.append(a)
  cate = out[0].astype(np.int32)
  if cate.min() < 0 or cate.max() >= max(ds.spec.num_cates, 1):
    raise ValueError(f"{where}.info['cate_of_item'] holds categories in [{cate.min()}, "
                     f'{cate.max()}], outside the vocabulary [0, {ds.spec.num_cates})')
  return cate, out[1].astype(np.int64)


class TwoTowerTask(base.Task):
  """See the module docstring. Built by tasks.build(config, ds) (config.train.task='two_tower')."""

  name = 'two_tower'

  def __init__(self, config, ds):
    spec = ds.spec
    for side in ('item', 'user'):
      if spec.sparse_columns(side) or spec.dense_columns(side):
        raise ValueError(f'the two_tower task reads ids and histories only; dataset '
                         f'{ds.name!r} has {side}-side sparse / dense columns (not implemented: '
                         'the catalogue would need every item\'s features)')
    if config.data.pack_history:
      raise ValueError('config.data.pack_history=True: the two_tower task evaluates a catalogue '
                       'of items (no histories to pack) and its towers read padded histories; '
                       'set it False (configs/two_tower.py does)')
    self.model = models.build_model(config.model, spec)
    if not isinstance(self.model, TwoTower):
      raise ValueError(f"config.train.task='two_tower' trains config.model.name='two_tower', "
                       f'not {config.model.name!r}')
    t = config.train.two_tower
    self.cfg, self.ks = t, tuple(int(k) for k in t.ks)
    self.cate_of_item, self.item_count = catalogue(ds)
    m = SELECT.fullmatch(str(t.select_metric))
    if m is None or int(m.group(2)) not in self.ks:
      raise ValueError(f'config.train.two_tower.select_metric={t.select_metric!r}: must be '
                       f'recall@k or ndcg@k with k in config.train.two_tower.ks={self.ks}')
    if max(self.ks) >= spec.num_items:
      raise ValueError(f'config.train.two_tower.ks={self.ks}: every k must be below the '
                       f'catalogue size {spec.num_items} (item 0 is never retrieved)')
    softmax = t.loss == 'softmax'
    self.sampler = NEG.CatalogueSampler(self.item_count, t.negative_power)
    self.log_q = (jnp.asarray(NEG.log_q(self.item_count, config.data.batch_size,
                                        t.num_catalogue, t.negative_power))
                  if softmax and t.log_q else None)
    self.splits = ds.splits
    train = ds.splits['train']
    if 'hard_item' in train.__getitems__(np.arange(1)):
      hard = np.asarray(train.all()['hard_item'] if isinstance(train, ArraySplit)
                        else train.__getitems__(np.arange(len(train)))['hard_item'])
      if hard.ndim != 2 or hard.min() < 0 or hard.max() >= spec.num_items:
        raise ValueError(f'dataset {ds.name!r}: train hard_item {hard.shape} must be [N, h] '
                         f'item ids in [0, {spec.num_items})')
    ids = np.arange(spec.num_items, dtype=np.int32)
    self.catalog = ArraySplit({'item': ids, 'cate': self.cate_of_item})
    self._queries: dict[str, dict[str, np.ndarray]] = {}
    # One function object each: the Evaluator compiles each once.
    self._item_fn = lambda v, b: self.model.apply(v, b['item'], b['cate'],
                                                  method=TwoTower.item_vectors)
    self._user_fn = lambda v, b: self.model.apply(v, b, method=TwoTower.user_vectors)

  def init(self, rng, batch) -> dict[str, Any]:
    keep = ('user_id', 'hist_items', 'hist_cates', 'hist_mask', 'target_item', 'target_cate')
    variables = self.model.init(rng, {k: batch[k] for k in keep if k in batch})
    return {'params': variables['params'], 'batch_stats': {}}

  def loss(self, variables, batch, rng, hparams: Mapping[str, jax.Array]) -> base.LossOutput:
    del rng, hparams    # no dropout; nothing of the loss varies per run
    t, p = self.cfg, {'params': variables['params']}
    u = self.model.apply(p, batch, method=TwoTower.user_vectors)                 # [B, D]
    ids = L.candidate_ids(t.loss, batch)
    vecs = self.model.apply(p, ids, jnp.asarray(self.cate_of_item)[ids],
                            method=TwoTower.item_vectors)
    loss = L.two_tower_loss(t.loss, u, vecs, batch, temperature=self.model.temperature,
                            log_q=self.log_q, hard_rate=t.hard_negative_rate, margin=t.margin,
                            triplet_scale=t.triplet_scale)
    return base.LossOutput(loss, variables.get('batch_stats', {}), {})

  def prepare_batch(self, batch, *, seed: int, step: int):
    """Adds the step's negatives: cat_item [M] ('softmax' with num_catalogue) or neg_item
    [B, n] (the other losses), and hard_keep [B, h] (hard_item dropped at rate 0)."""
    t = self.cfg
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_NEG_STREAM, step)))
    out = dict(batch)
    if t.loss == 'softmax':
      if t.num_catalogue:
        out['cat_item'] = self.sampler.sample(rng, (t.num_catalogue,))
    else:
      out['neg_item'] = self.sampler.sample(rng, (len(batch['target_item']), t.num_negatives))
    if 'hard_item' in batch:
      if t.hard_negative_rate > 0:
        out['hard_keep'] = NEG.hard_mask(rng, batch['hard_item'], batch['target_item'],
                                         t.hard_negative_rate)
      else:
        del out['hard_item']
    return out

  def _query(self, split: str) -> dict[str, np.ndarray]:
    if split not in self._queries:
      s = self.splits[split]
      rows = s.__getitems__(np.arange(len(s)))
      self._queries[split] = {'target': np.asarray(rows['target_item']),
                              'hist': np.asarray(rows['hist_items'], np.int32)}
    return self._queries[split]

  def evaluate(self, ev, variables, split: str, save_to: str | None = None
               ) -> list[dict[str, float]]:
    del save_to     # retrieval lists are not saved (the channels recompute them)
    items = ev.outputs(self._item_fn, variables, self.catalog)                 # [S, I, D]
    users = ev.outputs(self._user_fn, variables, self.splits[split])           # [S, E, D]
    q, k_max = self._query(split), max(self.ks)
    out = []
    for s in range(len(items)):
      ids, _ = ItemIndex(items[s]).top_k(users[s], k_max, exclude=q['hist'])
      row = {}
      for k in self.ks:
        row[f'eval/{split}/recall@{k}'] = RM.recall_at_k(ids, q['target'], k)
        row[f'eval/{split}/ndcg@{k}'] = RM.ndcg_at_k(ids, q['target'], k)
      out.append(row)
    return out

  def selection(self) -> base.Selection:
    return base.Selection(f'eval/valid/{self.cfg.select_metric}', True)
