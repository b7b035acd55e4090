"""experiments/mmoe_paper.py: the protocol's cells (pairing, seeds, lr selection), the findings'
verdicts on constructed results, and a tiny end-to-end run of the whole study (both phases
through the multi-run engine, table, CSV, figures, resume)."""
from __future__ import annotations

import csv
import functools
import importlib
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from experiments import mmoe_paper as mp
from experiments import mmoe_paper_report as rep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# seeds=3 = select_seeds x len(lrs): the report and selection phases' multi-run jobs have the
# same run count, so the selection phase reuses the report phase's compiled train steps.
TINY = mp.Protocol(correlations=(0.5, 1.0), data_seeds=2, seeds=3, select_data_seeds=1,
                   select_seeds=1, num_train=512, num_valid=256, num_test=256, batch_size=64,
                   num_steps=6, log_points=3, lr_extensions=0, curve_points=3)


def test_default_protocol_is_the_papers():
  p = mp.Protocol()
  assert p.correlations == (0.5, 0.8, 0.9, 1.0) and p.lrs == (1e-4, 1e-3, 1e-2)
  assert p.lr == 1e-3                                   # Adam's default (Sec. 3.3)
  assert p.data_seeds * p.seeds >= 50 and p.data_seeds >= 5 and p.num_train >= 200_000
  assert p.num_valid >= 50_000 and p.num_test >= 20_000
  assert p.steps * p.batch_size <= p.num_train          # one pass: fresh rows every step
  assert len(p.curve_steps) == 10 and p.curve_steps[-1] == p.steps
  base = mp.base_overrides(p)
  assert base['model.gate_bias'] is False and base['optim.name'] == 'adam'
  assert base['train.eval_every'] == p.steps             # the final state is the one reported
  assert {c.overrides['optim.learning_rate'] for c in mp.report_cells(p)} == {1e-3}
  assert mp.MODELS['shared_bottom']['model.bottom_hidden'] == (113,)
  assert mp.MODELS['shared_bottom_16']['model.bottom_hidden'] == (16,)
  assert base['model.experts'] == 8 and base['model.expert_hidden'] == (16,)
  assert base['model.tower_hidden'] == (8,)


def test_cells_pair_runs_and_keep_selection_apart():
  sel = mp.select_cells(TINY)
  assert len(sel) == 4 * 2 * 1 * 1 * 3
  cells = mp.report_cells(TINY)
  assert len(cells) == 4 * 2 * 2 * 3
  runs = {}
  for c in cells:
    key = (c.group['model'], c.group['correlation'])
    runs.setdefault(key, set()).add((c.overrides['data.mmoe_synthetic.seed'], c.seed))
  assert len({frozenset(v) for v in runs.values()}) == 1     # same runs in every cell
  assert all(len(v) == 6 for v in runs.values())
  assert not {c.seed for c in sel} & {c.seed for c in cells}
  assert not ({c.overrides['data.mmoe_synthetic.seed'] for c in sel}
              & {c.overrides['data.mmoe_synthetic.seed'] for c in cells})
  assert len({c.id for c in sel + cells}) == len(sel) + len(cells)


def _rec(phase, model, corr, data_seed, seed, mse, lr=1e-3):
  group = {'phase': phase, 'model': model, 'correlation': corr}
  if phase == 'select':
    group['lr'] = lr
  return {'id': f'{model}{corr}{data_seed}{seed}{lr}', 'group': group, 'seed': seed,
          'overrides': {'data.mmoe_synthetic.seed': data_seed, 'optim.learning_rate': lr},
          'summary': {'eval/test/mean/mse': mse, 'eval/valid/mean/mse': mse, 'params': 10}}


def test_curve_steps_and_action():
  assert mp.curve_steps(1562, 10) == (156, 312, 469, 625, 781, 937, 1093, 1250, 1406, 1562)
  assert mp.curve_steps(6, 3) == (2, 4, 6) and mp.curve_steps(2, 10) == (1, 2)
  act = mp.TestCurve((2, 4, 6))
  assert [s for s in range(1, 8) if act.due(s, s == 7)] == [2, 4, 6]   # not at the last step


