"""TFDS plumbing shared by the real datasets: one `GeneratorBasedBuilder` base that writes
batch-contract rows to array_record, and a reader that serves them through the `Split`
protocol without TensorFlow.

* Build: a dataset module ("recipe": movielens, amazon, census, criteo) turns raw files into
  chunks of batch-contract arrays; `ArrayBuilder` validates every chunk (ids against the
  vocabularies) and writes one TFDS example per row. Every field is a `tfds.features.Tensor`
  with `Encoding.BYTES` (exact dtype, no int64 upcast). The DataSpec, the protocol info and
  per-split statistics go to the dataset's `metadata.json`. The training split's id counts n_j
  (data/id_counts.py, for model.mba_lambda) are counted while it is written and stored beside
  it (`id_counts.COUNTS_FILE`, listed in metadata.json's `id_counts`); `load` reads them back,
  and a cache written before they were stored gets them counted from its train split instead.
* Cache: `<data_dir>/tfds/<builder>/<tag>_<hash>/<version>/`, where the hash covers the
  recipe's config sub-block, the raw files' (path, size, mtime) and the builder VERSION, so a
  changed config, file or version builds a new directory and an unchanged one is reused. TFDS
  writes into an `incomplete.*` sibling and renames it only when every split is written, and
  `is_prepared()` requires the final `dataset_info.json`, so an interrupted build is never
  mistaken for a finished one (it is rebuilt). A file lock serialises concurrent builders.
* Read: `builder.as_data_source(split)` (the `tfds.data_source` reader: array_record random
  access). TFDS's per-example numpy decoding costs ~0.1-0.2 ms/row, so `TfdsSplit` asks for
  the raw records and decodes a whole batch with one `np.frombuffer` per field (equality with
  TFDS's own decoding is tested). Splits that fit `data.max_memory_mb` are read once into
  memory (`data.in_memory='auto'`): a random batch from memory costs microseconds instead of
  ~30-60 us/row from disk (measured in docs/datasets.md), which would otherwise be a visible
  fraction of a CPU training step.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import time
from typing import Any, Mapping

from absl import logging
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from seqrec_jax.data import id_counts
from seqrec_jax.data.features import DataError, DataSpec, FeatureSpec, Task, validate_arrays
from seqrec_jax.data.common import Prepared  # pylint: disable=unused-import (re-export)
from seqrec_jax.data.pipeline import ArraySplit, Dataset

SPLITS = ('train', 'valid', 'test')


class _QuietTfds:
  """Drops two TFDS warnings that are expected here (custom configs; probing a new dir)."""

  def filter(self, record) -> bool:
    msg = record.getMessage()
    return not ('Using custom data configuration' in msg or 'has no dataset_info.json' in msg)


logging.get_absl_logger().addFilter(_QuietTfds())
Fields = Mapping[str, tuple[tuple[int, ...], Any]]   # name -> (per-row shape, numpy dtype)


def default_data_dir() -> str:
  return os.environ.get('SEQREC_DATA_DIR') or os.path.join(
      os.path.expanduser('~'), '.cache', 'seqrec_jax')


def spec_to_json(spec: DataSpec) -> dict[str, Any]:
  return dataclasses.asdict(spec)


def spec_from_json(d: Mapping[str, Any]) -> DataSpec:
  d = dict(d)
  d['sparse'] = tuple(FeatureSpec(**f) for f in d['sparse'])
  d['tasks'] = tuple(Task(**t) for t in d['tasks'])
  return DataSpec(**d)


def jsonable(x):
  if isinstance(x, Mapping):
    return {str(k): jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, np.generic):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  return x


def row_bytes(fields: Fields) -> int:
  return int(sum(np.prod(s, dtype=np.int64) * np.dtype(t).itemsize for s, t in fields.values()))


class SplitStats:
  """Rows, users, positive rate (per task) and history-length distribution of a split."""

  def __init__(self, max_len: int):
    self.rows, self.users, self.pos = 0, set(), None
    self.hist = np.zeros(max_len + 1, np.int64)

  def update(self, c: Mapping[str, np.ndarray]):
    self.rows += len(c['user_id'])
    self.users.update(np.unique(c['user_id']).tolist())
    lab = np.asarray(c['labels'] if 'labels' in c else c['label'][:, None], np.float64)
    self.pos = lab.sum(0) if self.pos is None else self.pos + lab.sum(0)
    if 'hist_mask' in c:
      self.hist += np.bincount(c['hist_mask'].sum(1), minlength=len(self.hist))

  def result(self, task_names) -> dict[str, Any]:
    out = {'rows': self.rows, 'users': len(self.users),
           'pos_rate': {t: float(p / max(self.rows, 1)) for t, p in zip(task_names, self.pos)}}
    if len(self.hist) > 1 and self.rows:
      lens = np.arange(len(self.hist))
      cdf = np.cumsum(self.hist) / self.hist.sum()
      q = lambda p: int(np.searchsorted(cdf, p))   # pylint: disable=unnecessary-lambda-assignment
      out['hist_len'] = {'mean': float((lens * self.hist).sum() / self.hist.sum()),
                         'p10': q(0.1), 'p50': q(0.5), 'p90': q(0.9),
                         'max': int(lens[self.hist > 0].max()),
                         'empty_frac': float(self.hist[0] / self.rows),
                         'at_max_len_frac': float(self.hist[-1] / self.rows)}
    return out


class ArrayBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Writes a recipe's batch-contract rows; subclasses set `name`, VERSION and `recipe`.

  `recipe` is a module with `fields(cfg) -> Fields` and `prepare(cfg) -> Prepared`.
  """
  VERSION = tfds.core.Version('1.0.0')
  recipe: Any = None

  def __init__(self, *, cfg: Mapping[str, Any], **kwargs):
    self._cfg = dict(cfg)
    self._prepared: Prepared | None = None
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    enc = tfds.features.Encoding.BYTES
    feats = {k: tfds.features.Tensor(shape=s, dtype=t, encoding=enc)
             for k, (s, t) in self.recipe.fields(self._cfg).items()}
    return tfds.core.DatasetInfo(
        builder=self, description=(self.recipe.__doc__ or '').strip(),
        features=tfds.features.FeaturesDict(feats), metadata=tfds.core.MetadataDict(),
        disable_shuffling=True, citation=getattr(self.recipe, 'CITATION', ''),
        homepage=getattr(self.recipe, 'HOMEPAGE', None))

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing is downloaded: raw files come from the user or the package
    self._prepared = p = self.recipe.prepare(self._cfg)
    md = self.info.metadata
    md['spec'] = spec_to_json(p.spec)
    md['config'] = jsonable(self._cfg)
    md['stats'] = {}
    md['info'] = jsonable(p.info)
    return {name: self._generate_examples(name) for name in p.splits}

  def _generate_examples(self, split: str):
    p = self._prepared
    keys = list(self.recipe.fields(self._cfg))
    stats = SplitStats(p.spec.max_len)
    counts = id_counts.CountAccumulator(p.spec) if split == 'train' else None
    i = 0
    for chunk in p.splits[split]():
      if set(chunk) != set(keys):
        raise DataError(f'{self.name}/{split}: recipe produced fields {sorted(chunk)}, '
                        f'expected {sorted(keys)}')
      validate_arrays(chunk, p.spec, f'{self.name}/{split} (while building)')
      stats.update(chunk)
      if counts is not None:
        counts.update(chunk)
      cols = [chunk[k] for k in keys]
      for r in range(len(cols[0])):
        yield i, {k: c[r] for k, c in zip(keys, cols)}
        i += 1
    if i == 0:
      raise DataError(f'{self.name}: split {split!r} is empty with config {self._cfg}; '
                      'the input is too small for this protocol')
    self.info.metadata['stats'][split] = stats.result([t.name for t in p.spec.tasks])
    if counts is not None:   # data_dir is TFDS's incomplete.* build dir here: renamed with it
      id_counts.save_counts(os.path.join(self.data_dir, id_counts.COUNTS_FILE), counts.total)
      self.info.metadata['id_counts'] = {'file': id_counts.COUNTS_FILE, 'split': 'train',
                                         'tables': {k: len(v) for k, v in counts.total.items()}}
    self.info.metadata['info'] = jsonable(p.info)   # generators may have added counts


