"""Feature specs and host-side validation of the batch contract (see docs/design.md).

A batch is a dict of numpy arrays with fixed keys:
  user_id [B], target_item [B], target_cate [B], hist_items [B, L], hist_cates [B, L],
  hist_mask [B, L] (bool, True = real behaviour), dense [B, D] (optional),
  sparse [B, F] (optional), label [B] or labels [B, T], weight [B] (optional).
Id 0 is padding / out-of-vocabulary in every vocabulary. JAX gathers clamp out-of-range
indices silently, so `validate_arrays` is the only guard against bad ids.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
  from seqrec_jax.data.id_counts import IdCounts


class DataError(ValueError):
  """Bad input data; the message names the field, the value and where it came from."""


# Which side of an impression a sparse field or dense column describes (DataSpec.sparse[j].side,
# DataSpec.dense_sides):
#   user     the user / request (same on every candidate row of a request): user towers
#   item     the candidate item (a function of the item only): item towers, cacheable per item
#   context  the (user, item) pair or the impression (position, a per-pair statistic), or a side
#            nobody declared: per-row parts only (a ranker, the pre-ranker's cross tower);
#            no tower of a two-tower model
# Rankers that score each row as a whole (din, the ctr and multi-task models) read every field.
SIDES = ('user', 'item', 'context')


def _check_side(side, where: str) -> None:
  if side not in SIDES:
    raise ValueError(f'{where} side={side!r}; choose from {SIDES}')


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """A categorical field. `vocab_size` counts id 0 (padding/OOV): valid ids are [0, vocab_size).
  `side`: one of SIDES (above); 'context' unless the dataset declares it."""
  name: str
  vocab_size: int
  side: str = 'context'

  def __post_init__(self):
    _check_side(self.side, f'FeatureSpec {self.name!r}')


# Task kinds: the loss (losses.task_losses), the served prediction (steps.eval_step) and the
# metrics (evaluate.split_metrics) of each.
#   binary           label in {0, 1}; BCE on sigmoid(z); served sigmoid(z); AUC, GAUC, logloss
#   regression       real label; MSE; served z; MSE (on a watch time: the direct regression head)
#   watch_time       label t >= 0 (e.g. seconds); served exp(z), the watch-time estimate; MAE,
#                    Spearman, order AUC. Task.loss picks the loss (WATCH_TIME_LOSSES):
#                      soft_label  BCE on sigmoid(z) with the soft label y = t / (1 + t)
#                                  (watch_time_target; course notes). sigmoid(z) = y <=> z = log t
#                                  for one t, but for varying t its optimum is
#                                  exp(z) = E[y] / E[1 - y], not E[t]
#                      weighted    the same BCE weighted by (1 + t), i.e. t log sigmoid(z) +
#                                  log(1 - sigmoid(z)) negated: positives weighted by the watch
#                                  time, one negative (YouTube's weighted logistic regression,
#                                  Covington et al. 2016); optimum exactly exp(z) = E[t]
#   completion_rate  label played / duration in [0, 1]; BCE on sigmoid(z) with that soft label;
#                    served sigmoid(z); MAE, Spearman, order AUC, logloss
# (the binary "completed" label, played / duration >= 0.8, is a 'binary' task.)
TASK_KINDS = ('binary', 'regression', 'watch_time', 'completion_rate')
WATCH_TIME_LOSSES = ('soft_label', 'weighted')


def watch_time_target(t):
  """The watch-time head's training label y = t / (1 + t) in [0, 1) (numpy or jax)."""
  return t / (1.0 + t)