def test_chosen_lr_is_the_lowest_mean_valid_mse():
  recs = [_rec('select', 'mmoe', 0.5, 1000, s, v, lr) for s, (lr, v) in enumerate(
      [(1e-4, 1.0), (1e-4, 1.1), (1e-3, 0.2), (1e-3, 0.9), (1e-2, 0.4), (1e-2, float('nan'))])]
  assert mp.chosen_lrs(recs) == {('mmoe', 0.5): 1e-3}      # NaN run: that rate is out


def _results(effect):
  """Constructed final MSEs: model base + slope * (1 - correlation) + noise per run."""
  rng = np.random.default_rng(0)
  recs = []
  for m, (base, slope) in effect.items():
    for c in (0.5, 0.8, 0.9, 1.0):
      for d in range(8):
        for s in range(5):
          recs.append(_rec('report', m, c, d, mp.run_seed(d, s),
                           base + slope * (1 - c) + 0.002 * rng.normal()))
  return recs


def _seed_like_bootstrap(cells):
  """bootstrap.csv rows that repeat each test's seed interval (the verdicts are under test
  here, not the bootstrap; without one nothing is resolved)."""
  from experiments import report, stats  # pylint: disable=g-import-not-at-top
  out = []
  for fam in rep.families(cells):
    by, m = report.by_label(cells, fam), len(fam.tests())
    for row, base, metric in fam.tests():
      pr = report.pairing(by, fam, row, base, metric)
      d = stats.seed_diff({u: pr['means']['row'][u] for u in pr['units']},
                          {u: pr['means']['baseline'][u] for u in pr['units']})
      ivs = [stats.t_interval(d, lv) for lv in stats.holm_levels(m)]
      out.append({'table': fam.name, 'row': row, 'baseline': base, 'metric': metric,
                  'seeds': [a['seed'] for a, _ in pr['runs']], 'mean': d['mean'], 'p': d['p'],
                  'lo': [lo for lo, _ in ivs], 'hi': [hi for _, hi in ivs]})
  return out


def _verdicts(recs):
  from experiments import report  # pylint: disable=g-import-not-at-top
  cells = rep.cells_of(recs)
  boot = _seed_like_bootstrap(cells)
  results = {f.name: report.compare(cells, f, boot) for f in rep.families(cells)}
  return [re.search(r': (holds|does not hold|unsettled)\*\*', f).group(1)
          for f in rep.findings(cells, results)]


def test_findings_verdicts():
  paper = {'shared_bottom_16': (0.2, 0.4), 'shared_bottom': (0.1, 0.3), 'omoe': (0.08, 0.2),
           'mmoe': (0.05, 0.05)}
  assert _verdicts(_results(paper)) == ['holds', 'holds', 'holds']
  # MMoE loses most as the correlation falls; OMoE is worse than Shared-Bottom everywhere.
  steep = dict(paper, mmoe=(0.05, 0.5), omoe=(0.3, 0.2))
  assert _verdicts(_results(steep)) == ['holds', 'does not hold', 'does not hold']
  inverted = dict(paper, omoe=(0.08, -0.1))                # OMoE better at low correlation
  assert _verdicts(_results(inverted))[0] == 'does not hold'
  same = {m: (0.1, 0.0) for m in paper}                     # nothing differs: all unsettled
  assert _verdicts(_results(same)) == ['unsettled'] * 3
  rows = rep.rows(rep.cells_of(_results(paper)))
  for r in rows:
    assert r['runs'] == 40 and r['data_seeds'] == 8
    assert r['ci95_lo'] < r['test_mse_mean'] < r['ci95_hi'] and r['lr'] == 1e-3


