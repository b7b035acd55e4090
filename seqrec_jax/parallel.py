"""Device mesh and shardings. Data parallel over the `data` axis (batch sharded, parameters
replicated, gradient averaging inserted by XLA); an optional `model` axis is reserved for
sharding large embedding tables by rows."""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(data: int = -1, model: int = 1) -> Mesh:
  """A (data, model) mesh over all devices; data=-1 takes every device not used by `model`."""
  n = jax.device_count()
  if data == -1:
    if n % model:
      raise ValueError(f'{n} devices cannot be split into model={model} groups '
                       '(config.parallel.model)')
    data = n // model
  if data * model != n:
    raise ValueError(f'mesh data={data} x model={model} needs {data * model} devices, '
                     f'have {n} (config.parallel)')
  auto = jax.sharding.AxisType.Auto
  # Auto axis types: the default (Explicit) rejects nn.Embed gathers on data-sharded ids.
  return jax.make_mesh((data, model), ('data', 'model'), axis_types=(auto, auto))


def data_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(global_batch: int, mesh: Mesh, what: str = 'config.data.batch_size'):
  n = mesh.shape['data']
  if global_batch % n:
    raise ValueError(f'{what}={global_batch} (global batch) is not divisible by the '
                     f'{n} devices of the data axis; use a multiple of {n}')
  if global_batch % jax.process_count():
    raise ValueError(f'{what}={global_batch} is not divisible by the '
                     f'{jax.process_count()} processes')


def to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Builds global arrays (sharded on the batch axis) from this process's rows."""
  sh = data_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sh, np.asarray(v)) for k, v in batch.items()}
