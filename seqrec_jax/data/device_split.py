"""Device-resident training splits: columns placed on the accelerator once, batches gathered
there (no per-step host gather or host-to-device copy of rows).

The batch order is the host pipeline's (data/pipeline.train_batches): epoch e of seed s is
`epoch_permutation(s, e, n)`, step t of the epoch takes rows [t B, (t+1) B) of it, sorted. The
permutation is uploaded once per epoch ([n] int32, or [S, n] for a group of S runs) and each
step slices, sorts and gathers on the device, so a step's batch equals the host batch bit for
bit (tests/test_device_split.py) and resume stays bit-identical. Sequence rows are cut into
[B, L] history windows on the device (the same rule as data/store.cut_windows).

`data.device_resident`: 'auto' places the train split on the device when the platform is an
accelerator, the run has one process, and the split's stored columns (rows + behaviours) fit
`data.device_memory_fraction` of the first device's memory (`memory_stats()['bytes_limit']`);
'always' forces it (also on CPU, where the "device" is host memory: used by the tests); 'never'
keeps the host pipeline. Host-side packed histories (data/packing.py) need the batch on the
host, so a device-resident split trains on the padded path.
"""
from __future__ import annotations

import functools
from typing import Iterator, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from seqrec_jax.data.pipeline import ArraySplit, epoch_permutation
from seqrec_jax.data.store import RANGE_KEYS, ColumnSplit

MODES = ('auto', 'always', 'never')


def _host_columns(split) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int] | None:
  """(row columns, behaviours, L) of a stored or in-memory split; None for other splits."""
  if isinstance(split, ColumnSplit):
    return dict(split.columns), dict(split.behaviours), split.max_len
  if isinstance(split, ArraySplit):
    return dict(split.arrays), {}, 0
  return None


def stored_bytes(split) -> int | None:
  cols = _host_columns(split)
  if cols is None:
    return None
  return int(sum(v.nbytes for part in cols[:2] for v in part.values()))


def wanted(data_cfg, split, process_count: int) -> bool:
  """Whether to place this train split on the device (see the module docstring)."""
  mode = str(data_cfg.device_resident).lower()   # one of MODES (configs/default.py checks)
  size = stored_bytes(split)
  if mode == 'never' or size is None:
    return False
  if process_count > 1:
    if mode == 'always':
      raise ValueError('config.data.device_resident=always: device-resident splits need one '
                       'process (with several, each process reads its own rows on the host)')
    return False
  if mode == 'always':
    return True
  dev = jax.devices()[0]
  if dev.platform == 'cpu':
    return False
  stats = dev.memory_stats() or {}
  limit = stats.get('bytes_limit')
  frac = float(data_cfg.device_memory_fraction)
  ok = limit is not None and size <= frac * limit
  logging.info('train split stored size %.1f MB vs %.0f%% of device memory (%s): %s',
               size / 2**20, 100 * frac, 'unknown' if limit is None else f'{limit / 2**20:.0f} MB',
               'device-resident' if ok else 'host pipeline')
  return ok


class DeviceSplit:
  """A train split on the device; `batches` yields device batches in the host order."""

  def __init__(self, split, sharding):
    rows, beh, self.max_len = _host_columns(split)
    self.n = len(split)
    m = len(next(iter(beh.values()))) if beh else 0
    if max(self.n, m) >= 2**31:
      raise ValueError(f'device-resident split: {max(self.n, m)} rows/behaviours exceed int32 '
                       'indexing; set config.data.device_resident=never')
    put = lambda v: jax.device_put(  # pylint: disable=unnecessary-lambda-assignment
        np.asarray(v, np.int32) if v.dtype == np.int64 else np.asarray(v), sharding)
    self.rows = {k: put(v) for k, v in rows.items()}
    self.beh = {k: put(v) for k, v in beh.items()}
    self.sharding = sharding
    self.keys = [k for k in rows if k not in RANGE_KEYS]

  def _gather(self, rows, beh, idx):
    """idx [..., B] int32 -> batch dict [..., B, ...] (windows cut for sequence rows)."""
    out = {k: jnp.take(rows[k], idx, axis=0, mode='clip') for k in self.keys}
    if beh:
      end = jnp.take(rows['hist_end'], idx, mode='clip')[..., None]
      pos = end + jnp.arange(-self.max_len, 0, dtype=jnp.int32)
      mask = pos >= jnp.take(rows['hist_start'], idx, mode='clip')[..., None]
      pos = jnp.where(mask, pos, 0)
      for k, v in beh.items():
        out[k] = jnp.where(mask, jnp.take(v, pos, mode='clip'), 0).astype(v.dtype)
      out['hist_mask'] = mask
    return out

  def _step(self, rows, beh, perm, pos, *, batch: int):
    """perm [..., n] -> the batch at position `pos` (traced) of the epoch."""
    sl = jax.lax.dynamic_slice_in_dim(perm, pos * batch, batch, axis=-1)
    return self._gather(rows, beh, jnp.sort(sl, axis=-1))

  def batches(self, global_batch: int, seeds: Sequence[int] | int, start_step: int,
              num_steps: int, out_sharding=None) -> Iterator[dict[str, jax.Array]]:
    """Device batches for steps [start_step, num_steps): [B, ...] for one seed (an int), or
    [S, B, ...] for a list of S seeds (row s = the batch of a run with seeds[s])."""
    spe = self.n // global_batch
    if spe == 0:
      raise ValueError(f'train split has {self.n} rows, fewer than one global batch '
                       f'({global_batch})')
    group = not isinstance(seeds, (int, np.integer))
    seed_list = list(seeds) if group else [int(seeds)]
    step_fn = jax.jit(functools.partial(self._step, batch=global_batch),
                      out_shardings=out_sharding)
    perm, perm_epoch = None, None
    for step in range(start_step, num_steps):
      epoch, pos = divmod(step, spe)
      if epoch != perm_epoch:   # one upload per epoch
        p = np.stack([epoch_permutation(s, epoch, self.n) for s in seed_list]).astype(np.int32)
        perm, perm_epoch = jax.device_put(p if group else p[0], self.sharding), epoch
      yield step_fn(self.rows, self.beh, perm, np.int32(pos))
