"""The MMoE paper's synthetic experiment with the paper's protocol (Ma et al., KDD'18, Sec.
3.2-3.3 and 5.1; Figures 3-5): does every model get worse as the two tasks' correlation falls,
and do the mixtures of experts (OMoE, MMoE) suffer less than a shared bottom? Along training,
as the paper's figures show it, and at the end.

  bash launch.sh mmoe_paper                            # default: 50 runs per (model, corr.)
  python -m experiments.mmoe_paper --data_seeds=1      # timing preset: 10 runs per cell
  python -m experiments.mmoe_paper --full              # 200 runs per cell, as the paper

Protocol
  Data: data/mmoe_synthetic.py (Sec. 3.2; c, m, alpha_i, beta_i, noise pinned and documented
    there): d = 100, 200k train / 50k valid / 20k test rows per data seed, correlations 0.5,
    0.8, 0.9, 1.0.
  Models: shared_bottom_16 (Fig. 3: one 16-unit bottom layer), shared_bottom (Fig. 4: 113
    units, the paper's parameter match of the experts), omoe and mmoe (8 one-layer experts of 16
    units); towers of 8 units per task; ReLU; gates softmax(W x) without bias (eq. 8,
    model.gate_bias=False).
  Training: Adam at its default rate 1e-3 (Sec. 3.3) for every model and correlation,
    constant, batch 128, 1562 steps = one pass over the 200k rows, so every step sees rows no
    earlier step saw (fresh samples each step). The final state is evaluated (no early
    stopping); the test MSE is also evaluated at 10 evenly spaced steps (`TestCurve`, a
    periodic action added to the loop's defaults; the last is the final step). Loss: sum of
    the two tasks' MSE; tables and curves show the mean over the two tasks.
  Second table, the learning rate selected on valid: per (model, correlation) from {1e-4,
    1e-3, 1e-2} by the mean valid MSE of a selection phase (1 data seed x 5 init seeds per
    rate, seeds disjoint from the reported runs); a choice on the grid's edge extends the grid
    x10 that way and reruns, up to 2 times (stats.select_on_grids; select.md marks a rate
    still at an edge). Only the selection runs are made (select.md), not reported runs at the
    selected rates.
  Runs: data seeds x init seeds (default 5 x 10 = 50 per cell). A data seed is one dataset
    (u1, u2, x, noise), shared by the runs of one multi-run group; the same (data seed, init
    seed) gives the same dataset and seed in every cell, so runs are paired across models and
    correlations. Runs that share a dataset are not independent, so 95% CIs are t-intervals
    over the data seeds' means (each the mean of its init seeds) and differences are paired by
    data seed. The test set is 20k rows (not 50k) because the test-row bootstrap resamples
    every (data seed, correlation) test set apart for each comparison (160 sets of 2000
    draws at 5 data seeds).
Outputs (a study spec, experiments/study.py; --outdir, default runs/mmoe_paper): cells.csv
(with the curve columns test@<step>/mean/mse), bootstrap.csv, meta.json, table.md/.csv (the
final test MSE per model and correlation, the paper's three findings under it; findings 1 and
3 are Holm families over data seeds with the test-row bootstrap: resolved_correlation.md,
resolved_moe.md), curve.md/.csv (test MSE per model, correlation and step), curve_findings.md
(the findings at every step; Holm families curve_correlation.md, curve_moe.md, seed intervals
only), select.md/.csv, fig3_shared_bottom.png, fig4_test_curves.png, fig5_final_loss.png; a
default run copies them to docs/results/mmoe_paper/ (shown by docs/mmoe_paper.md; `python -m
experiments.recheck mmoe_paper`). Resumable: finished cells are skipped.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Sequence

from absl import app, flags
import numpy as np

from experiments import mmoe_paper_report as report
from experiments import stats, study, sweep
from seqrec_jax import (checkpoint, metric_writers, periodic, platform_defaults, train,
                        workdir as workdir_lib, xla_cpu)

FLAGS = flags.FLAGS
CONFIG = 'seqrec_jax/configs/multitask.py:mmoe_synthetic'
NAME = 'mmoe_paper'
# Model name -> overrides. Parameter match (Sec. 5.1): 8 x 16 experts on d = 100 inputs and two
# towers of 8 hold 100*16*8 + 16*8*2 = 13056 weights; 13056 / (100 + 8*2) ~ 113 bottom units.
MODELS = {
    'shared_bottom_16': {'model.name': 'shared_bottom', 'model.bottom_hidden': (16,)},
    'shared_bottom': {'model.name': 'shared_bottom', 'model.bottom_hidden': (113,)},
    'omoe': {'model.name': 'omoe'},
    'mmoe': {'model.name': 'mmoe'},
}
SELECT_DATA_SEED0 = 1000           # selection datasets: 1000, 1001, ...; reported: 0, 1, ...
RESULT_FILES = ('cells.csv', 'bootstrap.csv', 'meta.json', 'table.md', 'table.csv', 'select.md',
                'select.csv', 'resolved_correlation.md', 'resolved_moe.md', 'curve.md',
                'curve.csv', 'curve_findings.md', 'curve_findings.csv', 'curve_correlation.md',
                'curve_moe.md', 'fig3_shared_bottom.png', 'fig4_test_curves.png',
                'fig5_final_loss.png')


@dataclasses.dataclass(frozen=True)
class Protocol:
  correlations: tuple = (0.5, 0.8, 0.9, 1.0)
  models: tuple = tuple(MODELS)
  lr: float = 1e-3                 # the reported runs: Adam's default (Sec. 3.3)
  lrs: tuple = (1e-4, 1e-3, 1e-2)  # the selection table's grid
  lr_extensions: int = 2           # an lr chosen on the grid's edge: extend x10 that way
  data_seeds: int = 5
  seeds: int = 10                  # init seeds per data seed
  select_data_seeds: int = 1
  select_seeds: int = 5
  num_train: int = 200_000
  num_valid: int = 50_000
  num_test: int = 20_000          # the test-row bootstrap's cost grows with it (module doc)
  batch_size: int = 128
  num_steps: int = -1              # -1: one pass over the train rows
  log_points: int = 60             # training-loss records per run (metrics.jsonl)
  curve_points: int = 10           # test-MSE evaluations per reported run (the curves)

  @property
  def steps(self) -> int:
    return self.num_steps if self.num_steps > 0 else self.num_train // self.batch_size

  @property
  def curve_steps(self) -> tuple[int, ...]:
    return curve_steps(self.steps, self.curve_points)


def curve_steps(steps: int, points: int) -> tuple[int, ...]:
  """The steps whose test MSE the curves show: `points` evenly spaced, the last one the final
  step (so the curve's last point is the table's final test MSE)."""
  n = min(points, steps)
  if n <= 0:
    return ()
  return tuple(sorted({round(steps * k / n) for k in range(1, n + 1)}))


class TestCurve(periodic.PeriodicAction):
  """Every run's test metrics at the given steps -> metrics.jsonl as 'curve/test/...' lines.
  Nothing is selected on them: the valid evaluation (selection) keeps its own cadence."""

  def __init__(self, steps: Sequence[int]):
    super().__init__((), on_last=False)
    self.steps = frozenset(steps)

  def due(self, step: int, last: bool) -> bool:
    return step in self.steps

  def run(self, ctx):
    for s, res in enumerate(ctx.prog.evaluate(ctx.state, 'test')):
      ctx.writer.write({'step': ctx.step, **ctx.prog.run_field(s),
                        **{k.replace('eval/', 'curve/', 1): v for k, v in res.items()
                           if k.endswith('/mse')}})


def curve_trainer(points: int):
  """train.train_and_evaluate with a TestCurve action at curve_steps(num_steps, points) added
  to the loop's default actions (periodic.py: a new action, the loop not edited)."""
  @workdir_lib.guard
  def train_fn(config, workdir: str, dataset=None):
    config = platform_defaults.resolve(config)
    os.makedirs(workdir, exist_ok=True)
    prog = train.build_program(config, dataset)
    with checkpoint.Checkpointer(workdir, config.train.keep_checkpoints,
                                 prog.fingerprint) as ckpt:
      state, ps = train.init_or_restore(prog, ckpt, workdir)
      writer = metric_writers.MetricsWriter(workdir, ps.step, hparams=config)
      actions = train.default_actions(prog, ps) + [
          TestCurve(curve_steps(prog.total_steps, points))]
      state = train.train_loop(prog, state, ps, ckpt, writer, actions)
      return train.final_report(prog, state, ps, ckpt, writer, workdir)
  return train_fn


