"""TwoTowerChannel: the two-tower model as a retrieval channel (docs RETRIEVAL_API's Channel).

Item vectors of the whole catalogue are computed once at construction (the item tower depends
on the item only) and held in an index; a request computes the user vector from its history
and takes the top-k of the similarities, never item 0 and, by default, never an item of the
user's own history. The index is retrieval/index.py's `ItemIndex` (exact jax.lax.top_k over the
matmul, or jax.lax.approx_max_k with method='approx'). `channels(workdir, ds)` reads each run's
channel back from a trained workdir (tasks/two_tower.py on the training loop).
"""
from __future__ import annotations

import functools

import jax
import numpy as np

from seqrec_jax import checkpoint, models
from seqrec_jax.models.two_tower import TwoTower
from seqrec_jax.retrieval.index import ItemIndex


def model_batch(user_id, hist_item, hist_cate, item_id, cate_id) -> dict:
  """RETRIEVAL_API arrays -> the batch contract's keys (hist_mask = hist_item != 0)."""
  return {'user_id': user_id, 'hist_items': hist_item, 'hist_cates': hist_cate,
          'hist_mask': hist_item != 0, 'target_item': item_id, 'target_cate': cate_id}


# Module-level and keyed on the (hashable) model: channels of several seeds share the programs.
@functools.partial(jax.jit, static_argnums=0)
def _item_vectors(model: TwoTower, params, ids, cates, feats):
  return model.apply({'params': params}, ids, cates, feats, method=TwoTower.item_vectors)


@functools.partial(jax.jit, static_argnums=0)
def _user_vectors(model: TwoTower, params, batch):
  return model.apply({'params': params}, batch, method=TwoTower.user_vectors)


class TwoTowerChannel:
  """model + one run's params + cate_of_item [I] -> a Channel.

  method: 'exact' | 'approx' (ItemIndex's). Scores are the similarity / temperature (cosine or
  dot as the model was trained). user_id: read when the model has a user embedding (use_user);
  None then reads the OOV row 0. item_feats: every item's item-side columns {'sparse':
  [I, F_item], 'dense': [I, D_item]} when the model's DataSpec declares any (FeatureSpec.side,
  DataSpec.dense_sides). A request is a history (and user id) only, so a spec with user-side
  sparse / dense columns is refused here; context-side ones the model never reads.
  """

  def __init__(self, model: TwoTower, params, cate_of_item, *, name: str = 'two_tower',
               method: str = 'exact', chunk: int = 2048, item_feats=None):
    spec = model.spec
    if spec.sparse_columns('user') or spec.dense_columns('user'):
      raise ValueError(
          f'{name}: the model reads user-side sparse fields '
          f'{[spec.sparse[j].name for j in spec.sparse_columns("user")]} / dense columns '
          f'{list(spec.dense_columns("user"))}; TwoTowerChannel requests carry a history only')
    self.name, self.model, self.params, self.chunk = name, model, params, chunk
    self.cate_of_item = np.asarray(cate_of_item, np.int32)
    ids = np.arange(len(self.cate_of_item), dtype=np.int32)
    self.item_vectors = np.asarray(
        _item_vectors(model, params, ids, self.cate_of_item, item_feats)) / model.temperature
    self.index = ItemIndex(self.item_vectors, method=method)

  def user_vectors(self, hist_item, user_id=None) -> np.ndarray:
    """hist_item [U, L] (right-aligned, 0-padded) -> u [U, D]."""
    hist_item = np.asarray(hist_item, np.int32)
    if user_id is None:
      user_id = np.zeros(len(hist_item), np.int32)
    zeros = np.zeros(len(hist_item), np.int32)
    b = model_batch(np.asarray(user_id, np.int32), hist_item, self.cate_of_item[hist_item],
                    zeros, zeros)
    return np.asarray(_user_vectors(self.model, self.params, b))

  def retrieve(self, hist_item, k: int, *, user_id=None, exclude_history: bool = True):
    """hist_item [U, L] -> (ids [U, k] int32, scores [U, k] float32), best first."""
    hist_item = np.asarray(hist_item, np.int32)
    if not 0 < k < len(self.cate_of_item):
      raise ValueError(f'{self.name}: k={k} must be in [1, {len(self.cate_of_item) - 1}]')
    out_ids, out_scores = [], []
    for lo in range(0, len(hist_item), self.chunk):
      h = hist_item[lo:lo + self.chunk]
      uid = None if user_id is None else np.asarray(user_id)[lo:lo + self.chunk]
      u = self.user_vectors(h, uid)
      ids, scores = self.index.top_k(u, k, exclude=h if exclude_history else None)
      out_ids.append(ids)
      out_scores.append(scores)
    return np.concatenate(out_ids), np.concatenate(out_scores)


def channels(workdir: str, ds, **kwargs) -> list[TwoTowerChannel]:
  """Each run's best-valid TwoTowerChannel of a two-tower workdir (train.train_and_evaluate
  with configs/two_tower.py; checkpoint.load_best), in run order. ds: the Dataset it trained
  on (its spec, and info['cate_of_item']: data/retrieval.next_item_dataset); kwargs:
  TwoTowerChannel's (method, chunk, name)."""
  best = checkpoint.load_best(workdir)
  model = models.build_model(best.model_config, ds.spec)
  return [TwoTowerChannel(model, v['params'], ds.info['cate_of_item'], **kwargs)
          for v in best.variables]
