"""TFDS as the catalogue of the real datasets, column files as their storage.

* Build: a dataset module ("recipe": movielens, amazon, census, census_kdd, criteo) turns raw
  files into chunks of stored rows (vectorised, data/common.py); `ColumnBuilder`, a
  `tfds.core.DatasetBuilder`, validates every chunk (ids against the vocabularies) and appends
  it to one fixed-width column file per field (data/store.py: `<split>/<field>.npy`, plus the
  sequence datasets' behaviour sequence stored once). The DataSpec, the protocol info and
  per-split statistics go to the dataset's `metadata.json`; the training split's id counts n_j
  (data/id_counts.py, for model.mba_lambda) are counted while it is written and stored beside
  it (`id_counts.COUNTS_FILE`).
* What TFDS still does (the catalogue, at no cost in speed): versioning (`VERSION`,
  `RELEASE_NOTES`), `dataset_info.json` with the split sizes and features, the data_dir layout
  `<data_dir>/tfds/<builder>/<tag>_<hash>/<version>/`, writing into an `incomplete.*` sibling
  renamed only when every split is written (`is_prepared()` requires the final
  `dataset_info.json`, so an interrupted build is rebuilt, never read), and `as_data_source`.
  What it no longer does: TFDS's `GeneratorBasedBuilder` serialises one tf.train.Example per
  row into array_record (~2.5k rows/s here) and its data source reads ~25k random rows/s;
  column files are written per chunk and read by one gather per column (docs/datasets.md).
* Cache key: the recipe's config sub-block, the raw files' fingerprints and the builder
  VERSION, so a changed config, file or version builds a new directory. A file lock
  serialises concurrent builders.
* Read: `load` memory-maps each split's columns, or reads them whole when they fit
  `data.max_memory_mb` (`data.in_memory='auto'`); either way batches come from the same
  `store.ColumnSplit`, so disk and memory give identical batches. Every split is validated once
  at load (vectorised, in chunks; no per-batch checks).
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

from seqrec_jax.data import id_counts, store
from seqrec_jax.data.features import DataError, DataSpec, FeatureSpec, Task
from seqrec_jax.data.common import BEHAVIOUR_FIELDS, Prepared
from seqrec_jax.data.pipeline import Dataset

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
    if 'hist_end' in c and len(self.hist) > 1:
      n = np.minimum(c['hist_end'] - c['hist_start'], len(self.hist) - 1)
      self.hist += np.bincount(n, minlength=len(self.hist))

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


class ColumnBuilder(tfds.core.DatasetBuilder, skip_registration=True):
  """Writes a recipe's rows as column files; subclasses set `name`, VERSION and `recipe`.

  `recipe` is a module with `fields(cfg) -> Fields` (the stored row layout) and
  `prepare(cfg) -> Prepared`.
  """
  VERSION = tfds.core.Version('2.0.0')
  recipe: Any = None

  def __init__(self, *, cfg: Mapping[str, Any], **kwargs):
    self._cfg = dict(cfg)
    super().__init__(**kwargs)

  @property
  def fields(self) -> Fields:
    return self.recipe.fields(self._cfg)

  def _info(self) -> tfds.core.DatasetInfo:
    feats = {k: tfds.features.Tensor(shape=s, dtype=t) for k, (s, t) in self.fields.items()}
    return tfds.core.DatasetInfo(
        builder=self, description=(self.recipe.__doc__ or '').strip(),
        features=tfds.features.FeaturesDict(feats), metadata=tfds.core.MetadataDict(),
        disable_shuffling=True, citation=getattr(self.recipe, 'CITATION', ''),
        homepage=getattr(self.recipe, 'HOMEPAGE', None))

  def _download_and_prepare(self, dl_manager, download_config=None):
    del dl_manager, download_config   # nothing is downloaded: raw files come from the user
    p = self.recipe.prepare(self._cfg)
    root, md = os.fspath(self.data_dir), self.info.metadata   # data_dir: the incomplete.* dir
    md.update(spec=spec_to_json(p.spec), config=jsonable(self._cfg), stats={})
    m = None
    if p.behaviours is not None:
      m = store.validate_behaviours(p.behaviours, p.spec, f'{self.name}/behaviours')
      store.write_columns(os.path.join(root, store.BEHAVIOURS), BEHAVIOUR_FIELDS,
                          [dict(p.behaviours)])
      md['behaviours'] = {'rows': m, 'fields': sorted(p.behaviours)}
    infos = []
    for split, gen in p.splits.items():
      rows = store.write_columns(os.path.join(root, split), self.fields,
                                 self._checked(split, gen(), p, m))
      if rows == 0:
        raise DataError(f'{self.name}: split {split!r} is empty with config {self._cfg}; '
                        'the input is too small for this protocol')
      infos.append(tfds.core.SplitInfo(
          name=split, shard_lengths=[rows],
          num_bytes=store.nbytes(os.path.join(root, split), self.fields)))
    self.info.set_splits(tfds.core.SplitDict(infos))
    md['info'] = jsonable(p.info)   # generators may have added counts

  def _checked(self, split: str, chunks, p: Prepared, m: int | None):
    """Validates each chunk, and counts its statistics (and train id counts) as it passes."""
    keys = set(self.fields)
    stats = SplitStats(p.spec.max_len)
    counts = id_counts.CountAccumulator(p.spec) if split == 'train' else None
    for chunk in chunks:
      if set(chunk) != keys:
        raise DataError(f'{self.name}/{split}: recipe produced fields {sorted(chunk)}, '
                        f'expected {sorted(keys)}')
      store.validate_rows(chunk, m, p.spec, f'{self.name}/{split} (while building)')
      stats.update(chunk)
      if counts is not None:
        _count(counts, chunk, p)
      yield chunk
    self.info.metadata['stats'][split] = stats.result([t.name for t in p.spec.tasks])
    if counts is not None:   # data_dir is the incomplete.* build dir here: renamed with it
      id_counts.save_counts(os.path.join(self.data_dir, id_counts.COUNTS_FILE), counts.total)
      self.info.metadata['id_counts'] = {'file': id_counts.COUNTS_FILE, 'split': 'train',
                                         'tables': {k: len(v) for k, v in counts.total.items()}}

  def _as_dataset(self, *args, **kwargs):
    raise NotImplementedError(f'{self.name}: tf.data is not used (TensorFlow is not '
                              'installed); use as_data_source(split)')

  def as_data_source(self, split: str, *args, in_memory: bool = False, max_len: int = -1,
                     **kwargs) -> store.ColumnSplit:
    """The split as a random-access `store.ColumnSplit` (memory-mapped unless in_memory)."""
    del args, kwargs
    return open_split(self, split, in_memory, _behaviours(self, in_memory), max_len)


def _count(counts, chunk, p: Prepared, sub: int = 1 << 16) -> None:
  """Train id counts of stored rows: windows are cut (in sub-chunks) to count history ids."""
  if p.behaviours is None:
    counts.update(chunk)
    return
  for s in range(0, len(chunk['user_id']), sub):
    c = {k: v[s:s + sub] for k, v in chunk.items()}
    c.update(store.cut_windows(c.pop('hist_start'), c.pop('hist_end'), p.behaviours,
                               p.spec.max_len))
    counts.update(c)


def _behaviours(builder, in_memory: bool) -> dict[str, np.ndarray] | None:
  meta = builder.info.metadata.get('behaviours')
  if meta is None:
    return None
  return store.read_columns(os.path.join(os.fspath(builder.data_path), store.BEHAVIOURS),
                            meta['fields'], in_memory)


def open_split(builder, split: str, in_memory: bool, behaviours, max_len: int = -1
               ) -> store.ColumnSplit:
  spec = spec_from_json(builder.info.metadata['spec'])
  cols = store.read_columns(os.path.join(os.fspath(builder.data_path), split),
                            builder.fields, in_memory)
  return store.ColumnSplit(cols, behaviours, spec.max_len if max_len < 0 else max_len,
                           where=f'{builder.name}/{split} ({builder.data_path})')


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
  return builder_cls(cfg=cfg, config=bcfg, data_dir=root)


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
  """Builds (if needed) and opens a dataset: memory-mapped columns, read whole into memory
  when they fit data.max_memory_mb (`data.in_memory`: auto | always | never)."""
  builder = make_builder(builder_cls, cfg, data_cfg.data_dir)
  t0 = time.time()
  built = prepare(builder)
  md = builder.info.metadata
  spec = spec_from_json(md['spec'])
  mode = str(data_cfg.in_memory).lower()
  if mode not in ('auto', 'always', 'true', 'never', 'false'):
    raise ValueError(f"config.data.in_memory={mode!r}: expected 'auto', 'always' or 'never'")
  budget = float(data_cfg.max_memory_mb) * 2**20
  root = os.fspath(builder.data_path)
  beh_meta = md.get('behaviours')
  sizes = {s: store.nbytes(os.path.join(root, s), builder.fields) for s in SPLITS}
  if beh_meta is not None:
    sizes[store.BEHAVIOURS] = store.nbytes(os.path.join(root, store.BEHAVIOURS),
                                           beh_meta['fields'])
  in_mem = (mode in ('always', 'true') or
            (mode == 'auto' and sum(sizes.values()) <= budget))
  info = {'data_path': root, 'built_now': built, 'in_memory': in_mem,
          'stored_mb': round(sum(sizes.values()) / 2**20, 1)}
  t1 = time.time()
  beh = _behaviours(builder, in_mem)
  allow_empty = data_cfg.allow_empty_history
  splits = {}
  for split in SPLITS:
    splits[split] = open_split(builder, split, in_mem, beh)
    splits[split].validate(spec, allow_empty)
  info['read_seconds'] = round(time.time() - t1, 3)
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
