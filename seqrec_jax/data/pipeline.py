"""Random-access splits and deterministic batching.

A split is anything with `len(split)` and `split.__getitems__(indices) -> dict[str, array]`
(the same random-access protocol as `tfds.data_source`, but batched into arrays). Training
order is a pure function of (seed, step): a restarted run reads exactly the batches an
uninterrupted run would, which is what makes resume bit-identical.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from seqrec_jax.data.features import DataSpec


class Split(Protocol):

  def __len__(self) -> int:
    ...

  def __getitems__(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
    ...


class ArraySplit:
  """An in-memory split: a dict of equally long numpy arrays."""

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    self.arrays = dict(arrays)
    self._n = len(next(iter(self.arrays.values())))

  def __len__(self) -> int:
    return self._n

  def __getitems__(self, indices) -> dict[str, np.ndarray]:
    idx = np.asarray(indices)
    return {k: v[idx] for k, v in self.arrays.items()}

  def all(self) -> dict[str, np.ndarray]:
    return self.arrays


@dataclasses.dataclass
class Dataset:
  """A prepared dataset: input spec, named splits and free-form info (e.g. oracle AUC)."""
  name: str
  spec: DataSpec
  splits: dict[str, Split]
  info: dict[str, Any] = dataclasses.field(default_factory=dict)
  # True click probability per split where the generator knows it (synthetic data only).
  oracle_prob: dict[str, np.ndarray] | None = None
  # Train-split id counts {table: [vocab]} stored with the prepared dataset
  # (data/id_counts.py); None where the source cannot carry them (counted at first use).
  id_counts: dict[str, np.ndarray] | None = None


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(n)


def train_batches(split: Split, global_batch: int, seed: int | Sequence[int], start_step: int,
                  num_steps: int, process_index: int = 0, process_count: int = 1,
                  prefetch: int = 2, transform: Callable | None = None,
                  group_transform: Callable | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Yields host batches for steps [start_step, num_steps), read ahead in a thread.

  seed: an int: [B/P, ...] batches (B the global batch, P processes: this process's rows);
  a sequence of S seeds: [S, B/P, ...], row s exactly the batch of a run with seed[s].
  Step t of epoch e takes rows [t B, (t+1) B) of epoch_permutation(seed, e, n), this
  process's slice of them, sorted.
  transform(batch, seed, step) -> batch: applied per run (before the runs are stacked) in the
  read-ahead thread (e.g. tasks' prepare_batch); the S results must have the same shapes.
  group_transform(batch) -> batch: applied to the stacked [S, ...] batch after `transform`
  (also for an int seed, as S = 1), e.g. packing.add_group_history_index (one packed shape
  for the S runs).
  """
  n = len(split)
  seeds = [int(s) for s in seed] if isinstance(seed, Sequence) else [int(seed)]
  # Cache one permutation per epoch instead of recomputing it every step.
  cache: dict[int, list[np.ndarray]] = {}
  steps_per_epoch = n // global_batch
  per = global_batch // process_count

  def make(step):
    epoch, pos = divmod(step, steps_per_epoch)
    if epoch not in cache:
      cache.clear()
      cache[epoch] = [epoch_permutation(s, epoch, n) for s in seeds]
    rows = np.stack([np.sort(p[pos * global_batch:(pos + 1) * global_batch]
                             [process_index * per:(process_index + 1) * per])
                     for p in cache[epoch]])
    b = split.__getitems__(rows.reshape(-1))
    b = {k: v.reshape(rows.shape + v.shape[1:]) for k, v in b.items()}
    if transform is not None:
      runs = [transform({k: v[i] for k, v in b.items()}, s, step) for i, s in enumerate(seeds)]
      b = {k: np.stack([r[k] for r in runs]) for k in runs[0]}
    if group_transform is not None:
      b = group_transform(b)
    return b if isinstance(seed, Sequence) else {k: v[0] for k, v in b.items()}

  if steps_per_epoch == 0:
    raise ValueError(f'train split has {n} rows, fewer than one global batch ({global_batch})')
  yield from _prefetch((make(s) for s in range(start_step, num_steps)), prefetch)


def eval_batches(split: Split, batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[tuple[dict[str, np.ndarray], int]]:
  """Yields (batch, n_valid) over the whole split in order; the last batch is padded.

  Padding repeats row 0 so every batch has the same shape (no recompilation); callers keep
  the first `n_valid` rows of each batch's predictions. With several processes each takes an
  equal slice of every global batch.
  """
  n = len(split)
  per = batch_size // process_count
  for start in range(0, n, batch_size):
    rows = np.arange(start, start + batch_size)
    n_valid = min(batch_size, n - start)
    rows = np.where(rows < n, rows, 0)
    local = rows[process_index * per:(process_index + 1) * per]
    yield split.__getitems__(local), n_valid


def _prefetch(it: Iterator[Any], size: int) -> Iterator[Any]:
  if size <= 0:
    yield from it
    return
  q: queue.Queue = queue.Queue(maxsize=size)
  done = object()
  err: list[BaseException] = []

  def worker():
    try:
      for x in it:
        q.put(x)
    except BaseException as e:  # pylint: disable=broad-except
      err.append(e)
    finally:
      q.put(done)

  t = threading.Thread(target=worker, daemon=True)
  t.start()
  while True:
    x = q.get()
    if x is done:
      break
    yield x
  if err:
    raise err[0]