def test_selection_marks_a_rate_still_on_the_grid_edge(tmp_path):
  recs = [_rec('select', 'mmoe', 0.5, 1000, s, v, lr) for s, (lr, v) in enumerate(
      [(1e-3, 0.5), (1e-2, 0.2), (1e-1, 0.1), (1e-1, 0.12)])]
  recs += [_rec('select', 'omoe', 0.5, 1000, s, v, lr) for s, (lr, v) in enumerate(
      [(1e-3, 0.5), (1e-2, 0.2), (1e-1, 0.3)])]
  sel = rep.selection(rep.cells_of(recs))
  assert sel[('mmoe', 0.5)]['lr'] == 1e-1 and sel[('mmoe', 0.5)]['edge'] == 'high'
  assert sel[('omoe', 0.5)]['lr'] == 1e-2 and sel[('omoe', 0.5)]['edge'] == ''
  rep.write_select(rep.cells_of(recs), str(tmp_path))
  text = (tmp_path / 'select.md').read_text()
  assert '| mmoe | 0.5 | 0.1 | 2 | 0.1100 | 0.0141 | **yes** (at the high edge) |' in text
  assert 'Still at an edge: 1 of 2.' in text


def test_study_help_and_imports_with_the_other_studies():
  for name in ('attention_ablation', 'din_table', 'mmoe_synthetic', 'census_multitask',
               'dcn_table', 'mmoe_paper'):
    importlib.import_module(f'experiments.{name}')
  out = subprocess.run([sys.executable, '-m', 'experiments.mmoe_paper', '--help'], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  for flag in ('--data_seeds', '--select_seeds', '--seeds', '--runs_per_group', '--[no]docs'):
    assert flag in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


def test_fast_bootstrap_counts_are_multinomial():
  """stats._resample_counts above FAST_COUNTS units (this study's 20k test rows): every row
  sums to u, counts have the multinomial's mean 1 and variance 1 - 1/u; at or below it the
  multinomial stream of earlier bootstraps is kept draw for draw."""
  from experiments import stats  # pylint: disable=g-import-not-at-top
  u = stats.FAST_COUNTS + 1
  c = stats._resample_counts(np.random.default_rng(0), u, 200)  # pylint: disable=protected-access
  assert c.shape == (200, u) and (c.sum(1) == u).all() and (c >= 0).all()
  assert abs(c.mean() - 1) < 1e-12 and abs(c.var() - (1 - 1 / u)) < 0.01
  small = stats._resample_counts(np.random.default_rng(3), 500, 4)  # pylint: disable=protected-access
  want = np.random.default_rng(3).multinomial(500, np.full(500, 1 / 500), size=4)
  assert np.array_equal(small, want)


def _curve_results(gap_steps):
  """Constructed curves over steps 10..50: Shared-Bottom (113) worse at low correlation by
  0.05 at the steps in gap_steps, by 0 elsewhere; the other models flat."""
  recs = _results({'shared_bottom': (0.1, 0.0), 'omoe': (0.08, 0.0), 'mmoe': (0.05, 0.0)})
  rng = np.random.default_rng(1)
  for r in recs:
    g = r['group']
    for step in (10, 20, 30, 40, 50):
      gap = 0.05 * (1 - g['correlation']) if (g['model'] == 'shared_bottom'
                                               and step in gap_steps) else 0.0
      r['summary'][rep.curve_metric(step)] = (r['summary']['eval/test/mean/mse'] + gap
                                              + 0.001 * rng.normal())
  return recs


def test_curve_findings_per_step(tmp_path):
  cells = rep.cells_of(_curve_results({10, 20}))
  assert rep.curve_columns(cells) == [rep.curve_metric(s) for s in (10, 20, 30, 40, 50)]
  ctx = {'num_test': 100, 'lr': 1e-3, 'batch_size': 8, 'data_seeds': 8, 'seeds': 5}
  names = rep.write_curve(cells, str(tmp_path), ctx)
  assert {'curve.md', 'curve.csv', 'curve_findings.md', 'curve_moe.md'} <= set(names)
  from experiments import report  # pylint: disable=g-import-not-at-top
  found = report.read_csv(str(tmp_path / 'curve_findings.csv'))
  sb = [r for r in found if r['comparison'] == 'Shared-Bottom (113) @ 0.5 - Shared-Bottom (113) @ '
        '0.8']
  assert [r['resolved'] for r in sb] == [True, True, False, False, False]
  assert all(r['mean'] > 0.01 for r in sb[:2]) and all(abs(r['mean']) < 0.01 for r in sb[2:])
  # Finding 3: every mixture beats Shared-Bottom (113) at every step, more where the gap is.
  moe = [r for r in found if r['finding'] == 3]
  assert len(moe) == 2 * 4 * 5 and all(r['resolved'] and r['mean'] < 0 for r in moe)
  text = (tmp_path / 'curve_findings.md').read_text()
  assert '| 3 | **verdict** | holds | holds | holds | holds | holds |' in text
  curve = report.read_csv(str(tmp_path / 'curve.csv'))
  assert len(curve) == 4 * 3 * 5 and all(r['data_seeds'] == 8 for r in curve)


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path, monkeypatch):
  from experiments import report  # pylint: disable=g-import-not-at-top
  # The fewest draws report.bootstrap_family allows (4 m / alpha: enough to resolve at Holm's
  # strictest level), not the studies' 2000: every file and check is the same, the draws cost.
  monkeypatch.setattr(report, 'bootstrap_family',
                      functools.partial(report.bootstrap_family, n_boot=0))
  out = str(tmp_path / 'mmoe_paper')
  text, _ = mp.run(out, TINY, runs_per_group=64)
  for name in mp.RESULT_FILES:
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  assert 'Family: 4 test(s)' in open(os.path.join(out, 'resolved_moe.md')).read()   # 2 x 2
  with open(os.path.join(out, 'table.csv')) as f:
    table = list(csv.DictReader(f))
  assert len(table) == 4 * 2
  for r in table:
    assert int(r['runs']) == 6 and int(r['data_seeds']) == 2
    assert float(r['lr']) == TINY.lr and int(r['nonfinite_runs']) == 0
    assert float(r['ci95_lo']) <= float(r['test_mse_mean']) <= float(r['ci95_hi'])
  with open(os.path.join(out, 'select.csv')) as f:
    sel = list(csv.DictReader(f))
  # 3 rates per cell (TINY: no extension of an edge choice; test_stats covers select_on_grids).
  assert 4 * 2 * 3 <= len(sel) <= 4 * 2 * 4 and sum(r['chosen'] == 'true' for r in sel) == 4 * 2
  for r in sel:
    if r['chosen'] == 'true':
      mates = [float(x['valid MSE mean']) for x in sel
               if (x['model'], x['correlation']) == (r['model'], r['correlation'])]
      assert float(r['valid MSE mean']) == min(mates)
  assert len(re.findall(r'\*\*.*: (holds|does not hold|unsettled)\*\*', text)) == 3
  # The curves: every reported run's test MSE at TINY.curve_steps (its metrics.jsonl, through
  # cells.csv); the last point is the final state the table reports.
  cells = [c for c in report.read_csv(os.path.join(out, 'cells.csv')) if c['phase'] == 'report']
  assert rep.curve_columns(cells) == [rep.curve_metric(s) for s in TINY.curve_steps]
  for c in cells:
    vals = [c[k] for k in rep.curve_columns(cells)]
    assert np.isfinite(vals).all() and vals[0] > vals[-1]
    assert vals[-1] == pytest.approx(c[rep.METRIC], rel=1e-6)
  with open(os.path.join(out, 'curve.csv')) as f:
    assert len(list(csv.DictReader(f))) == 4 * 2 * len(TINY.curve_steps)
  # Recomputable: the published tables from cells.csv, bootstrap.csv and meta.json alone.
  from experiments import recheck  # pylint: disable=g-import-not-at-top
  docs = tmp_path / 'docs'
  (docs / 'results').mkdir(parents=True)
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(out, docs / 'results' / 'mmoe_paper',
                  ignore=shutil.ignore_patterns('cells', 'work', 'jax_cache'))
  logs = []
  assert recheck.recheck('mmoe_paper', str(docs), log=logs.append), logs
  # Resumable: a rerun trains nothing and writes the same table rows.
  import seqrec_jax.train
  monkeypatch.setattr(seqrec_jax.train, 'train_and_evaluate',
                      lambda *a, **k: pytest.fail('a finished cell was retrained'))
  monkeypatch.setattr(seqrec_jax.train, 'train_loop',
                      lambda *a, **k: pytest.fail('a finished cell was retrained'))
  monkeypatch.setattr(rep, 'figures', lambda *a: [])   # drawn and checked above already
  again, _ = mp.run(out, TINY, runs_per_group=64)
  assert again.split('\n\n')[1] == text.split('\n\n')[1]
