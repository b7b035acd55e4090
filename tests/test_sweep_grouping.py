"""experiments/sweep.py groups cells into multi-run jobs (no training: fake engines)."""
from __future__ import annotations

import json
import os

import pytest

from experiments import sweep
from seqrec_jax.configs import default, load_config

SPEC = 'seqrec_jax/configs/test.py'
LR = 'optim.learning_rate'


@pytest.fixture(autouse=True)
def vary_keys(monkeypatch):
  """The engine's vectorisable keys as the contract names them (learning rate, weight decay,
  dropout), so these tests pin the sweep's behaviour whatever else the engine adds."""
  monkeypatch.setattr(sweep, 'vectorisable_keys',
                      lambda: (LR, 'optim.weight_decay', 'model.dropout'))


def _vary(cfg) -> dict:
  v = cfg.train.vary
  return json.loads(v) if v else {}


def _one(seed: int, lr: float, hidden) -> dict:
  auc = 0.6 + 0.001 * seed + lr + 0.01 * len(hidden)
  return {'seed': seed, 'eval/test/auc': auc, 'eval/valid/auc': auc - 0.01, 'steps': 10}


class FakeEngine:
  """train_and_evaluate's contract: a group is run_seeds x vary points, seeds outer; each run
  writes metrics.jsonl lines with its 'run'."""

  def __init__(self):
    self.calls = []

  def __call__(self, cfg, workdir):
    seeds, vary = tuple(cfg.train.run_seeds), _vary(cfg)
    self.calls.append((workdir, seeds, vary))
    if not seeds:
      with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
        f.write(json.dumps({'step': 5, 'train/loss': float(cfg.seed)}) + '\n')
      return _one(cfg.seed, cfg.optim.learning_rate, cfg.model.hidden)
    n = len(next(iter(vary.values()))) if vary else 1
    points = [{k: v[j] for k, v in vary.items()} for j in range(n)]
    runs = []
    for s in seeds:
      for p in points:
        lr = p.get(LR, cfg.optim.learning_rate)
        runs.append(dict(_one(s, lr, cfg.model.hidden), run=len(runs), hparams=p))
    with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
      for r in runs:
        f.write(json.dumps({'step': 5, 'train/loss': float(r['seed']), 'run': r['run']}) + '\n')
    return {'runs': runs}


def _json(x):
  return json.loads(json.dumps(x, sort_keys=True, default=str))


def _cells(seeds, lrs=(1e-3,), hidden=((8,),)):
  return [sweep.Cell({'lr': lr, 'hidden': str(h)}, {LR: lr, 'model.hidden': h}, s)
          for h in hidden for lr in lrs for s in seeds]


def _configs(cells):
  return [json.loads(json.dumps(load_config(SPEC, dict(c.overrides, seed=c.seed)).to_dict()))
          for c in cells]


def test_plan_groups_seeds_and_vary_points_not_shapes_and_caps_runs():
  cells = _cells(range(3), lrs=(1e-3, 1e-2), hidden=((8,), (16,)))
  jobs = sweep.plan_jobs([c.seed for c in cells], _configs(cells), 100, sweep.vectorisable_keys())
  # model.hidden changes shapes: two jobs of 3 seeds x 2 learning rates, seeds outer.
  assert [(j.seeds, [p[LR] for p in j.points]) for j in jobs] == [((0, 1, 2), [1e-3, 1e-2])] * 2
  assert [(cells[i].seed, cells[i].overrides[LR]) for i in jobs[0].cells] == [
      (0, 1e-3), (0, 1e-2), (1, 1e-3), (1, 1e-2), (2, 1e-3), (2, 1e-2)]
  assert all(cells[i].overrides['model.hidden'] == (16,) for i in jobs[1].cells)
  # Cap 4 < 3 seeds x 2 points: one point per job; cap 2 < 3 seeds: seed chunks 2 + 1.
  capped = sweep.plan_jobs([c.seed for c in cells[:6]], _configs(cells[:6]), 4, (LR,))
  assert [(j.seeds, len(j.points)) for j in capped] == [((0, 1, 2), 1)] * 2
  capped = sweep.plan_jobs([c.seed for c in cells[:3]], _configs(cells[:3]), 2, (LR,))
  assert [j.seeds for j in capped] == [(0, 1), (2,)] and capped[1].points == [{}]
  # Without vectorisable keys a learning rate is a shape-like difference; cap 1: all alone.
  assert len(sweep.plan_jobs([c.seed for c in cells[:6]], _configs(cells[:6]), 8, ())) == 2
  assert len(sweep.plan_jobs([c.seed for c in cells], _configs(cells), 1, (LR,))) == 12


