"""Dataset registry: `load_dataset(config.data) -> Dataset` dispatches on config.data.name.

A loader is a function `(data_config) -> Dataset` registered with `@register_dataset(name)`
at import time; it reads its own sub-block (e.g. config.data.synthetic) and must validate ids
against its vocabularies (`features.validate_arrays`) before returning. Data built in-process
is passed as a value (`dataset_for`), never registered at run time.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Callable

import numpy as np

from seqrec_jax.data.features import DataError, DataSpec, FeatureSpec, Task, validate_arrays
from seqrec_jax.data.id_counts import IdCounts
from seqrec_jax.data.id_filter import filter_items, kept_items
from seqrec_jax.data.pipeline import ArraySplit, Dataset
from seqrec_jax.data.tasks import select_tasks

DATASETS: dict[str, Callable] = {}


def register_dataset(name: str):
  def deco(fn):
    DATASETS[name] = fn
    return fn
  return deco


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, cfg_json: str) -> Dataset:
  import ml_collections  # pylint: disable=g-import-not-at-top
  return DATASETS[name](ml_collections.ConfigDict(json.loads(cfg_json)))


def load_dataset(data_cfg, validate: bool = True) -> Dataset:
  """Loads (and caches in-process) the dataset named by data_cfg.name, then `prepare`s it."""
  if data_cfg.name not in DATASETS:
    raise ValueError(f'unknown dataset {data_cfg.name!r} (config.data.name); '
                     f'registered: {sorted(DATASETS)}')
  return prepare(_load_cached(data_cfg.name, data_cfg.to_json(sort_keys=True)), data_cfg,
                 validate)


def dataset_for(data_cfg, dataset: Dataset | None = None) -> Dataset:
  """config.data's dataset: `dataset`, a Dataset value prepared in-process (e.g.
  data/retrieval.py's ctr_dataset), `prepare`d as a loaded one; else load_dataset(data_cfg).
  A value's name must be config.data.name: the name is what config.json and the run's
  checkpoints record (with `fingerprint`), so a resume with other data is refused."""
  if dataset is None:
    return load_dataset(data_cfg)
  if dataset.name != data_cfg.name:
    raise ValueError(f'config.data.name={data_cfg.name!r} must be the name of the Dataset '
                     f'value given ({dataset.name!r})')
  return prepare(dataset, data_cfg)


def prepare(ds: Dataset, data_cfg, validate: bool = True) -> Dataset:
  """A loaded dataset as training reads it: every in-memory split validated (ids and NaNs;
  stored splits (data/store.py) were validated column by column when opened), item ids
  filtered to config.data.item_top_k with training id counts on its spec, and
  config.data.tasks selected (() = all)."""
  if validate:
    for split_name, split in ds.splits.items():
      if isinstance(split, ArraySplit):
        validate_arrays(split.all(), ds.spec, f'{ds.name}/{split_name}',
                        allow_empty_history=data_cfg.allow_empty_history)
  ds = _with_id_counts(ds, int(data_cfg.item_top_k))
  return select_tasks(ds, tuple(data_cfg.tasks))


def fingerprint(ds: Dataset) -> str:
  """12 hex digits over a dataset's name, spec (without id counts) and split sizes: what a
  resume checks besides config.json (a Dataset value is not in it)."""
  spec = {f.name: getattr(ds.spec, f.name) for f in dataclasses.fields(ds.spec)
          if f.name != 'id_counts'}
  sizes = {k: len(v) for k, v in sorted(ds.splits.items())}
  return hashlib.sha1(_repr((ds.name, sorted(spec.items()), sizes)).encode()).hexdigest()[:12]


def _repr(x) -> str:
  """repr(x), except that a dataclass field added later (metadata 'since') is left out while
  it holds its default: a field added with the old behaviour as its default keeps every
  recorded fingerprint (and so every workdir) valid."""
  if dataclasses.is_dataclass(x) and not isinstance(x, type):
    parts = [f'{f.name}={_repr(getattr(x, f.name))}' for f in dataclasses.fields(x)
             if f.repr and not ('since' in f.metadata and getattr(x, f.name) == f.default)]
    return f'{type(x).__qualname__}({", ".join(parts)})'
  if type(x) is tuple:
    return '(' + ', '.join(map(_repr, x)) + (',' if len(x) == 1 else '') + ')'
  if type(x) is list:
    return '[' + ', '.join(map(_repr, x)) + ']'
  if type(x) is dict:
    return '{' + ', '.join(f'{_repr(k)}: {_repr(v)}' for k, v in x.items()) + '}'
  return repr(x)


_DERIVED: dict = {}


def _with_id_counts(ds: Dataset, item_top_k: int) -> Dataset:
  """The loaded dataset, item ids filtered to the training top k (data/id_filter.py; 0 = all,
  -1 = none), with training id counts on its spec (data/id_counts.py): the ones stored with
  the dataset (a filtered id's count moves to OOV 0, which holds none), else counted from the
  (filtered) train split at first use. Derived once per loaded dataset and top_k."""
  key = (id(ds.splits['train']), item_top_k)
  hit = _DERIVED.get(key)
  if hit is None or hit[0] is not ds.splits['train']:
    stored = ds.id_counts
    keep = kept_items(stored['item'], item_top_k) if stored is not None and item_top_k else None
    out = filter_items(ds, item_top_k, keep=keep)
    if stored is None:
      counts = IdCounts(out.splits['train'], out.spec)
    else:
      counts = IdCounts.from_counts(
          dict(stored, **({} if keep is None else {'item': np.where(keep, stored['item'], 0)})),
          source='stored with the dataset')
    spec = dataclasses.replace(out.spec, id_counts=counts)
    if len(_DERIVED) >= 8:
      _DERIVED.clear()
    hit = _DERIVED[key] = (ds.splits['train'], dataclasses.replace(out, spec=spec))
  return hit[1]


@register_dataset('synthetic')
def _synthetic(data_cfg):
  from seqrec_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  return synthetic.load(data_cfg.synthetic)


@register_dataset('synthetic_intensity')
def _synthetic_intensity(data_cfg):
  """The planted-interest generator (config.data.synthetic) with the click on the summed
  relevance of the history (data/synthetic.py, relevance 'sum')."""
  from seqrec_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  return synthetic.load(data_cfg.synthetic, relevance='sum')


@register_dataset('mmoe_synthetic')
def _mmoe_synthetic(data_cfg):
  from seqrec_jax.data import mmoe_synthetic  # pylint: disable=g-import-not-at-top
  return mmoe_synthetic.load(data_cfg.mmoe_synthetic)


@register_dataset('video')
def _video(data_cfg):
  from seqrec_jax.data import video  # pylint: disable=g-import-not-at-top
  return video.load(data_cfg.video)


def _tfds_dataset(name: str, data_cfg) -> Dataset:
  """A real dataset prepared by its TFDS builder (data/builders.py) from config.data.<name>."""
  from seqrec_jax.data import builders, tfds_source  # pylint: disable=g-import-not-at-top
  return tfds_source.load(builders.BUILDERS[name], data_cfg, data_cfg[name].to_dict(), name)


@register_dataset('movielens')
def _movielens(data_cfg):
  return _tfds_dataset('movielens', data_cfg)


@register_dataset('amazon')
def _amazon(data_cfg):
  return _tfds_dataset('amazon', data_cfg)


@register_dataset('census')
def _census(data_cfg):
  return _tfds_dataset('census', data_cfg)


@register_dataset('criteo')
def _criteo(data_cfg):
  return _tfds_dataset('criteo', data_cfg)


@register_dataset('census_kdd')
def _census_kdd(data_cfg):
  return _tfds_dataset('census_kdd', data_cfg)


__all__ = ['DATASETS', 'ArraySplit', 'DataError', 'DataSpec', 'Dataset', 'FeatureSpec', 'Task',
           'dataset_for', 'fingerprint', 'load_dataset', 'prepare', 'register_dataset',
           'validate_arrays']
