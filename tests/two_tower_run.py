"""A tiny two-tower run on planted-cluster logs for tests/test_two_tower.py: in process, and as
the subprocess the resume test SIGKILLs (the same program, so the same numbers):

  python tests/two_tower_run.py WORKDIR [key=value ...]      # config overrides, typed

Logs: each user consumes SEQ + 1 distinct items, in order, of one of CLUSTERS clusters of PER
items (uniform within it); categories are random, so only the ids carry the clusters.
Leave-last-out by time (data/retrieval.py): the last item is the test target, the one before
the valid target, the rest train (examples from the second item on).
"""
from __future__ import annotations

import functools
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTERS, PER, MAX_LEN, SEQ = 6, 20, 8, 10
CONFIG = 'seqrec_jax/configs/two_tower.py'
# Two runs as one group, four evaluations (checkpoints there), in-batch softmax + log-Q.
OVERRIDES = {'model.embed_dim': 8, 'model.two_tower.tower': (32, 16), 'data.batch_size': 128,
             'data.eval_batch_size': 512, 'optim.learning_rate': 1e-2,
             'train.num_steps': 120, 'train.eval_every': 30, 'train.checkpoint_every': 30,
             'train.log_every': 10, 'train.runs': 2, 'train.two_tower.ks': (10, 50),
             'train.two_tower.select_metric': 'recall@10',
             # 16 sampled catalogue columns per step: the batches carry host-drawn negatives.
             'train.two_tower.num_catalogue': 16}


@functools.lru_cache(maxsize=1)
def dataset(num_users: int = 360, seed: int = 0):
  """The planted logs' next-item Dataset value (data/retrieval.next_item_dataset)."""
  from seqrec_jax.data import retrieval as RD  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  num_items = CLUSTERS * PER + 1
  cate_of_item = np.concatenate([[0], rng.integers(1, 5, num_items - 1)]).astype(np.int32)
  seqs = [1 + rng.integers(CLUSTERS) * PER + rng.choice(PER, SEQ + 1, replace=False)
          for _ in range(num_users)]
  n = SEQ + 1
  logs = RD.Logs('planted', np.repeat(np.arange(1, num_users + 1), n).astype(np.int32),
                 np.concatenate(seqs).astype(np.int32), np.tile(np.arange(n), num_users),
                 cate_of_item, num_users + 1, 5, {'source': 'tests/two_tower_run.py'})
  return RD.next_item_dataset(RD.leave_last_out(logs), MAX_LEN)


def config(overrides=None):
  from seqrec_jax.configs import load_config  # pylint: disable=g-import-not-at-top
  return load_config(os.path.join(ROOT, CONFIG), {**OVERRIDES, **(overrides or {})})


def run(workdir: str, overrides=None) -> dict:
  """train.train_and_evaluate on `dataset()`; returns the summary."""
  from seqrec_jax import train  # pylint: disable=g-import-not-at-top
  return train.train_and_evaluate(config(overrides), workdir, dataset())


if __name__ == '__main__':
  sys.path.insert(0, ROOT)
  from seqrec_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  from seqrec_jax.configs import parse_overrides  # pylint: disable=g-import-not-at-top
  xla_cpu.apply_defaults()
  run(sys.argv[1], parse_overrides(sys.argv[2:], config()))