def test_plan_keeps_duplicates_and_ragged_seed_lists_apart():
  cells = _cells(range(2), lrs=(1e-3,)) + _cells([0], lrs=(1e-2,)) + _cells([0], lrs=(1e-3,))
  jobs = sweep.plan_jobs([c.seed for c in cells], _configs(cells), 8, (LR,))
  # lr 1e-3 has seeds (0, 1), lr 1e-2 only (0,): not one rectangle; the repeated
  # (seed 0, lr 1e-3) cell cannot share a job with its twin.
  assert sorted((j.seeds, len(j.points)) for j in jobs) == [((0,), 1), ((0,), 1), ((0, 1), 1)]
  assert sorted(i for j in jobs for i in j.cells) == list(range(4))


def test_plan_varies_one_key_per_job_when_several_vary():
  cells = [sweep.Cell({}, {LR: lr, 'optim.weight_decay': wd}, s)
           for lr in (1e-3, 1e-2) for wd in (0.0, 0.1, 0.2) for s in (0, 1)]
  jobs = sweep.plan_jobs([c.seed for c in cells], _configs(cells), 100, (LR, 'optim.weight_decay'))
  # The engine crosses keys; the sweep keeps the first (sorted) key fixed within a job.
  assert [(j.seeds, j.points) for j in jobs] == [
      ((0, 1), [{'optim.weight_decay': wd} for wd in (0.0, 0.1, 0.2)])] * 2
  assert {cells[i].overrides[LR] for i in jobs[1].cells} == {1e-2}


def test_grouped_records_match_single_run_records(tmp_path):
  cells = _cells(range(3), lrs=(1e-3, 1e-2))
  single, grouped = FakeEngine(), FakeEngine()
  a = sweep.run_sweep(SPEC, cells, str(tmp_path / 'a'), single, log=lambda _: None)
  b = sweep.run_sweep(SPEC, cells, str(tmp_path / 'b'), grouped, log=lambda _: None,
                      runs_per_group=6)
  assert len(single.calls) == 6 and len(grouped.calls) == 1
  workdir, seeds, vary = grouped.calls[0]
  assert seeds == (0, 1, 2) and vary == {LR: [1e-3, 1e-2]}
  for ra, rb in zip(a, b):
    assert set(rb) - set(ra) == {'group_command', 'group_wall_seconds'}
    assert (ra['run'], rb['workdir']) == (None, workdir)
    for k in ('id', 'group', 'seed', 'overrides', 'summary', 'config'):
      assert ra[k] == rb[k], k
    assert ra['command'].replace(str(tmp_path / 'a'), '') == (
        rb['command'].replace(str(tmp_path / 'b'), ''))
    assert json.load(open(tmp_path / 'b' / 'cells' / f'{rb["id"]}.json'))['run'] == rb['run']
  assert [r['run'] for r in b] == [0, 2, 4, 1, 3, 5]   # cells lr-major, runs seed-major
  assert "--config.train.run_seeds='(0,1,2)'" in b[0]['group_command'] or (
      '--config.train.run_seeds=(0,1,2)' in b[0]['group_command'])
  # Each cell reads its own run's lines of the group's metrics.jsonl.
  assert [[m['train/loss'] for m in sweep.cell_metrics(r, str(tmp_path / 'b'))] for r in b] == (
      [[float(r['seed'])] for r in b])
  assert [[m['train/loss'] for m in sweep.cell_metrics(r, str(tmp_path / 'a'))] for r in a] == (
      [[float(r['seed'])] for r in a])


