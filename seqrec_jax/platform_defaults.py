"""Speed settings chosen per platform (the backend JAX runs on: cpu, gpu or tpu).

Config keys listed in DEFAULTS default to None ('auto') in configs/default.py; `resolve`
fills them from the table of the platform at the entry point (train.train_and_evaluate,
benchmarks/jax_din.py). A value set in a config file or on the command line is kept
(`--config.data.pack_history=False` on a GPU stays False).

| key                | cpu (measured) | gpu, tpu (to be measured) |
|--------------------|----------------|---------------------------|
| data.pack_history  | True           | False                     |
| data.pack_buckets  | 32             | 32                        |
| data.pack_max_fill | 0.8            | 0.8                       |

cpu: benchmarks/din_throughput.py on 2 AMD EPYC cores (docs/performance.md): packed histories
train DIN 1.71x / 1.51x / 1.31x faster than padded at L = 50 / 100 / 200 (uniform lengths);
with full-length histories the padded path is 1.15-1.2x faster, hence pack_max_fill 0.8.
gpu, tpu: not measured (no accelerator has been lent to this project yet). Padded is the prior
because packing builds its index on the host for every batch and its compiled shape follows
the batch's fill, while an accelerator's cost for the padded positions is small at these
sizes. benchmarks/accelerator_check.py measures both ('jax' packed, 'jax_dense' padded); its
numbers replace this prior (docs/accelerator.md).
"""
from __future__ import annotations

import copy

AUTO = None
PLATFORMS = ('cpu', 'gpu', 'tpu')
_ACCELERATOR = {'data.pack_history': False, 'data.pack_buckets': 32, 'data.pack_max_fill': 0.8}
DEFAULTS = {
    'cpu': {'data.pack_history': True, 'data.pack_buckets': 32, 'data.pack_max_fill': 0.8},
    'gpu': dict(_ACCELERATOR),
    'tpu': dict(_ACCELERATOR),
}
MEASURED = {'cpu': True, 'gpu': False, 'tpu': False}


def current_platform() -> str:
  """'cpu', 'gpu' or 'tpu' for JAX's default backend (cuda and rocm are 'gpu')."""
  import jax  # pylint: disable=g-import-not-at-top
  p = jax.default_backend()
  return 'gpu' if p in ('gpu', 'cuda', 'rocm') else p


def resolve(config, platform: str | None = None):
  """A copy of `config` whose DEFAULTS keys left at None take the platform's values.

  platform: one of PLATFORMS; None = the platform JAX runs on.
  """
  platform = platform or current_platform()
  if platform not in DEFAULTS:
    raise ValueError(f'platform {platform!r} (JAX default backend) has no speed defaults in '
                     f'seqrec_jax/platform_defaults.py; choose from {PLATFORMS}')
  out = copy.deepcopy(config)
  for key, value in DEFAULTS[platform].items():
    *parents, leaf = key.split('.')
    node = out
    for p in parents:
      node = node[p]
    if node[leaf] is AUTO:
      node[leaf] = value
  return out


def table() -> dict:
  """{platform: {key: value, ..., 'measured': bool}} (for reports)."""
  return {p: {**d, 'measured': MEASURED[p]} for p, d in DEFAULTS.items()}
