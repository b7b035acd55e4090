"""benchmarks/data_scale.py at a tiny scale: the generators write files in the published layouts
that the project's recipes read, and every case's JSON line has the agreed keys."""
from __future__ import annotations

import csv
import gzip
import json
import os

import numpy as np
import pytest

from benchmarks import data_scale as ds

SCALE = 0.0003
KEYS = {'dataset', 'case', 'scale', 'rows', 'seconds', 'rows_per_s', 'peak_rss_mb', 'loadavg',
        'git_commit'}


@pytest.fixture(scope='module')
def raw(tmp_path_factory):
  work = str(tmp_path_factory.mktemp('scale'))
  recs = {d: ds.generate(d, work, SCALE, seed=0) for d in ds.DATASETS}
  return work, recs


def test_helpers():
  rng = np.random.default_rng(0)
  c = ds.allocate(1000, rng.lognormal(0, 2, 30), 5, 200, rng)
  assert c.sum() == 1000 and c.min() >= 5 and c.max() <= 200
  r = ds.zipf_ranks(rng, 50, 10_000, 1.2)
  assert r.min() >= 0 and r.max() < 50 and np.bincount(r)[0] > np.bincount(r, minlength=50)[-1]
  x = np.array([0, 0xDEADBEEF, 0xFFFFFFFF, 255], np.uint32)
  h = ds.hex8(x, np.array([False, False, False, True]))
  assert h.to_pylist() == ['00000000', 'deadbeef', 'ffffffff', None]


def test_generate_records_and_layouts(raw):
  work, recs = raw
  for d, rec in recs.items():
    assert KEYS <= set(rec), d
    assert rec['case'] == 'generate' and rec['rows'] > 0 and not rec['skipped']
  assert ds.generate('criteo', work, SCALE, seed=0)['skipped']     # same params: not rewritten
  root = ds.raw_dir(work, SCALE)
  with open(os.path.join(root, 'ml-20m', 'ratings.csv')) as f:
    rows = list(csv.reader(f))
  assert rows[0] == ['userId', 'movieId', 'rating', 'timestamp']
  users = np.array([int(r[0]) for r in rows[1:]])
  assert len(rows) - 1 == recs['movielens20m']['rows']
  assert np.bincount(users)[1:].min() >= 20                       # every user >= 20 ratings
  assert {r[2] for r in rows[1:]} <= {f'{x / 2:.1f}' for x in range(1, 11)}
  pairs = {(r[0], r[1]) for r in rows[1:]}
  assert len(pairs) == len(rows) - 1                              # (user, movie) unique
  with open(os.path.join(root, 'ml-20m', 'movies.csv')) as f:
    movies = list(csv.reader(f))
  assert movies[0] == ['movieId', 'title', 'genres'] and all(len(m) == 3 for m in movies)
  assert any(', The (' in m[1] for m in movies[1:])
  with gzip.open(os.path.join(root, 'amazon', 'reviews_Electronics_5.json.gz'), 'rt') as f:
    reviews = [json.loads(x) for x in f]
  assert len(reviews) == recs['amazon']['rows']
  assert list(reviews[0])[:2] == ['reviewerID', 'asin'] and isinstance(reviews[0]['helpful'], list)
  for key in ('reviewerID', 'asin'):
    assert np.bincount(np.unique([r[key] for r in reviews], return_inverse=True)[1]).min() >= 5
  with gzip.open(os.path.join(root, 'amazon', 'meta_Electronics.json.gz'), 'rt') as f:
    first = f.readline()
  assert first.startswith("{'asin': '") and "'categories': [[" in first
  with open(os.path.join(root, 'dac', 'train.txt')) as f:
    lines = f.read().splitlines()
  assert len(lines) == recs['criteo']['rows']
  fields = [ln.split('\t') for ln in lines]
  assert {len(x) for x in fields} == {40} and {x[0] for x in fields} == {'0', '1'}
  assert all(len(v) in (0, 8) for x in fields[:100] for v in x[14:])


@pytest.mark.parametrize('dataset', ds.DATASETS)
def test_recipes_read_generated_files(raw, dataset):
  """The project's recipe (whatever the storage) parses the generated files without errors."""
  from seqrec_jax.data import amazon, criteo, movielens  # pylint: disable=g-import-not-at-top
  work, _ = raw
  mod = {'movielens20m': movielens, 'amazon': amazon, 'criteo': criteo}[dataset]
  key = {'movielens20m': 'data.movielens.path', 'amazon': 'data.amazon.path',
         'criteo': 'data.criteo.path'}[dataset]
  prepared = mod.prepare(dict(mod.DEFAULTS, path=ds.data_overrides(dataset, work, SCALE)[key]))
  rows = {s: sum(len(next(iter(c.values()))) for c in gen()) for s, gen in prepared.splits.items()}
  assert min(rows.values()) > 0, rows
  assert prepared.info.get('bad_rows_skipped', 0) == 0


def test_prepare_and_read_records(raw):
  """The in-process halves of the prepare and read cases on the tiny MovieLens files."""
  work, _ = raw
  rec = ds.child_prepare('movielens20m', work, SCALE)
  assert KEYS <= set(rec) and rec['case'] == 'prepare' and rec['split_rows']['train'] > 0
  reads = ds.child_read('movielens20m', work, SCALE, batches=(64,), read_seconds=0.05,
                        cold_batches=2)
  assert [(r['source'], r['batch']) for r in reads] == [('disk', 64)] * 2 + [('memory', 64)]
  for r in reads:
    assert KEYS <= set(r) and r['rows'] > 0 and r['rows_per_s'] > 0
