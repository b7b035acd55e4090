"""One TFDS `GeneratorBasedBuilder` per real dataset (the logic lives in each recipe module).

Bump a builder's version when its recipe changes what it writes: the cache key includes it,
so every prepared copy is rebuilt on next use.
"""
from __future__ import annotations

from types import ModuleType

import tensorflow_datasets as tfds

from seqrec_jax.data import amazon, census, census_kdd, criteo, movielens
from seqrec_jax.data.tfds_source import ColumnBuilder


def _builder(cls_name: str, recipe: ModuleType, version: str, note: str) -> type:
  """A ColumnBuilder subclass `seqrec_<recipe>` (TFDS wants one class per dataset)."""
  key = recipe.__name__.rsplit('.', 1)[-1]
  ns = {'__module__': __name__, '__doc__': f'{note} (see seqrec_jax/data/{key}.py)',
        'name': f'seqrec_{key}', 'VERSION': tfds.core.Version(version),
        'RELEASE_NOTES': {version: note}, 'recipe': recipe}
  return type(cls_name, (ColumnBuilder,), ns, skip_registration=True)


# 2.0.0: column files (data/store.py) instead of one array_record example per row; sequence
# rows store behaviour ranges, windows are cut at read time.
SeqrecMovielens = _builder('SeqrecMovielens', movielens, '2.0.0',
                           'DIN paper protocol: rating>=4 positive, split by user.')
SeqrecAmazon = _builder('SeqrecAmazon', amazon, '2.0.0',
                        'DIN code protocol with a leave-one-out valid split.')
SeqrecCensus = _builder('SeqrecCensus', census, '2.0.0',
                        'Packaged adult.csv.gz, train-only statistics.')
SeqrecCriteo = _builder('SeqrecCriteo', criteo, '2.0.0',
                        'log(x+1) integers, min-count vocabularies, sequential split.')
SeqrecCensusKdd = _builder('SeqrecCensusKdd', census_kdd, '2.0.0',
                           'MMoE paper task groups; UCI train file, test file split 1:1.')

BUILDERS = {'movielens': SeqrecMovielens, 'amazon': SeqrecAmazon, 'census': SeqrecCensus,
            'criteo': SeqrecCriteo, 'census_kdd': SeqrecCensusKdd}
