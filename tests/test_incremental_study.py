"""experiments/incremental.py as a study spec: a tiny stream (the last 4,000 examples, 3 days
of 2 hours, 2 seeds, 2 steps per update, a one-layer DIN) writes cells.csv (arm x seed), the
bootstrap from the served predictions, and recheck reproduces its tables (from the files, and
from the saved predictions)."""
import os

import numpy as np
import pytest

from experiments import incremental as inc
from experiments import recheck, report, stats
from seqrec_jax import evaluate
from seqrec_jax import metrics as M

ROWS = 4000


def _tiny_stream(days: int, hours: int) -> dict:
  """The stream's last ROWS examples cut into days x hours."""
  s = inc.stream(inc.DEFAULT_SOURCE)
  units = days * hours
  return dict(s, arrays={k: v[-ROWS:] for k, v in s['arrays'].items()},
              bounds=[round(i * ROWS / units) for i in range(units + 1)],
              dates=s['dates'][-(days + 1):])


def test_tiny_stream_publishes_cells_bootstrap_and_rechecks(tmp_path, monkeypatch):
  tiny = _tiny_stream(3, 2)
  monkeypatch.setattr(inc, 'DAYS', 3)
  monkeypatch.setattr(inc, 'HOURS', 2)
  monkeypatch.setattr(inc, 'stream', lambda src=inc.DEFAULT_SOURCE: tiny)
  # The test's CPU time is compiling each update's programs (8 updates) and the bootstrap: a
  # one-layer MLP and scorer (Dice, its batch_stats warm-started as in the study), and 200
  # draws per test (the report's and the runs= recheck's alike, so recheck still compares).
  monkeypatch.setattr(inc, 'BASE', dict(inc.BASE, **{'model.hidden': (16,),
                                                     'model.attention.hidden': (16,)}))
  diff = stats.bootstrap_diff
  monkeypatch.setattr(stats, 'bootstrap_diff', lambda *a, **k: diff(*a, **dict(k, n_boot=200)))
  out, docs = str(tmp_path / 'run'), tmp_path / 'docs'
  docs.mkdir()
  jobs = inc.run_stream(out, seeds=2, num_steps=2)
  names = inc.report_study(jobs, out, 2, 1.0, (0.5, 0.6), publish_to='incremental',
                           docs=str(docs))
  assert names[:3] == ['cells.csv', 'meta.json', 'bootstrap.csv'], names
  assert {'resolved.md', 'table.md', 'per_day.png'} <= set(names)
  pub = os.path.join(docs, 'results', 'incremental')
  cells = report.read_csv(os.path.join(pub, 'cells.csv'))
  assert list(cells[0]) == ['arm', 'seed', 'id', 'diverged', 'wall_seconds',
                            *inc.METRICS, 'eval/test/day2/auc', *inc.COSTS]
  assert [(c['arm'], c['seed']) for c in cells] == [(a, s) for a in inc.ARMS for s in (0, 1)]
  # A cell is what its arm serves: the daily arm serves day 2 from the day-1 retrain.
  daily = next(c for c in cells if c['arm'] == 'daily' and c['seed'] == 1)
  p, y, u = evaluate.load_predictions(jobs['_daily'][1]['workdir'], 'test', 1)
  assert len(y) == ROWS - tiny['bounds'][4]                  # day 2: the last 2 hours
  assert daily['eval/test/day2/auc'] == daily['eval/test/auc']
  assert daily['eval/test/auc'] == pytest.approx(M.auc(y[:, 0], p[:, 0]))
  assert daily['eval/test/gauc'] == pytest.approx(M.gauc(y[:, 0], p[:, 0], u))
  # Every arm's served predictions score the same rows, so every test is paired.
  served = [evaluate.load_predictions(os.path.join(out, 'work', f'served_{a}'), 'test', 0)
            for a in inc.ARMS]
  for _, ys, us in served[1:]:
    assert np.array_equal(ys, y) and np.array_equal(us, u)
  # 5 arms vs daily + 3 pairs, x 3 metrics: one Holm family, each test bootstrapped.
  boot = report.read_csv(os.path.join(pub, 'bootstrap.csv'))
  assert len(boot) == 24 and all(b['paired'] and b['seeds'] == [0, 1] for b in boot)
  assert {b['unit'] for b in boot if b['metric'] == 'eval/test/gauc'} == {'users'}
  assert {b['unit'] for b in boot if b['metric'] != 'eval/test/gauc'} == {'rows'}
  with open(os.path.join(pub, 'resolved.md')) as f:
    text = f.read()
  assert 'Family: 24 test(s)' in text and '| hourly_only | frozen | test GAUC |' in text
  logs = []
  assert recheck.recheck('incremental', str(docs), spec=inc.STUDY, log=logs.append), logs
  assert recheck.recheck('incremental', str(docs), runs=out, spec=inc.STUDY,
                         log=logs.append), logs
  table = os.path.join(pub, 'table.md')
  with open(table) as f:
    good = f.read()
  with open(table, 'w') as f:
    f.write(good.replace('0.', '0.1', 1))
  logs = []
  assert not recheck.recheck('incremental', str(docs), spec=inc.STUDY, log=logs.append)
  assert any('table.md differs' in line for line in logs)