def decode_records(records, fields: Fields) -> dict[str, np.ndarray]:
  """Raw TFDS records (serialized tf.train.Example, Encoding.BYTES features) -> stacked arrays."""
  parts: dict[str, list[bytes]] = {k: [] for k in fields}
  for r in records:   # one pass over each example's feature map (faster than keyed lookups)
    for k, v in tf_example_pb2.Example.FromString(r).features.feature.items():
      parts[k].append(v.bytes_list.value[0])
  out = {}
  for k, (shape, dtype) in fields.items():
    if len(parts[k]) != len(records):
      raise DataError(f'stored records lack field {k!r}: the cache was written by another '
                      'layout; delete it or bump the builder VERSION')
    out[k] = np.frombuffer(b''.join(parts[k]), dtype=dtype).reshape(
        (len(records),) + tuple(shape))
  return out


class TfdsSplit:
  """A split served from the array_record files (the `Split` protocol, batched).

  Every batch is validated against the spec (a few numpy comparisons), because a split too
  large for memory is never checked as a whole.
  """

  def __init__(self, builder, split: str, fields: Fields, spec: DataSpec,
               allow_empty_history: bool = True):
    self.source = builder.as_data_source(
        split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    self.fields, self.spec, self.allow_empty = dict(fields), spec, allow_empty_history
    self.where = f'{builder.name}/{split} ({builder.data_dir})'

  def __len__(self) -> int:
    return len(self.source)

  def __getitems__(self, indices) -> dict[str, np.ndarray]:
    out = decode_records(self.source.__getitems__([int(i) for i in indices]), self.fields)
    validate_arrays(out, self.spec, self.where, self.allow_empty)
    return out

  def read_all(self, chunk: int = 1 << 15) -> dict[str, np.ndarray]:
    n = len(self)
    parts = [decode_records(self.source.__getitems__(list(range(s, min(n, s + chunk)))),
                            self.fields) for s in range(0, n, chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in self.fields}


def _tag(text: str) -> str:
  return re.sub(r'[^a-z0-9]+', '_', text.lower()).strip('_')[:40] or 'default'


@contextlib.contextmanager
def _build_lock(path: str):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def make_builder(builder_cls, cfg: Mapping[str, Any], data_dir: str = ''):
  """The builder for this config: its config name is '<tag>_<hash of what the data depends on>'."""
  recipe = builder_cls.recipe
  cfg = jsonable(dict(cfg))
  key = {'config': cfg, 'files': recipe.source_fingerprint(cfg),
         'version': str(builder_cls.VERSION)}
  digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
  bcfg = tfds.core.BuilderConfig(name=f'{_tag(recipe.tag(cfg))}_{digest}',
                                 description=json.dumps(key, sort_keys=True))
  root = os.path.join(data_dir or default_data_dir(), 'tfds')
  return builder_cls(cfg=cfg, config=bcfg, data_dir=root, file_format='array_record')


def prepare(builder) -> bool:
  """Builds the dataset unless a finished copy exists; returns True if it built."""
  if builder.is_prepared():
    return False
  lock = os.path.join(os.path.dirname(os.fspath(builder.data_path)), '.build.lock')
  with _build_lock(lock):
    if builder.is_prepared():      # another process finished it while we waited
      return False
    t0 = time.time()
    logging.info('building %s into %s (once per config)', builder.name, builder.data_path)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        compute_stats=tfds.download.ComputeStatsMode.SKIP, try_download_gcs=False))
    logging.info('built %s in %.1fs', builder.name, time.time() - t0)
  return True