def test_rerun_trains_only_missing_cells(tmp_path):
  out = str(tmp_path)
  eng = FakeEngine()
  first = sweep.run_sweep(SPEC, _cells(range(3)), out, eng, log=lambda _: None, runs_per_group=8)
  assert [c[1] for c in eng.calls] == [(0, 1, 2)]
  # Two more seeds: only they train, as one new group; finished cells are read back.
  eng.calls.clear()
  more = sweep.run_sweep(SPEC, _cells(range(5)), out, eng, log=lambda _: None, runs_per_group=8)
  assert [c[1] for c in eng.calls] == [(3, 4)]
  assert _json(more[:3]) == _json(first)
  # A lost record: that cell alone reruns, as a single run in its own workdir.
  os.remove(os.path.join(out, 'cells', f'{first[1]["id"]}.json'))
  eng.calls.clear()
  again = sweep.run_sweep(SPEC, _cells(range(5)), out, eng, log=lambda _: None, runs_per_group=8)
  assert eng.calls == [(os.path.join(out, 'work', first[1]['id']), (), {})]
  assert again[1]['summary'] == first[1]['summary'] and again[1]['run'] is None


def test_killed_group_resumes_in_its_workdir(tmp_path):
  out, eng = str(tmp_path), FakeEngine()
  seen = []

  def killed(cfg, workdir):
    seen.append(sorted(os.listdir(workdir)))
    with open(os.path.join(workdir, 'checkpoint'), 'w') as f:
      f.write('step 5')
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    sweep.run_sweep(SPEC, _cells(range(3)), out, killed, log=lambda _: None, runs_per_group=8)

  def resumed(cfg, workdir):
    seen.append(sorted(os.listdir(workdir)))
    return eng(cfg, workdir)
  recs = sweep.run_sweep(SPEC, _cells(range(3)), out, resumed, log=lambda _: None,
                         runs_per_group=8)
  assert seen == [['sweep_config.json'], ['checkpoint', 'sweep_config.json']]
  assert {r['workdir'] for r in recs} == {eng.calls[0][0]}


def test_stale_grouped_cells_rerun(tmp_path, monkeypatch):
  out, eng = str(tmp_path), FakeEngine()
  sweep.run_sweep(SPEC, _cells(range(2)), out, eng, log=lambda _: None, runs_per_group=8)
  orig = default.get_config

  def changed():
    c = orig()
    c.model.dice_eps = 1e-5
    return c
  monkeypatch.setattr(default, 'get_config', changed)
  logs = []
  recs = sweep.run_sweep(SPEC, _cells(range(2)), out, eng, log=logs.append, runs_per_group=8)
  assert len(eng.calls) == 2 and eng.calls[1][0] != eng.calls[0][0]
  assert all(r['config']['model']['dice_eps'] == 1e-5 for r in recs)
  assert sum('stale' in m for m in logs) == 2


def _drop_added_keys(out):
  """Rewrites the cell records as code from before train.init_from / train.trainable wrote them."""
  for name in os.listdir(os.path.join(out, 'cells')):
    path = os.path.join(out, 'cells', name)
    with open(path) as f:
      rec = json.load(f)
    del rec['config']['train']['init_from'], rec['config']['train']['trainable']
    del rec['checksum']            # that code wrote no checksum either (else: edited, rerun)
    with open(path, 'w') as f:
      json.dump(rec, f)


def test_cells_recorded_before_a_key_was_added_are_not_stale_at_its_old_value(tmp_path):
  out, eng = str(tmp_path), FakeEngine()
  sweep.run_sweep(SPEC, _cells(range(2)), out, eng, log=lambda _: None, runs_per_group=8)
  _drop_added_keys(out)
  logs = []
  recs = sweep.run_sweep(SPEC, _cells(range(2)), out, eng, log=logs.append, runs_per_group=8)
  assert len(eng.calls) == 1 and len(recs) == 2
  assert sum('skipped' in m for m in logs) == 2 and not any('stale' in m for m in logs)
  orig = default.get_config

  def embeddings_only():      # the added key away from its old value: a different experiment
    c = orig()
    c.train.trainable = 'embeddings'
    return c
  monkeypatch = pytest.MonkeyPatch()
  monkeypatch.setattr(default, 'get_config', embeddings_only)
  try:
    logs.clear()
    sweep.run_sweep(SPEC, _cells(range(2)), out, eng, log=logs.append, runs_per_group=8)
  finally:
    monkeypatch.undo()
  assert len(eng.calls) == 2 and sum('stale' in m for m in logs) == 2