def define_flags():
  """Defined only when run as a script (see sweep.define_study_flags)."""
  sweep.define_study_flags(10, 'Init seeds per data seed (runs per cell: --data_seeds x this).',
                           'runs/mmoe_paper', "The paper's 200 runs per cell (20 data seeds).",
                           'one pass over the 200k train rows at batch 128: 1562')
  flags.DEFINE_integer('data_seeds', 5, 'Datasets per (model, correlation) for the reported '
                       'runs (each a multi-run group of --seeds runs).')
  flags.DEFINE_integer('select_data_seeds', 1, 'Datasets of the learning-rate selection phase.')
  flags.DEFINE_integer('select_seeds', 5, 'Init seeds per selection dataset and learning rate.')
  flags.adopt_module_key_flags(sweep)     # list them under this script's --help


def run_seed(data_seed: int, i: int) -> int:
  """The seed (init, data order) of init seed i on a data seed: distinct for every run and the
  same in every cell, so runs pair across models and correlations."""
  return 1000 * data_seed + i


def base_overrides(p: Protocol) -> dict:
  steps = p.steps
  return {
      'model.experts': 8, 'model.expert_hidden': (16,), 'model.tower_hidden': (8,),
      'model.activation': 'relu', 'model.gate_bias': False,
      'data.mmoe_synthetic.num_train': p.num_train, 'data.mmoe_synthetic.num_valid': p.num_valid,
      'data.mmoe_synthetic.num_test': p.num_test, 'data.batch_size': p.batch_size,
      'data.eval_batch_size': min(10_000, p.num_valid, p.num_test),
      'optim.name': 'adam', 'optim.schedule': 'constant', 'train.num_steps': steps,
      'train.eval_every': steps, 'train.log_every': max(steps // p.log_points, 1),
      'train.checkpoint_every': 10**9, 'train.patience': -1, 'train.select_metric': 'mse',
      'train.select_task': 'mean', 'train.progress': False}


def _cell(p, phase, model, corr, data_seed, i, lr, extra_group=()):
  group = {'phase': phase, 'model': model, 'correlation': corr, **dict(extra_group)}
  return sweep.Cell(group=group, seed=run_seed(data_seed, i), overrides={
      **base_overrides(p), **MODELS[model], 'data.mmoe_synthetic.correlation': corr,
      'data.mmoe_synthetic.seed': data_seed, 'optim.learning_rate': lr,
      # The reported runs' test predictions: the bootstrap over test rows (~1 MB a run).
      'train.save_predictions': phase == 'report'})


def select_cells(p: Protocol, todo: dict | None = None) -> list[sweep.Cell]:
  """Learning-rate selection: every rate (todo: {(model, corr.): rates}, default the grid) on
  select_data_seeds x select_seeds runs. Models are the inner loop so consecutive jobs reuse
  one generated dataset (data/__init__.py caches)."""
  todo = todo or {(m, c): p.lrs for c in p.correlations for m in p.models}
  return [_cell(p, 'select', m, c, SELECT_DATA_SEED0 + d, i, lr, {'lr': lr})
          for c in p.correlations for d in range(p.select_data_seeds) for m in p.models
          if (m, c) in todo for i in range(p.select_seeds) for lr in todo[(m, c)]]


def mean_valid(records) -> dict[tuple, dict[float, float]]:
  """(model, correlation) -> lr -> mean valid MSE (a non-finite run counts as infinitely bad)."""
  scores: dict[tuple, dict[float, list]] = {}
  for r in records:
    g = r['group']
    v = r['summary'].get('eval/valid/mean/mse', float('nan'))
    scores.setdefault((g['model'], g['correlation']), {}).setdefault(g['lr'], []).append(
        v if np.isfinite(v) else np.inf)
  return {k: {lr: float(np.mean(v)) for lr, v in d.items()} for k, d in scores.items()}


def chosen_lrs(select_records) -> dict[tuple, float]:
  """(model, correlation) -> the rate with the lowest mean valid MSE."""
  return {k: min(d, key=d.get) for k, d in mean_valid(select_records).items()}


def select(outdir: str, p: Protocol, runs_per_group: int) -> tuple[list, dict]:
  """Runs the selection phase, extending an edge choice's grid x10 that way up to
  p.lr_extensions times (stats.select_on_grids). Returns (every selection record, choices)."""
  records = []

  def score(todo):
    recs, _ = sweep.run_study(CONFIG, select_cells(p, todo), outdir, p.seeds,
                              runs_per_group=runs_per_group)
    records.extend(recs)
    got = mean_valid(recs)
    return {k: {lr: got[k][lr] for lr in v} for k, v in todo.items()}

  choice = stats.select_on_grids({(m, c): p.lrs for c in p.correlations for m in p.models},
                                 score, higher_better=False, cap=p.lr_extensions)
  return records, choice


def report_cells(p: Protocol) -> list[sweep.Cell]:
  """The reported runs: every (model, correlation) at the paper's rate p.lr."""
  return [_cell(p, 'report', m, c, d, i, p.lr)
          for c in p.correlations for d in range(p.data_seeds) for m in p.models
          for i in range(p.seeds)]


def meta_of(p: Protocol, timing: dict):
  """meta.json: the protocol and the timing the table's notes print."""
  def meta(records, dataset):
    del records, dataset
    return {'num_test': p.num_test, 'num_train': p.num_train, 'steps': p.steps,
            'batch_size': p.batch_size, 'data_seeds': p.data_seeds, 'seeds': p.seeds,
            'lr': p.lr, 'lrs': list(p.lrs), 'lr_extensions': p.lr_extensions,
            'select_data_seeds': p.select_data_seeds, 'select_seeds': p.select_seeds,
            'curve_steps': list(p.curve_steps), **timing}
  return meta


def spec(p: Protocol | None = None, timing: dict | None = None) -> study.Study:
  metrics = report.METRICS + (tuple(report.curve_metric(s) for s in p.curve_steps) if p else ())
  return study.Study(NAME, metrics, report.tables, report.families,
                     ('y1', 'y2'), report.figures, report.enrich,
                     meta_of(p, timing or {}) if p else None)


STUDY = spec()


def run(outdir: str, p: Protocol, runs_per_group: int,
        publish_to: str | None = None) -> tuple[str, float]:
  """The reported runs (with their test-MSE curves), then the selection phase; the tables,
  findings and figures. Returns (table.md text, wall s)."""
  load0, t0 = os.getloadavg(), time.time()
  sweep.use_compilation_cache(outdir)
  rep = sweep.run_sweep(CONFIG, report_cells(p), outdir, train_fn=curve_trainer(p.curve_points),
                        runs_per_group=runs_per_group)
  wall_rep = time.time() - t0
  t_sel = time.time()
  sel, _ = select(outdir, p, runs_per_group)
  wall_sel = time.time() - t_sel
  wall = time.time() - t0
  timing = {'wall': wall, 'select_wall': wall_sel, 'report_wall': wall_rep,
            'load_start': load0[0], 'load_end': os.getloadavg()[0],
            'runs_per_group': runs_per_group}
  study.study_main(spec(p, timing), rep + sel, outdir, publish_to=publish_to)
  with open(os.path.join(outdir, 'table.md')) as f:
    return f.read(), wall


def main(argv):
  del argv
  xla_cpu.apply_defaults()  # CPU runtime defaults, before any JAX computation
  outdir = FLAGS.outdir or os.path.join('runs', NAME)
  p = Protocol(data_seeds=20 if FLAGS.full else FLAGS.data_seeds, seeds=FLAGS.seeds,
               select_data_seeds=FLAGS.select_data_seeds, select_seeds=FLAGS.select_seeds,
               num_steps=FLAGS.num_steps)
  if min(p.data_seeds, p.seeds, p.select_data_seeds, p.select_seeds) < 1:
    raise app.UsageError('--data_seeds, --seeds, --select_data_seeds and --select_seeds must '
                         f'be >= 1 (got {p.data_seeds}, {p.seeds}, {p.select_data_seeds}, '
                         f'{p.select_seeds})')
  _, wall = run(outdir, p, FLAGS.runs_per_group,
                NAME if sweep.publishes() and p == Protocol() else None)
  print(f'{wall / 60:.1f} min')


if __name__ == '__main__':
  define_flags()
  app.run(main)
