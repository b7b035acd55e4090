"""The popularity channel, the funnel's stage lists and a tiny end-to-end funnel
(experiments/funnel.py on a small planted-interest set, DIN and the pre-ranker trained through
train.train_and_evaluate as a multi-run group)."""
from __future__ import annotations

import numpy as np
import pytest

from seqrec_jax.retrieval import funnel as F
from seqrec_jax.retrieval.popularity import Popularity


def test_popularity_ranks_by_count_and_excludes_history():
  pop = Popularity.fit(None, np.array([3, 3, 3, 1, 1, 2, 4, 4, 4, 4]), 0, 6)
  ids, scores = pop.retrieve(np.array([[0, 4], [0, 0]]), 3)
  np.testing.assert_array_equal(ids, [[3, 1, 2], [4, 3, 1]])
  np.testing.assert_array_equal(scores, [[3, 2, 1], [4, 3, 2]])
  ids, _ = pop.retrieve(np.array([[0, 4]]), 3, exclude_history=False)
  np.testing.assert_array_equal(ids, [[4, 3, 1]])
  # More asked than the catalogue holds: 0-filled, score -inf; padding id 0 never returned.
  ids, scores = pop.retrieve(np.array([[3, 4]]), 6)
  np.testing.assert_array_equal(ids, [[1, 2, 5, 0, 0, 0]])
  assert np.isneginf(scores[0, 3:]).all()


def test_stage_lists_chain_prerank_then_rank():
  cand = np.array([[10, 11, 12, 13, 0]])
  pre = np.array([[0.9, 0.1, 0.8, 0.7, 9.0]])       # keeps 10, 12 (n_pre=2); slot 0 ignored
  rank = np.array([[0.1, 5.0, 0.2, 9.0, 9.0]])
  out = F.stage_lists(cand, pre, rank, n_pre=2, k=2)
  np.testing.assert_array_equal(out['retrieval'], [[10, 11]])
  np.testing.assert_array_equal(out['pre-rank only'], [[10, 12]])
  np.testing.assert_array_equal(out['rank only'], [[13, 11]])
  np.testing.assert_array_equal(out['funnel'], [[12, 10]])
  assert F.quotas_for(['a', 'b', 'c'], 10, {'a': 2, 'b': 1, 'c': 1}) == {'a': 6, 'b': 2, 'c': 2}
  with pytest.raises(ValueError, match='no channel'):
    F.quotas_for(['x'], 10, {'a': 1})


def test_tiny_funnel_beats_popularity_and_rechecks(tmp_path):
  """The tiny funnel end to end: the funnel beats popularity, a rerun reads every stage from
  the cache, the report (one record per stage, row and seed) publishes to a scratch docs/
  and `recheck funnel` reproduces it, and fails on a changed number in cells.csv."""
  from experiments import funnel as study
  from experiments import recheck, report
  st = study.Settings(
      num_steps=80, eval_users=150, max_len=8, k_retrieve=60, candidates=60, n_prerank=20,
      channels=('popularity',), latency=False,
      synthetic=dict(num_users=500, num_items=120, num_cates=8, max_len=8, min_len=6,
                     impressions_per_user=8, max_interests=2),
      # Compiling is most of the test's time: DIN with a one-layer MLP, and 2 capacity
      # buckets (one packed train shape per model instead of three).
      model_overrides={'model.embed_dim': 8, 'model.hidden': (16,),
                       'model.attention.hidden': (16,), 'model.prerank_tower': (16, 8),
                       'optim.learning_rate': 1e-2, 'train.eval_every': 80,
                       'data.pack_buckets': 2})
  res = study.run_dataset('synthetic', [0, 1, 2], str(tmp_path), lambda m: None, st)
  hr = {n: np.mean([v[s]['hr@10'].mean() for s in v]) for n, v in res['final'].items()}
  assert hr['funnel'] > hr['popularity (top-10)'] + 0.05, hr
  assert hr['oracle: next-behaviour distribution'] >= hr['funnel'] - 0.05, hr
  # Resumable: a rerun reads every stage from the workdir (no training: it is fast and equal).
  again = study.run_dataset('synthetic', [0, 1, 2], str(tmp_path), lambda m: None, st)
  assert again['seconds'] < res['seconds']
  np.testing.assert_array_equal(again['final']['funnel'][1]['hr@10'],
                                res['final']['funnel'][1]['hr@10'])

  docs, out = tmp_path / 'docs', str(tmp_path / 'out')
  docs.mkdir()
  names = study.report_dataset(again, out, [0, 1, 2], again['seconds'], '1.0',
                               publish_to='funnel/synthetic', docs=str(docs))
  assert {'final_diffs.md', 'rerank_diffs.md', 'final.md', 'funnel.png'} <= set(names)
  pub = docs / 'results' / 'funnel' / 'synthetic'
  cells = report.read_csv(str(pub / 'cells.csv'))
  n_final, n_rerank = len(res['final']), len(res['rerank'])
  assert len(cells) == 3 * (len(res['retrieval']) + n_final + n_rerank)
  one = next(c for c in cells if c['id'] == 'final_funnel_s1')
  assert one['hr@10'] == res['final']['funnel'][1]['hr@10'].mean()
  # The bootstrap's point difference: the seed-averaged per-user difference (NumPy), over the
  # 150 test users; one Holm family per table.
  boot = report.read_csv(str(pub / 'bootstrap.csv'))
  b = next(x for x in boot if x['row'] == 'funnel' and x['baseline'] == study.POPULARITY)
  want = np.mean([res['final']['funnel'][s]['hr@10'] - res['final'][study.POPULARITY][s]['hr@10']
                  for s in range(3)])
  np.testing.assert_allclose(b['mean'], want, rtol=1e-12)
  assert b['n_units'] == 150 and b['unit'] == 'users' and b['seeds'] == [0, 1, 2]
  assert f'Family: {2 * n_final - 3} test(s)' in (pub / 'final_diffs.md').read_text()
  assert f'Family: {4 * (n_rerank - 1)} test(s)' in (pub / 'rerank_diffs.md').read_text()
  logs = []
  assert recheck.recheck('funnel', str(docs), log=logs.append), logs
  one['hr@10'] += 0.01
  report.write_csv(cells, str(pub / 'cells.csv'))
  logs = []
  assert not recheck.recheck('funnel', str(docs), log=logs.append)
  assert any('final.md differs' in line for line in logs), logs
  assert any('final_diffs.md differs' in line for line in logs), logs


