"""Prepare, describe and time the real datasets (`bash launch.sh data ...` runs this).

  python -m seqrec_jax.data describe --dataset=movielens,census        # builds if needed
  python -m seqrec_jax.data prepare --config=seqrec_jax/configs/din.py:movielens \
      --config.data.movielens.path=/data/ml-20m.zip
  python -m seqrec_jax.data describe --dataset=amazon --config.data.amazon.path=/data/amazon
  python -m seqrec_jax.data speed --dataset=movielens     # random batch reads, disk vs memory

`--config` (default: configs/default.py) supplies every data option; `--dataset` picks one or
more datasets (default: config.data.name). `describe` prints a markdown table (or --format=
json) from the statistics saved at build time: rows, users, item/category vocabularies,
positive rate and the history-length distribution of every split.
"""
from __future__ import annotations

import json
import os
import time

from absl import app, flags
from ml_collections import config_flags
import numpy as np

_DEFAULT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'configs', 'default.py')
_CONFIG = config_flags.DEFINE_config_file('config', _DEFAULT, 'Config file (data options).',
                                          lock_config=True)
_DATASET = flags.DEFINE_list('dataset', None, 'Datasets (default: config.data.name).')
_FORMAT = flags.DEFINE_enum('format', 'markdown', ['markdown', 'json'], 'describe output.')
_BATCHES = flags.DEFINE_list('batch_sizes', ['256', '1024', '4096'],
                              'speed: batch sizes to time.')
_REPEATS = flags.DEFINE_integer('repeats', 10, 'speed: random batches per size.')
COMMANDS = ('prepare', 'describe', 'speed')


def _builder(name: str, data_cfg):
  from seqrec_jax.data import builders, tfds_source  # pylint: disable=g-import-not-at-top
  if name not in builders.BUILDERS:
    raise app.UsageError(f'{name!r} is not a TFDS-backed dataset; choose from '
                         f'{sorted(builders.BUILDERS)}')
  b = tfds_source.make_builder(builders.BUILDERS[name], data_cfg[name].to_dict(),
                               data_cfg.data_dir)
  t0 = time.time()
  built = tfds_source.prepare(b)
  return b, built, time.time() - t0


def describe_rows(name: str, builder) -> list[dict]:
  """One dict per split from the saved metadata (no data is read)."""
  md = builder.info.metadata
  spec = md['spec']
  rows = []
  for split in ('train', 'valid', 'test'):
    st = md['stats'].get(split, {})
    h = st.get('hist_len', {})
    rows.append({
        'dataset': name, 'source': md['info'].get('source', ''), 'split': split,
        'rows': st.get('rows', 0), 'users': st.get('users', 0),
        'items': spec['num_items'], 'cates': spec['num_cates'],
        'sparse_fields': len(spec['sparse']), 'dense_dim': spec['dense_dim'],
        'pos_rate': st.get('pos_rate', {}), 'max_len': spec['max_len'], 'hist_len': h})
  return rows


def markdown(rows: list[dict]) -> str:
  cols = ['dataset', 'split', 'rows', 'users', 'items', 'cates', 'sparse/dense',
          'positive rate', 'history length mean / p50 / p90 / max', 'empty', 'at L']
  out = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
  for r in rows:
    h = r['hist_len']
    cells = [r['dataset'], r['split'], f"{r['rows']:,}", f"{r['users']:,}",
             f"{r['items'] - 1:,}" if r['items'] else '-',   # real ids (vocab minus id 0)
             f"{r['cates'] - 1:,}" if r['cates'] else '-',
             f"{r['sparse_fields']}/{r['dense_dim']}",
             ', '.join(f'{k} {v:.3f}' for k, v in r['pos_rate'].items())]
    if h:
      cells += [f"{h['mean']:.1f} / {h['p50']} / {h['p90']} / {h['max']} (L={r['max_len']})",
                f"{h['empty_frac']:.1%}", f"{h['at_max_len_frac']:.1%}"]
    else:
      cells += ['-', '-', '-']
    out.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(out)


def speed(name: str, data_cfg, builder) -> list[dict]:
  """Times random batch reads (sorted row ids, as the trainer reads them) of the train split:
  memory-mapped column files vs the same columns read into memory."""
  del data_cfg
  disk = builder.as_data_source('train')
  t0 = time.time()
  mem = builder.as_data_source('train', in_memory=True)
  read_all = time.time() - t0
  rng = np.random.default_rng(0)
  out = []
  for bs in (int(b) for b in _BATCHES.value):
    bs = min(bs, len(disk))
    res = {'dataset': name, 'batch': bs, 'rows': len(disk),
           'read_all_seconds': round(read_all, 2)}
    for label, src in (('disk', disk), ('memory', mem)):
      times = []
      for _ in range(_REPEATS.value):
        idx = np.sort(rng.choice(len(src), bs, replace=False))
        t = time.perf_counter()
        src.__getitems__(idx)
        times.append(time.perf_counter() - t)
      res[f'{label}_ms'] = round(1e3 * float(np.median(times)), 3)
      res[f'{label}_rows_per_s'] = round(bs / float(np.median(times)))
    out.append(res)
  return out


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f'usage: python -m seqrec_jax.data {{{"|".join(COMMANDS)}}} '
                         '[--dataset=a,b] [--config=...] [--config.data.<name>.<key>=...]')
  cmd, data_cfg = argv[1], _CONFIG.value.data
  names = _DATASET.value or [data_cfg.name]
  rows = []
  for name in names:
    b, built, secs = _builder(name, data_cfg)
    if cmd == 'prepare':
      print(f'{name}: {"built" if built else "already prepared"} in {secs:.1f}s at {b.data_path}')
    elif cmd == 'describe':
      rows += describe_rows(name, b)
    else:
      rows += speed(name, data_cfg, b)
  if cmd == 'describe':
    print(json.dumps(rows, indent=1) if _FORMAT.value == 'json' else markdown(rows))
  elif cmd == 'speed':
    print(json.dumps(rows, indent=1))


if __name__ == '__main__':
  app.run(main)