def load(builder_cls, data_cfg, cfg: Mapping[str, Any], name: str) -> Dataset:
  """Builds (if needed) and opens a dataset; splits fitting data.max_memory_mb go to memory."""
  builder = make_builder(builder_cls, cfg, data_cfg.get('data_dir', ''))
  t0 = time.time()
  built = prepare(builder)
  md = builder.info.metadata
  spec = spec_from_json(md['spec'])
  fields = builder_cls.recipe.fields(builder._cfg)  # pylint: disable=protected-access
  mode = str(data_cfg.get('in_memory', 'auto')).lower()
  budget = float(data_cfg.get('max_memory_mb', 2048)) * 2**20
  allow_empty = data_cfg.get('allow_empty_history', True)
  splits, info = {}, {'data_path': os.fspath(builder.data_path), 'built_now': built}
  for split in SPLITS:
    src = TfdsSplit(builder, split, fields, spec, allow_empty)
    size = len(src) * row_bytes(fields)
    if mode in ('always', 'true') or (mode == 'auto' and size <= budget):
      t1 = time.time()
      splits[split] = ArraySplit(src.read_all())
      info[f'{split}/read_seconds'] = round(time.time() - t1, 3)
      budget -= size
    elif mode in ('auto', 'never', 'false'):
      splits[split] = src
    else:
      raise ValueError(f"config.data.in_memory={mode!r}: expected 'auto', 'always' or 'never'")
  info['load_seconds'] = round(time.time() - t0, 3)
  for split, st in md.get('stats', {}).items():
    for k, v in st.items():
      info[f'{split}/{k}'] = v
  info.update({f'protocol/{k}': v for k, v in md.get('info', {}).items()})
  counts = stored_id_counts(builder, spec)
  info['id_counts'] = ('stored with the dataset' if counts is not None else
                       'recounted from the train split (cache predates stored counts)')
  return Dataset(name, spec, splits, info, id_counts=counts)


def stored_id_counts(builder, spec: DataSpec) -> dict[str, np.ndarray] | None:
  """The train id counts written with the dataset; None (logged) for a cache written before
  they were stored, whose counts are then counted from its train split on first use."""
  meta = builder.info.metadata.get('id_counts')
  if meta is None:
    logging.warning('%s: no stored id counts (metadata.json predates them); MBA counts them '
                    'from the train split at first use. Delete %s to rebuild with them.',
                    builder.name, builder.data_path)
    return None
  path = os.path.join(os.fspath(builder.data_path), meta['file'])
  try:
    return id_counts.load_counts(path, spec, builder.name)
  except (OSError, ValueError) as e:
    raise DataError(f'{builder.name}: metadata.json lists id counts {path!r} but they cannot be '
                    f'used ({e}); delete {builder.data_path} to rebuild the dataset') from e
