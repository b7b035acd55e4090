"""Speed settings chosen per platform (the backend JAX runs on: cpu, gpu or tpu).

Config keys listed in DEFAULTS default to None ('auto') in configs/default.py; `resolve`
fills them from the table of the platform at the entry point (train.train_and_evaluate,
benchmarks/jax_din.py). A value set in a config file or on the command line is kept
(`--config.data.pack_history=False` on a GPU stays False).

| key                | cpu (measured) | gpu (measured, H100) | tpu (to be measured) |
|--------------------|----------------|----------------------|----------------------|
| data.pack_history  | True           | True                 | False                |
| data.pack_buckets  | 32             | 32                   | 32                   |
| data.pack_max_fill | 0.8            | 0.8                  | 0.8                  |
| train.run_chunk    | 1              | 0 (all S, one vmap)  | 0                    |

cpu: benchmarks/din_throughput.py on 2 AMD EPYC cores (docs/performance.md): packed histories
train DIN 1.71x / 1.51x / 1.31x faster than padded at L = 50 / 100 / 200 (uniform lengths);
with full-length histories the padded path is 1.15-1.2x faster, hence pack_max_fill 0.8.
gpu: benchmarks/accelerator_check.py on one H100 (2026-11-27, jax 0.11.2, docs/accelerator.md):
packed ('jax', host-side index inside the timed loop) vs padded ('jax_dense') at batch 8192:
2.26x / 2.24x / 2.04x at L = 50 / 100 / 200; at batch 1024: 0.84x / 0.98x / 1.04x. Packed
wins where the step is large and is never far behind, so it is the GPU default too.
pack_max_fill 0.8 on GPU is kept from the CPU measurement (full-length histories unmeasured).
tpu: not measured; padded is the prior (no TPU lent to this project).
train.run_chunk (a multi-run group's runs per vmapped call, run_map.py): on CPU a lax.map over
the runs (chunk 1) beats the vmapped group (docs/multirun.md "Speed": DIN with Dice at S = 5
and MMoE at S = 100); on GPU the vmapped step fills the device (29x at S = 64, H100).
"""
from __future__ import annotations

import copy

AUTO = None
PLATFORMS = ('cpu', 'gpu', 'tpu')
_PACKED = {'data.pack_history': True, 'data.pack_buckets': 32, 'data.pack_max_fill': 0.8}
DEFAULTS = {
    'cpu': {**_PACKED, 'train.run_chunk': 1},
    'gpu': {**_PACKED, 'train.run_chunk': 0},
    'tpu': {**_PACKED, 'data.pack_history': False, 'train.run_chunk': 0},
}
MEASURED = {'cpu': True, 'gpu': True, 'tpu': False}


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