@dataclasses.dataclass(frozen=True)
class Task:
  """One prediction target; kind is one of TASK_KINDS, loss the kind's form of loss ('' = its
  default; watch_time: one of WATCH_TIME_LOSSES, default soft_label); see above."""
  name: str
  kind: str = 'binary'
  weight: float = 1.0
  # Added after workdirs were recorded: data.fingerprint leaves it out at its default.
  loss: str = dataclasses.field(default='', metadata={'since': 'eb4ba70'})

  def __post_init__(self):
    allowed = WATCH_TIME_LOSSES if self.kind == 'watch_time' else ('',)
    if self.loss not in ('',) + allowed:
      raise ValueError(f'Task {self.name!r} (kind {self.kind!r}) has loss={self.loss!r}; '
                       f'choose from {allowed}' + ('' if self.kind == 'watch_time' else
                                                   ' (only watch_time has loss forms)'))


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """Everything a model needs to know about a dataset's inputs and targets."""
  num_users: int
  num_items: int
  num_cates: int
  max_len: int
  sparse: tuple[FeatureSpec, ...] = ()
  dense_dim: int = 0
  tasks: tuple[Task, ...] = (Task('click'),)
  # Training-split id counts n_j per embedding table (data/id_counts.py), attached by
  # data.load_dataset; read only by model.mba_lambda > 0. Compared and hashed by identity.
  id_counts: IdCounts | None = None
  # Side of each dense column ([dense_dim] of SIDES); () = every column 'context'.
  dense_sides: tuple[str, ...] = ()

  def __post_init__(self):
    sides = tuple(self.dense_sides)          # a list when read back from JSON
    object.__setattr__(self, 'dense_sides', sides)
    if sides and len(sides) != self.dense_dim:
      raise ValueError(f'DataSpec.dense_sides has {len(sides)} entries {sides}, dense_dim is '
                       f'{self.dense_dim}: one side per dense column (or () for all context)')
    for j, side in enumerate(sides):
      _check_side(side, f'DataSpec.dense_sides[{j}]')

  def sparse_columns(self, side: str) -> tuple[int, ...]:
    """Indices j of the sparse fields (columns of batch['sparse']) on `side`."""
    _check_side(side, 'DataSpec.sparse_columns')
    return tuple(j for j, f in enumerate(self.sparse) if f.side == side)

  def dense_columns(self, side: str) -> tuple[int, ...]:
    """Indices of the dense columns (of batch['dense']) on `side`."""
    _check_side(side, 'DataSpec.dense_columns')
    sides = self.dense_sides or ('context',) * self.dense_dim
    return tuple(j for j, s in enumerate(sides) if s == side)

  def side_inputs(self, batch, side: str) -> dict:
    """The `side` columns of a batch's (numpy or jax) features: {'sparse': [..., F_side],
    'dense': [..., D_side]}, each key only when that side has columns."""
    out = {}
    for key, cols in (('sparse', self.sparse_columns(side)), ('dense', self.dense_columns(side))):
      if cols:
        out[key] = batch[key][..., np.asarray(cols)]
    return out

  @property
  def multitask(self) -> bool:
    return len(self.tasks) > 1

  def id_fields(self) -> dict[str, int]:
    """Maps batch keys holding ids to their vocabulary sizes."""
    out = {'user_id': self.num_users}
    if self.num_items:
      out.update(target_item=self.num_items, hist_items=self.num_items)
    if self.num_cates:
      out.update(target_cate=self.num_cates, hist_cates=self.num_cates)
    return out


def _first_bad(mask: np.ndarray) -> tuple[int, ...]:
  return tuple(int(i) for i in np.argwhere(mask)[0])