def test_dataset_and_override_reach_the_logs_and_the_rankers():
  from absl import app
  from experiments import funnel as study
  st = study.Settings()
  ml = study.with_overrides(st, 'movielens', ['data.movielens.path=/data/ml-20m.zip',
                                              'model.embed_dim=4', 'data.synthetic.num_users=9'])
  assert ml.logs == {'path': '/data/ml-20m.zip'} and ml.synthetic == {}
  assert ml.model_overrides == {'model.embed_dim': 4}
  syn = study.with_overrides(st, 'synthetic', ['data.movielens.path=/x',
                                               'data.synthetic.num_users=900'])
  assert syn.logs == {} and syn.synthetic == {'num_users': 900}
  assert study.with_overrides(st, 'synthetic', []) == st
  with pytest.raises(app.UsageError, match='movielens_logs'):
    study.with_overrides(st, 'movielens', ['data.movielens.max_len=5'])
  with pytest.raises(app.UsageError, match='interaction logs'):
    study.with_overrides(st, 'criteo', [])


def test_rerank_stage_diversifies_and_scatters():
  """The funnel's re-rank stage on a tiny fixture: DIN's list is one category; MMR / DPP raise
  ILD and category coverage, scattering leaves no rule violation. Shapes (150 requests x 20
  candidates, 16-d vectors) match the tiny funnel's, so the compiled steps are shared."""
  from experiments import funnel as study
  from seqrec_jax.rerank.stage import Policy
  rng = np.random.default_rng(0)
  cate = np.concatenate([[0], np.arange(60) % 6 + 1]).astype(np.int32)
  vec = np.pad(np.eye(7)[cate], ((0, 0), (0, 9))) + 0.1 * rng.normal(size=(61, 16))
  ones, rest = np.flatnonzero(cate == 1), np.flatnonzero(cate > 1)
  ids = np.stack([np.concatenate([rng.permutation(ones), rng.choice(rest, 10, replace=False)])
                  for _ in range(150)])                # the ranker's order: category 1 first
  prob = np.linspace(0.9, 0.5, 20)[None].repeat(150, 0)
  target = ids[:, 12]
  pols = (Policy('none'), Policy('mmr', 0.5), Policy('dpp', 0.5), Policy('none', scatter=True),
          Policy('dpp', 0.5, scatter=True))
  out = study.rerank_lists(ids, prob, vec, cate, target, pols)
  mean = {p: {k: float(v.mean()) for k, v in m.items()} for p, m in out.items()}
  none = mean['no re-rank']
  assert none['violations'] == 9 and abs(none['categories'] - 1) < 1e-6
  for p in ('MMR lambda=0.5', 'DPP theta=0.5'):
    assert mean[p]['ild'] > none['ild'] + 0.1 and mean[p]['categories'] > 2, (p, mean[p])
  for p in ('no re-rank + scatter', 'DPP theta=0.5 + scatter'):
    assert mean[p]['violations'] == 0 and mean[p]['categories'] >= 3, p
  # The ranker's top 10 misses position 12; a diversified list can reach it.
  assert none['hr@10'] == 0 and mean['DPP theta=0.5']['hr@10'] > 0


def test_user_bootstrap_resamples_users():
  from experiments import stats
  rng = np.random.default_rng(1)
  d = np.stack([0.2 + rng.normal(0, 0.1, 50), rng.normal(0, 0.1, 50)], 1)
  draws, p = stats.user_bootstrap(d, n_boot=2000)
  assert draws.shape == (2000, 2) and p[0] == 2 / 2001 and p[1] > 0.05
  np.testing.assert_allclose(draws.mean(0), d.mean(0), atol=0.01)
  # Users with several requests: the mean is over requests, users are the resampled unit.
  g = np.repeat(np.arange(10), 5)
  draws_g, _ = stats.user_bootstrap(d, g, n_boot=2000)
  np.testing.assert_allclose(draws_g.mean(0), d.mean(0), atol=0.02)
  big = np.repeat(rng.normal(0, 1, 10), 5)[:, None]        # all the spread between users
  assert stats.user_bootstrap(big, g, 2000)[0].std() > 2 * stats.user_bootstrap(big, None,
                                                                                 2000)[0].std()
