"""One TFDS `GeneratorBasedBuilder` per real dataset (the logic lives in each recipe module).

Bump a builder's VERSION when its recipe changes what it writes: the cache key includes it,
so every prepared copy is rebuilt on next use.
"""
from __future__ import annotations

import tensorflow_datasets as tfds

from seqrec_jax.data import amazon, census, criteo, movielens
from seqrec_jax.data.tfds_source import ArrayBuilder


class SeqrecMovielens(ArrayBuilder, skip_registration=True):
  """MovieLens ratings with the DIN paper protocol (see seqrec_jax/data/movielens.py)."""
  name = 'seqrec_movielens'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'DIN paper protocol: rating>=4 positive, split by user.'}
  recipe = movielens


class SeqrecAmazon(ArrayBuilder, skip_registration=True):
  """Amazon reviews with the original DIN code protocol (see seqrec_jax/data/amazon.py)."""
  name = 'seqrec_amazon'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'DIN code protocol with a leave-one-out valid split.'}
  recipe = amazon


class SeqrecCensus(ArrayBuilder, skip_registration=True):
  """UCI Adult, multi-task income / never-married (see seqrec_jax/data/census.py)."""
  name = 'seqrec_census'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Packaged adult.csv.gz, train-only statistics.'}
  recipe = census


class SeqrecCriteo(ArrayBuilder, skip_registration=True):
  """Criteo display-advertising text format (see seqrec_jax/data/criteo.py)."""
  name = 'seqrec_criteo'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'log(x+1) integers, min-count vocabularies, sequential split.'}
  recipe = criteo


BUILDERS = {'movielens': SeqrecMovielens, 'amazon': SeqrecAmazon, 'census': SeqrecCensus,
            'criteo': SeqrecCriteo}