def validate_arrays(arrays: Mapping[str, np.ndarray], spec: DataSpec, source: str,
                    allow_empty_history: bool = True, history: bool = True) -> None:
  """Checks ids, masks, NaNs and shapes; raises DataError naming field, value and row.

  Args:
    arrays: a split or batch following the batch contract.
    spec: vocabulary sizes and shapes to check against.
    source: where the data came from (e.g. "synthetic/train", a file path), for messages.
    allow_empty_history: if False, a row whose hist_mask is all False is an error.
    history: False for stored rows whose histories are cut at batch time (data/store.py
      checks their behaviour ranges instead): hist_* fields are then not required.
  """
  n = None
  for key, arr in arrays.items():
    if n is None:
      n = len(arr)
    elif len(arr) != n:
      raise DataError(f'{source}: field {key!r} has {len(arr)} rows, expected {n} '
                      f'(rows of every field must match)')
  required = ['user_id', 'hist_mask'] if spec.num_items and history else ['user_id']
  if spec.num_items:
    required += ['target_item', 'hist_items'] if history else ['target_item']
  for key in required:
    if key not in arrays:
      raise DataError(f'{source}: required field {key!r} is missing (have {sorted(arrays)})')
  for key, vocab in spec.id_fields().items():
    if key not in arrays:
      continue
    arr = np.asarray(arrays[key])
    if not np.issubdtype(arr.dtype, np.integer):
      raise DataError(f'{source}: field {key!r} must hold integer ids, got dtype {arr.dtype}')
    bad = (arr < 0) | (arr >= vocab)
    if bad.any():
      idx = _first_bad(bad)
      raise DataError(
          f'{source}: field {key!r} has id {int(arr[idx])} at row {idx[0]}'
          + (f' position {idx[1]}' if len(idx) > 1 else '')
          + f', outside the vocabulary [0, {vocab}) ({int(bad.sum())} bad values in total)')
  if 'hist_mask' in arrays:
    mask = np.asarray(arrays['hist_mask'])
    if mask.dtype != np.bool_:
      raise DataError(f'{source}: field hist_mask must be bool, got {mask.dtype}')
    if mask.ndim != 2 or mask.shape[1] != spec.max_len:
      raise DataError(f'{source}: field hist_mask has shape {mask.shape}, expected '
                      f'[rows, {spec.max_len}] (max_len)')
    if not allow_empty_history:
      empty = ~mask.any(axis=1)
      if empty.any():
        raise DataError(f'{source}: row {int(np.argmax(empty))} has an empty history '
                        f'({int(empty.sum())} such rows); set data.allow_empty_history=True '
                        'to accept them')
  if 'sparse' in arrays:
    sp = np.asarray(arrays['sparse'])
    if sp.ndim != 2 or sp.shape[1] != len(spec.sparse):
      raise DataError(f'{source}: field sparse has shape {sp.shape}, expected '
                      f'[rows, {len(spec.sparse)}]')
    for j, f in enumerate(spec.sparse):
      bad = (sp[:, j] < 0) | (sp[:, j] >= f.vocab_size)
      if bad.any():
        r = int(np.argmax(bad))
        raise DataError(f'{source}: sparse field {f.name!r} has id {int(sp[r, j])} at row {r}, '
                        f'outside the vocabulary [0, {f.vocab_size})')
  for key in ('dense', 'label', 'labels', 'weight'):
    if key in arrays:
      arr = np.asarray(arrays[key], dtype=np.float64)
      bad = ~np.isfinite(arr)
      if bad.any():
        idx = _first_bad(bad)
        raise DataError(f'{source}: field {key!r} has non-finite value {arr[idx]} at row '
                        f'{idx[0]}' + (f' column {idx[1]}' if len(idx) > 1 else '')
                        + f' ({int(bad.sum())} in total)')
  if 'dense' in arrays and np.asarray(arrays['dense']).shape[1:] != (spec.dense_dim,):
    raise DataError(f'{source}: field dense has shape {np.shape(arrays["dense"])}, expected '
                    f'[rows, {spec.dense_dim}]')
  labels = arrays.get('labels', arrays.get('label'))
  if labels is None:
    raise DataError(f'{source}: no label field (need "label" [B] or "labels" [B, T])')
  labels = np.asarray(labels).reshape(len(labels), -1)
  if labels.shape[1] != len(spec.tasks):
    raise DataError(f'{source}: labels have {labels.shape[1]} columns, tasks are '
                    f'{[t.name for t in spec.tasks]}')
  for j, task in enumerate(spec.tasks):
    y = labels[:, j]
    bad, allowed = None, ''
    if task.kind == 'binary':
      bad, allowed = (y != 0) & (y != 1), 'must be 0 or 1'
    elif task.kind == 'watch_time':
      bad, allowed = y < 0, 'a watch time must be >= 0'
    elif task.kind == 'completion_rate':
      bad, allowed = (y < 0) | (y > 1), 'a completion rate must be in [0, 1]'
    elif task.kind not in TASK_KINDS:
      raise DataError(f'{source}: task {task.name!r} has unknown kind {task.kind!r}; '
                      f'choose from {TASK_KINDS}')
    if bad is not None and bad.any():
      r = int(np.argmax(bad))
      raise DataError(f'{source}: {task.kind} task {task.name!r} has label {y[r]} at row {r}'
                      f' ({allowed})')


def labels_2d(batch: Mapping[str, np.ndarray]):
  """Returns labels as [B, T] whether the batch holds 'label' [B] or 'labels' [B, T]."""
  if 'labels' in batch:
    return batch['labels']
  return batch['label'][:, None]


def task_names(tasks: Sequence[Task]) -> list[str]:
  return [t.name for t in tasks]