def test_a_group_answer_that_does_not_match_the_job_is_an_error(tmp_path):
  def wrong(cfg, workdir):
    runs = FakeEngine()(cfg, workdir)['runs']
    return {'runs': runs[::-1]}
  with pytest.raises(ValueError, match='run 0 has seed 2'):
    sweep.run_sweep(SPEC, _cells(range(3)), str(tmp_path), wrong, log=lambda _: None,
                    runs_per_group=8)
  with pytest.raises(ValueError, match='returned no per-run summaries'):
    sweep.run_sweep(SPEC, _cells(range(3)), str(tmp_path / 'b'),
                    lambda c, w: {'eval/test/auc': 0.5}, log=lambda _: None, runs_per_group=8)


@pytest.mark.slow
def test_real_engine_grouped_sweep_equals_cell_by_cell(tmp_path, monkeypatch):
  """The sweep on seqrec_jax.train: 2 seeds x 2 learning rates as one job give the records
  (summaries within the engine's equivalence tolerance, curves per run) of four single runs."""
  from seqrec_jax import multirun  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sweep, 'vectorisable_keys', lambda: tuple(multirun.VARY_KEYS))
  # Padded histories: one compiled train and eval step per group size, not 2 + 2 packed
  # shapes (a packed group equals its single runs: test_multirun's
  # test_packed_group_equals_padded_group_and_its_single_runs).
  cells = [sweep.Cell({'lr': lr}, {LR: lr, 'model.name': 'base', 'data.pack_history': False}, s)
           for lr in (1e-3, 1e-2) for s in range(2)]
  single = sweep.run_sweep(SPEC, cells, str(tmp_path / 'a'), log=lambda _: None)
  logs = []
  grouped = sweep.run_sweep(SPEC, cells, str(tmp_path / 'b'), log=logs.append, runs_per_group=4)
  assert sum('4 runs as one program' in m for m in logs) == 1
  assert len({r['workdir'] for r in grouped}) == 1
  for a, b in zip(single, grouped):
    assert set(a['summary']) == set(b['summary'])
    for k in ('eval/test/auc', 'eval/test/logloss', 'eval/valid/auc'):
      assert b['summary'][k] == pytest.approx(a['summary'][k], abs=1e-4), (b['id'], k)
    curve = lambda r, out: [(m['step'], m['train/loss']) for m in sweep.cell_metrics(r, out)
                            if 'train/loss' in m]
    ca, cb = curve(a, str(tmp_path / 'a')), curve(b, str(tmp_path / 'b'))
    assert [s for s, _ in ca] == [s for s, _ in cb] and len(ca) == 4
    assert [l for _, l in cb] == pytest.approx([l for _, l in ca], rel=1e-5)


def test_benchmark_cases_are_the_studies_cells():
  """benchmarks/multirun.py (and the accelerator check) time the studies' own cells."""
  from benchmarks import multirun as bench  # pylint: disable=g-import-not-at-top
  want = {'mmoe_synthetic': ('mmoe', 100, 'eval/test/mean/mse'),
          'din_synthetic': ('din', 5, 'eval/test/auc')}
  for case in bench.CASES:
    spec, overrides, runs, metric = bench.case_setup(case)
    cfg = load_config(spec, dict(overrides, seed=0, **{'train.run_seeds': tuple(range(runs))}))
    assert (cfg.model.name, runs, metric) == want[case]
  assert load_config(*bench.case_setup('din_synthetic')[:2]).model.activation == 'dice'
  with pytest.raises(ValueError, match='unknown case'):
    bench.case_setup('dcn')
