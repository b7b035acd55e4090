"""experiments/video.py: cells, and the top-k utility / recall it reports (hand cases)."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from experiments import video
from seqrec_jax import evaluate
from seqrec_jax import metrics as M


def test_cells_pair_by_seed():
  cells = video.make_cells(5)
  assert len(cells) == 5 * 12 and {c.seed for c in cells} == set(range(5))
  groups = {tuple(sorted(c.group.items())) for c in cells}
  assert len(groups) == 12
  for c in cells:
    assert c.overrides['train.save_predictions'] and 'seed' not in c.overrides
    assert c.overrides['train.patience'] == video.PATIENCE
  heads = {c.overrides.get('data.video.watch_head', 'soft_label') for c in cells}
  assert heads == set(video.WATCH_HEADS)


def test_notes_optimum_is_below_expected_watch_time():
  """A perfect soft-label model serves E[y] / E[1 - y] (y = t / (1 + t)): E[t] when t barely
  varies (kappa large), below it when t varies (t / (1 + t) is concave)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  m, d = np.array([0.2, 0.5, 0.8]), np.array([10.0, 30.0, 100.0])
  orc = {'completion': m, 'duration': d, 'watch': m * d}
  tight = video.notes_optimum(orc, ml_collections.ConfigDict({'kappa': 1e6}), draws=2000)
  np.testing.assert_allclose(tight, m * d, rtol=0.02)
  loose = video.notes_optimum(orc, ml_collections.ConfigDict({'kappa': 4.0}), draws=2000)
  assert (loose < m * d).all() and (loose / (m * d)).mean() < 0.85
  hm = video.head_metrics(m * d, orc)
  assert hm['Spearman vs E[t]'] == pytest.approx(1.0) and hm['mean served / mean E[t]'] == 1.0


def test_topk_utility_and_recall_hand_cases():
  # two requests of 3 candidates; utility = click + 3 like + watch / 30.
  orc = {'click': np.array([1.0, 0, 0, 0, 0, 0]), 'like': np.zeros(6),
         'watch': np.array([0, 30.0, 60.0, 0, 0, 30.0]), 'request': np.array([0, 0, 0, 1, 1, 1])}
  # U = [1, 1, 2 | 0, 0, 1]; best top-2: 3 and 1. score picks [0, 1] and [3, 5]: 2/3 and 1/1.
  score = np.array([3.0, 2.0, 1.0, 3.0, 1.0, 2.0])
  assert video.topk_utility(score, orc, k=2) == pytest.approx((2 / 3 + 1.0) / 2)
  req, per = video.topk_utility_per_request(score, orc, k=2)
  np.testing.assert_array_equal(req, [0, 1])
  np.testing.assert_allclose(per, [2 / 3, 1.0])
  # top-2 of score vs of U: request 0 {0, 1} vs {2, 0 or 1}; request 1 {3, 5} vs {5, 3 or 4}.
  other = np.array([1.0, 0.0, 2.0, 1.0, 0.0, 2.0])
  assert video.topk_recall(score, other, orc['request'], k=2) == pytest.approx(0.75)


def test_dataset_and_override_reach_every_cell_config_and_the_oracle():
  from absl import app
  from seqrec_jax.configs import load_config
  extra = video.extra_overrides('video', ['data.video.num_users=300', 'model.embed_dim=4'])
  assert extra == {'data.video.num_users': 300, 'model.embed_dim': 4}
  cells = video.make_cells(2, 10, extra)
  assert not {c.id for c in cells} & {c.id for c in video.make_cells(2, 10)}
  for c in cells:
    cfg = load_config(video.CONFIG, dict(c.overrides, seed=c.seed))
    assert (cfg.data.video.num_users, cfg.model.embed_dim) == (300, 4)
  assert video.video_config(extra).num_users == 300           # the report's oracle follows
  assert video.video_config().num_users != 300
  with pytest.raises(app.UsageError, match='oracle'):
    video.extra_overrides('movielens', [])


