"""The task interface: what a model family supplies to the training loop (train.py).

A task owns the model and what "fit" and "good" mean for it:

  init        variables of one run from an rng key and a sample batch
  loss        the scalar minimised on one batch, per row or listwise (it sees the whole batch)
  evaluate    the metrics of one split for every run of a program, host side (it may run any
              per-run function over any split or catalogue through the loop's `Evaluator`)
  selection   the valid metric that selects the best state, and its direction
  prepare_batch  (optional) a host-side, per-run change to a train batch (e.g. negatives drawn
              from a per-run generator seeded by (seed, step)), run in the read-ahead thread

The loop owns the rest, the same for every task: rng folding (one key per run, folded with
the step), the optimiser (optax, per-run hyper-parameters in its state), gradients and the
cross-device mean (pmap), masking of stopped or diverged runs, checkpoints, resume, warm
starts, selection bookkeeping, early stopping, metric writers and the progress bar.

Every program is a group of S >= 1 runs. A task never sees the run axis: `init` and `loss`
are per run (the loop applies them under jax.vmap for S > 1, on the squeezed state for
S = 1), and `evaluate` gets the stacked [S, ...] variables only to hand them back to the
`Evaluator`, which maps a per-run function over the runs and a split.

Tasks: seqrec_jax/tasks/ranking.py (per-row losses of today's ranking models, metrics from
evaluate.split_metrics), seqrec_jax/tasks/two_tower.py (listwise retrieval, recall@K over the
catalogue). seqrec_jax/tasks/__init__.py builds the one a config names.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Protocol

import jax

# {'params': ..., 'batch_stats': ...} (and any other non-trainable collections the model
# keeps, e.g. Dice/BatchNorm moving statistics); one run's, or S runs' stacked on axis 0.
Variables = Mapping[str, Any]
# {feature name: [B, ...] array}: one run's batch (host numpy or device arrays).
Batch = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Selection:
  """The validation metric that selects each run's best state and drives early stopping."""
  metric: str                 # a key of evaluate(..., 'valid')'s dicts, e.g. 'eval/valid/auc'
  higher_is_better: bool      # auc/gauc/recall: True; logloss/mse: False


class LossOutput(NamedTuple):
  """What `Task.loss` returns for one run's batch (traced: inside jit, vmap, grad)."""
  loss: jax.Array             # [] float32: the scalar minimised (task terms + penalties)
  batch_stats: Any            # the new non-trainable collections (the input's if none change)
  metrics: dict[str, jax.Array]   # [] scalars, logged as train/<name> ('loss' and 'grad_norm'
                                  # are added by the loop; do not return them)


class Evaluator(Protocol):
  """The loop's device side of evaluation, handed to `Task.evaluate`."""

  num_runs: int                     # S: the runs of the program (1 for a single run)
  process_index: int                # this process (jax.process_index()); 0 of 1 on one host

  def outputs(self, fn: Callable[[Variables, Batch], Any], variables: Variables, split,
              batch_size: int | None = None) -> Any:
    """Applies fn to every row of `split` for every run; returns host numpy arrays.

    fn(run_variables, batch) -> a pytree of [B, ...] arrays: one run's variables (no run
      axis) and a batch of rows of `split`; pure and traceable (the loop compiles it once per
      fn object, vmaps it over the runs and shards the batch over the mesh's data axis; keep
      the same fn object across calls to reuse the compilation).
    variables: the stacked [S, ...] variables `evaluate` received.
    split: anything with len() and __getitems__(indices) -> {name: [n, ...] array} (a dataset
      split, or e.g. a catalogue of items); read in order, the last batch padded.
    batch_size: rows per (global) batch; default config.data.eval_batch_size.
    Returns the pytree of fn's outputs as numpy arrays [S, len(split), ...], on every process
    (padding rows dropped)."""
    ...


class Task(abc.ABC):
  """One model family on the training loop. Built by tasks.build(config, ds) with the run's
  config (config.model, config.train, ...) and data.Dataset (spec, splits, info)."""

  name: str = ''              # the registry name (tasks/__init__.py), e.g. 'ranking'

  @abc.abstractmethod
  def init(self, rng: jax.Array, batch: Batch) -> dict[str, Any]:
    """Variables of one run: {'params': ..., 'batch_stats': ... (may be {})}.

    rng: the run's init key (a new-style jax.random.key); batch: a sample train batch [2, ...]
    (zeros of the train split's dtypes and shapes). Pure and traceable: the loop calls it
    under jax.eval_shape (the state's shapes) and jit."""

  @abc.abstractmethod
  def loss(self, variables: Variables, batch: Batch, rng: jax.Array,
           hparams: Mapping[str, jax.Array]) -> LossOutput:
    """The training loss of one run on one batch (train mode: dropout on, statistics updated).

    variables: {'params': the params being differentiated, 'batch_stats': ...}.
    batch: one run's batch [B, ...] (B: this device's rows under pmap; the global batch under
      jit). The loss may couple the rows (listwise: in-batch softmax and the like).
    rng: this run's dropout/noise key for this step (already folded with the step).
    hparams: this run's traced per-run values of the task's varied keys (multirun.VARY_KEYS,
      e.g. 'dropout_keep', 'mba_lambda', 'loss_weights'), {} when nothing varies; the
      optimiser's own hyper-parameters are not here (they live in the optimiser state).
    Pure and traceable; a non-finite loss is handled by the loop (update skipped, run masked
    as diverged)."""

  @abc.abstractmethod
  def evaluate(self, ev: Evaluator, variables: Variables, split: str,
               save_to: str | None = None) -> list[dict[str, float]]:
    """Metrics of every run on the whole split `split` ('valid' or 'test'): S dicts of
    {f'eval/{split}/<metric>': float} (the same keys in each), in run order.

    variables: the stacked [S, ...] eval variables ({'params', 'batch_stats'}); hand them to
      ev.outputs with a per-run function (predictions of the rows, a catalogue's item
      vectors, ...). Host-side maths (AUC, recall@K over the whole catalogue) is the task's.
    save_to: a workdir where the task may save the split's predictions (config
      train.save_predictions; ranking: evaluate.save_predictions), or None.
    Runs on every process; every process must return the same values."""

  @abc.abstractmethod
  def selection(self) -> Selection:
    """The metric (a key of evaluate(..., 'valid')) and direction selecting the best state
    (from config.train.select_metric / select_task where the task has several)."""

  def prepare_batch(self, batch: Batch, *, seed: int, step: int) -> Batch:
    """Host side, per run, in the read-ahead thread: run `seed`'s train batch of `step`
    (this process's rows, numpy) -> the batch `loss` receives. Must be a pure function of
    (batch, seed, step) so a resumed run reads the same batches. Default: unchanged.
    (Device-resident train splits (data/device_split.py) are used only by tasks that keep
    this default.)"""
    del seed, step
    return batch
