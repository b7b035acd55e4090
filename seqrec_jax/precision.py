"""Optional reduced-precision compute for accelerators (config.model.compute_dtype).

`cast_apply(apply_fn, 'bfloat16')` wraps a Flax apply: float32 parameters are cast to bfloat16
on the way in, so matmuls and activations run in bfloat16, and float outputs (logits, updated
batch statistics) are cast back to float32. The TrainState keeps float32 parameters and Adam
moments: gradients come back float32 through the cast. Batch statistics (Dice running
averages) are passed and updated in float32 (layers/activations.py computes them in float32).
'float32' (the default) returns apply_fn itself: the same program as before.

Status: on CPU, outputs are within bfloat16 rounding of float32 and parameters stay float32
(tests/test_precision.py). Speed and AUC parity on a GPU are not measured yet
(docs/accelerator.md); the issue keeps it only where AUC is unchanged within seed noise.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

DTYPES = {'float32': None, 'bfloat16': jnp.bfloat16}


def cast_apply(apply_fn, compute_dtype: str = 'float32'):
  """apply_fn(variables, *args, **kwargs) computing in compute_dtype (see module doc)."""
  if compute_dtype not in DTYPES:
    raise ValueError(f'config.model.compute_dtype={compute_dtype!r}; choose from '
                     f'{sorted(DTYPES)}')
  dtype = DTYPES[compute_dtype]
  if dtype is None:
    return apply_fn

  def down(x):
    return x.astype(dtype) if getattr(x, 'dtype', None) == jnp.float32 else x

  def up(x):
    return x.astype(jnp.float32) if getattr(x, 'dtype', None) == dtype else x

  def apply(variables, *args, **kwargs):
    variables = {**variables, 'params': jax.tree.map(down, variables['params'])}
    return jax.tree.map(up, apply_fn(variables, *args, **kwargs))

  return apply