def test_tiny_study_writes_cells_bootstrap_and_rechecks(tmp_path, monkeypatch):
  """The study spec on a tiny run (100 users, 2 seeds, 1 step; the groups every table needs:
  mmoe, a SENet variant, a watch head, the pre-ranker): cells.csv holds every table's per-cell
  values, every comparison family (the heads against E[t] through Family.inputs, the fusions
  as pseudo-rows through Family.expand) has both intervals from the saved predictions, and
  recheck reproduces every table (from the files, and from the predictions)."""
  from experiments import recheck, report, sweep
  # The fewest draws report.bootstrap_family allows (4 m / alpha: enough to resolve at Holm's
  # strictest level), not the studies' 2000, in the run and in recheck's recomputation alike.
  monkeypatch.setattr(report, 'bootstrap_family',
                      functools.partial(report.bootstrap_family, n_boot=0))
  out, docs = str(tmp_path / 'run'), tmp_path / 'docs'
  docs.mkdir()
  keep = {'mmoe', 'mmoe +SENet', 'mmoe [watch: weighted]', 'prerank'}
  # 1 step: one evaluation per group (what the tables read is the best-valid state's cells and
  # predictions, however many steps made it; 4 steps compiled a second-evaluation program).
  cells = [c for c in video.make_cells(2, 1, {'data.video.num_users': 100})
           if video.label(c.group) in keep]
  records, wall = sweep.run_study(video.CONFIG, cells, out, 2, 64)
  names = video.report_study(records, out, wall, publish_to='video', docs=str(docs))
  assert names[:3] == ['cells.csv', 'meta.json', 'bootstrap.csv'], names
  for n in ('resolved', 'resolved_heads', 'resolved_heads_et', 'resolved_fusion', 'table',
            'heads', 'fusion', 'prerank'):
    assert f'{n}.md' in names and f'{n}.csv' in names
  pub = tmp_path / 'docs' / 'results' / 'video'
  cells = report.read_csv(str(pub / 'cells.csv'))
  assert len(cells) == 8 and set(video.METRICS) <= set(cells[0])
  assert {video.label(c) for c in cells} == keep
  base = [c for c in cells if video.label(c) == 'mmoe']
  assert all(np.isfinite(c['fusion/weighted sum']) for c in base)
  assert all(np.isfinite(c['prerank/recall']) for c in cells if c['model'] == 'prerank')
  boot = report.read_csv(str(pub / 'bootstrap.csv'))
  fusions = [('resolved_fusion', f, video.FUSION_UTILITY) for f in video.FUSIONS[1:]]
  assert [(b['table'], b['row'], b['metric']) for b in boot] == [
      ('resolved', 'mmoe +SENet', 'eval/test/click/auc'),
      ('resolved', 'mmoe +SENet', 'eval/test/like/auc'),
      ('resolved_heads', 'mmoe [watch: weighted]', 'eval/test/watch/mse'),
      ('resolved_heads', 'mmoe [watch: weighted]', 'eval/test/click/auc'),
      ('resolved_heads_et', 'mmoe [watch: weighted]', 'head/spearman_vs_et'),
      ('resolved_heads_et', 'mmoe [watch: weighted]', 'head/mae_vs_et')] + fusions
  assert all(b['paired'] and b['seeds'] == [0, 1] for b in boot)
  assert [b['unit'] for b in boot] == ['rows'] * 6 + ['requests'] * 5
  # Holm family sizes (one interval per level a family of m can ask for) and, on the test
  # sets themselves, the bootstrap's point = the seed-mean difference of the cells' values.
  size = {'resolved': 2, 'resolved_heads': 2, 'resolved_heads_et': 2, 'resolved_fusion': 5}
  assert all(len(b['lo']) == size[b['table']] for b in boot)
  def cell_diff(row, metric):
    by = {(video.label(c), c['seed']): c for c in cells}
    if metric == video.FUSION_UTILITY:
      return np.mean([by['mmoe', s][f'fusion/{row}'] - by['mmoe', s]['fusion/weighted sum']
                      for s in (0, 1)])
    return np.mean([by[row, s][metric] - by['mmoe', s][metric] for s in (0, 1)])
  for b in boot[4:]:
    assert b['mean'] == pytest.approx(cell_diff(b['row'], b['metric']), abs=1e-9), b
  for name in ('resolved_heads_et', 'resolved_fusion'):
    res = report.read_csv(str(pub / f'{name}.csv'))
    assert len(res) == size[name] and f'Family: {size[name]} test(s)' in (
        pub / f'{name}.md').read_text()
    assert all(np.isfinite([r['seed_lo'], r['seed_hi'], r['boot_lo'], r['boot_hi']]).all()
               for r in res)
  # The oracle's rows come from meta.json; each cell's values from its own predictions.
  wd, run = report.cell_workdir(records[0], out)
  p, y, _ = evaluate.load_predictions(wd, 'test', run)
  assert cells[0]['eval/test/watch/mse'] == pytest.approx(M.mse(y[:, 2], p[:, 2]))
  (pub / 'prerank_latency.md').write_text('the benchmark\'s page, not the study\'s\n')
  logs = []
  assert recheck.recheck('video', str(docs), spec=video.STUDY, log=logs.append), logs
  assert recheck.recheck('video', str(docs), runs=out, spec=video.STUDY, log=logs.append), logs
  heads = (pub / 'heads.md').read_text()
  (pub / 'heads.md').write_text(heads.replace('0.', '0.1', 1))
  logs = []
  assert not recheck.recheck('video', str(docs), spec=video.STUDY, log=logs.append)
  assert any('heads.md differs' in line for line in logs)
