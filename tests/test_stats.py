"""experiments/stats.py: Holm step-down, the test-set bootstrap, the bimodal rule, grid edges
(NumPy only, no training)."""
import numpy as np
import pytest

from experiments import stats
from seqrec_jax import metrics


def test_holm_matches_a_hand_computed_family():
  # Sorted p: 0.005 (<= .05/4), 0.01 (<= .05/3), 0.03 (> .05/2: stop), 0.04.
  rejected, level = stats.holm([0.01, 0.04, 0.03, 0.005])
  assert rejected == [True, False, False, True]
  assert level == pytest.approx([1 - 0.05 / 3, 1 - 0.05 / 2, 1 - 0.05 / 2, 1 - 0.05 / 4])
  # Uncorrected, 0.03 and 0.04 would pass; NaN counts in m and is never rejected.
  assert stats.holm([0.001, float('nan')])[0] == [True, False]
  assert stats.holm([0.03, 0.04])[0] == [False, False]        # 0.03 > 0.05 / 2


def test_holm_interval_excludes_zero_exactly_when_holm_rejects():
  rng = np.random.default_rng(1)
  for _ in range(50):
    fam = [stats.seed_diff(dict(enumerate(rng.normal(mu, 1, 8))), dict(enumerate(np.zeros(8))))
           for mu in rng.uniform(0, 2, 6)]
    rejected, level = stats.holm([d['p'] for d in fam])
    for d, rej, lv in zip(fam, rejected, level):
      lo, hi = stats.t_interval(d, lv)
      assert rej == (lo > 0 or hi < 0)


def test_weighted_auc_and_gauc_points_match_metrics():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 2, 300).astype(float)
  users = rng.integers(0, 20, 300)
  a = np.round(rng.normal(y, 1), 1)                  # rounded: tied scores
  b = rng.normal(y * 0.5, 1)
  runs = [(y, users, a, b)]
  assert stats.bootstrap_diff('eval/test/auc', runs, 50)['mean'] == pytest.approx(
      metrics.auc(y, a) - metrics.auc(y, b))
  assert stats.bootstrap_diff('eval/test/gauc', runs, 50)['mean'] == pytest.approx(
      metrics.gauc(y, a, users) - metrics.gauc(y, b, users))
  with pytest.raises(ValueError, match='spearman'):
    stats.bootstrap_diff('eval/test/spearman', runs)


def _coverage(metric, make, truth, sims=200, n_boot=300):
  hits = 0
  for s in range(sims):
    b = stats.bootstrap_diff(metric, [make(np.random.default_rng(s))], n_boot, seed=s)
    lo, hi = stats.boot_interval(b['draws'], 0.95)
    hits += lo <= truth <= hi
  return hits / sims


def test_bootstrap_covers_a_known_difference_about_95_percent():
  # MSE (rows): errors N(0, 1) vs N(0, 1.2^2): the population difference is 1 - 1.44.
  def mse_data(rng):
    y = rng.normal(size=400)
    return y, np.arange(400), y + rng.normal(0, 1, 400), y + rng.normal(0, 1.2, 400)
  cov = _coverage('eval/test/mse', mse_data, 1 - 1.44)
  assert 0.90 <= cov <= 0.99, cov
  # AUC (rows): Gaussian scores, shift 1.0 vs 0.5 on independent noise: AUC = Phi(mu / sqrt 2).
  from scipy.stats import norm
  def auc_data(rng):
    y = (rng.random(400) < 0.5).astype(float)
    return y, np.arange(400), rng.normal(y * 1.0, 1), rng.normal(y * 0.5, 1)
  cov = _coverage('eval/test/auc', auc_data, norm.cdf(1 / 2 ** .5) - norm.cdf(.5 / 2 ** .5),
                  sims=150, n_boot=200)
  assert 0.88 <= cov <= 0.99, cov


def test_bootstrap_pairs_runs_on_one_test_set_and_resamples_own_sets_apart():
  rng = np.random.default_rng(0)
  y = rng.normal(size=200)
  shared = [(y, np.arange(200), y + rng.normal(0, 1, 200), y + rng.normal(0, 1, 200))
            for _ in range(3)]
  own = [(z, np.arange(200), z + rng.normal(0, 1, 200), z + rng.normal(0, 1, 200))
         for z in rng.normal(size=(3, 200))]
  a = stats.bootstrap_diff('eval/test/mse', shared, 400)
  b = stats.bootstrap_diff('eval/test/mse', own, 400)
  assert a['unit'] == 'rows' and a['n_units'] == 200 and 0 < a['p'] <= 1
  # Independent test sets average out: narrower than one set resampled for all runs.
  assert np.std(b['draws']) < np.std(a['draws'])


def test_modes_finds_collapsed_runs_and_rarely_fires_on_gaussian_seeds():
  assert stats.modes([0.72, 0.721, 0.50, 0.719, 0.51]) == ([2, 4], [0, 1, 3])
  assert stats.modes([0.1, 0.11, 0.9, 0.1, 0.12], higher_better=False) == ([2], [0, 1, 3, 4])
  assert stats.modes([0.7, 0.5, 0.71]) == ([], [0, 1, 2])              # n < 4: no rule
  assert stats.modes([0.7, np.nan, 0.5, 0.71]) == ([], [0, 2, 3])
  rng = np.random.default_rng(0)
  for n in (5, 10):
    alarms = sum(bool(stats.modes(rng.normal(0.7, 0.01, n))[0]) for _ in range(500))
    assert alarms <= 3, (n, alarms)                                  # <= 0.6% (rule: 0.1%)


def test_select_on_grid_extends_an_edge_choice_and_marks_one_left():
  asked = []

  def runner(peak):
    def score(values):
      asked.append(list(values))
      return {v: -(np.log10(v) - peak) ** 2 for v in values}
    return score

  got = stats.select_on_grid([1e-2, 1e-1, 1.0], runner(-3.3), cap=3)
  assert got.value == pytest.approx(1e-3) and got.at_edge == '' and got.extensions == 2
  assert asked == [[1e-2, 1e-1, 1.0], [pytest.approx(1e-3)], [pytest.approx(1e-4)]]
  capped = stats.select_on_grid([1e-2, 1e-1, 1.0], runner(-6), cap=1)
  assert capped.at_edge == 'low' and capped.value == pytest.approx(1e-3)
  # Linear steps; a bound stops the extension and the edge stays marked.
  lin = stats.select_on_grid([0.1, 0.3, 0.5], lambda vs: {v: -abs(v - 0.7) for v in vs},
                             scale='linear', bounds=(0.0, 0.6))
  assert lin.value == 0.5 and lin.at_edge == 'high' and lin.extensions == 0
  mse = stats.select_on_grid([0.1, 0.3, 0.5], lambda vs: {v: abs(v - 0.25) for v in vs},
                             higher_better=False, scale='linear')
  assert mse.value == 0.3 and mse.at_edge == '' and mse.grid == [0.1, 0.3, 0.5]


def test_select_on_grids_extends_only_the_keys_on_an_edge_each_round():
  peaks = {'a': -2.0, 'b': -4.5}                   # a inside [1e-3, 1e-1]; b below it
  calls = []

  def score(todo):
    calls.append({k: len(v) for k, v in todo.items()})
    return {k: {v: -(np.log10(v) - peaks[k]) ** 2 for v in vals} for k, vals in todo.items()}

  got = stats.select_on_grids({k: [1e-3, 1e-2, 1e-1] for k in peaks}, score, cap=1)
  assert calls == [{'a': 3, 'b': 3}, {'b': 1}]
  assert got['a'].value == pytest.approx(1e-2) and got['a'].at_edge == ''
  assert got['b'].value == pytest.approx(1e-4) and got['b'].at_edge == 'low'   # cap reached


def test_bootstrap_across_test_sets_resamples_each_side_on_its_own():
  rng = np.random.default_rng(0)
  ya, yb = rng.normal(size=300), rng.normal(size=300)
  pa, pb = ya + rng.normal(0, 1, 300), yb + rng.normal(0, 1, 300)
  got = stats.bootstrap_diff('eval/test/mse', [(ya, np.arange(300), pa, None)], 1000,
                             minus=[(yb, np.arange(300), pb)])
  assert got['mean'] == pytest.approx(metrics.mse(ya, pa) - metrics.mse(yb, pb))
  one = stats.bootstrap_diff('eval/test/mse', [(ya, np.arange(300), pa, None)], 1000)
  assert np.std(got['draws']) == pytest.approx(np.sqrt(2) * np.std(one['draws']), rel=0.2)


def test_seed_diff_agrees_with_the_paired_t_test():
  """(Was metrics.paired_diff_ci's test: funnel's seed intervals use seed_diff now.)"""
  from scipy import stats as sp_stats
  rng = np.random.default_rng(1)
  for shift in (0.0, 0.3, 1.0, -1.0):
    base = rng.normal(0.7, 1.0, size=10)           # seed effect shared by both rows
    a = base + shift + rng.normal(0, 0.5, size=10)
    b = base + rng.normal(0, 0.5, size=10)
    d = stats.seed_diff(dict(enumerate(a)), dict(enumerate(b)))
    t = sp_stats.ttest_rel(a, b)
    assert d['n'] == 10 and d['mean'] == pytest.approx(np.mean(a - b))
    assert d['p'] == pytest.approx(t.pvalue)
    lo, hi = stats.t_interval(d, 0.95)
    assert (lo > 0 or hi < 0) == (t.pvalue < 0.05)
    assert (lo, hi) == pytest.approx(metrics.mean_ci(a - b)[1:])


def test_seed_diff_pairs_by_seed():
  a = {0: 0.71, 1: 0.742, 2: 0.691, 5: 0.9}
  b = {2: 0.68, 1: 0.73, 0: 0.70}                  # seed 5 only in a: dropped
  d = stats.seed_diff(a, b)
  assert d['n'] == 3 and d['seeds'] == [0, 1, 2]
  assert d['mean'] == pytest.approx(np.mean([0.01, 0.012, 0.011]))
  assert stats.t_interval(d, 0.95)[0] > 0
  # Pairing removes the shared seed effect, which an unpaired interval would keep.
  assert metrics.mean_ci([0.71, 0.742, 0.691])[1] < metrics.mean_ci([0.70, 0.73, 0.68])[2]
  one = stats.seed_diff({0: 1.0, 1: 2.0}, {1: 1.5})
  assert one['n'] == 1 and np.isnan(one['p']) and np.isnan(stats.t_interval(one, 0.95)[0])


def test_mean_kind_is_the_count_weighted_mean_of_the_unit_differences():
  a, b = np.array([1.0, 4.0, 2.0, 0.5]), np.array([0.0, 1.0, 2.0, 1.5])   # a - b: 1 3 0 -1
  counts = np.array([[1.0, 1, 1, 1], [2, 0, 1, 1], [0, 4, 0, 0]])
  run = stats._Run('mean', None, np.array([7, 3, 9, 1]), a, b)   # pylint: disable=protected-access
  np.testing.assert_allclose(run.diff(counts), [3 / 4, (2 - 1) / 4, 3.0])
  # A unit id that repeats is one unit: its values are resampled together (first-seen order).
  grouped = stats._Run('mean', None, np.array([5, 5, 2, 2]), a, b)  # pylint: disable=protected-access
  np.testing.assert_allclose(grouped.diff(np.array([[2.0, 0], [1, 1], [0, 2]])),
                             [(1 + 3) / 2, (1 + 3 + 0 - 1) / 4, (0 - 1) / 2])
  got = stats.bootstrap_diff('per_request/utility', [(None, np.arange(4), a, b)], 100,
                             kind='mean', unit_name='requests')
  assert got['mean'] == pytest.approx(0.75) and got['unit'] == 'requests'
  assert got['n_units'] == 4 and len(got['draws']) == 100
  assert stats.bootstrap_diff('x', [(None, np.arange(4), a, b)], 10, kind='mean')['unit'] == 'units'
  with pytest.raises(ValueError, match='kind mean'):
    stats.bootstrap_diff('x', [(None, np.arange(3), a, b)], 10, kind='mean')
  with pytest.raises(ValueError, match="kind 'median'"):
    stats.bootstrap_diff('x', [(None, np.arange(4), a, b)], 10, kind='median')


def test_mean_kind_covers_a_known_difference_about_95_percent():
  # Per-unit values a ~ N(0.3, 1), b = a - N(0.3, 0.5^2) paired: the mean difference is 0.3.
  def data(rng):
    a = rng.normal(0.3, 1, 300)
    return None, np.arange(300), a, a - rng.normal(0.3, 0.5, 300)
  hits = 0
  for s in range(200):
    b = stats.bootstrap_diff('u', [data(np.random.default_rng(s))], 300, seed=s, kind='mean')
    lo, hi = stats.boot_interval(b['draws'], 0.95)
    hits += lo <= 0.3 <= hi
  assert 0.90 <= hits / 200 <= 0.99, hits


def test_spearman_kind_matches_scipy_on_explicit_resamples():
  """Each draw is scipy's Spearman on the np.repeat-ed resample (ties in the reference and
  in the predictions, and a row drawn several times, share mid-ranks)."""
  from scipy.stats import spearmanr
  rng = np.random.default_rng(0)
  n = 80
  ref = np.round(rng.gamma(2.0, 1.0, n), 0)                   # heavy ties
  pa = np.round(ref + rng.normal(0, 1, n), 1)
  pb = rng.integers(0, 5, n).astype(float)
  run = stats._Run('spearman', ref, np.arange(n), pa, pb)     # pylint: disable=protected-access
  one = stats._Run('spearman', ref, np.arange(n), pa)         # pylint: disable=protected-access
  counts = rng.multinomial(n, np.full(n, 1 / n), size=6).astype(np.float64)
  for c, got, alone in zip(counts, run.diff(counts), one.diff(counts)):
    idx = np.repeat(np.arange(n), c.astype(int))
    want_a = spearmanr(ref[idx], pa[idx]).statistic
    assert alone == pytest.approx(want_a, abs=1e-12)
    assert got == pytest.approx(want_a - spearmanr(ref[idx], pb[idx]).statistic, abs=1e-12)
  got = stats.bootstrap_diff('head/spearman_vs_et', [(ref, np.arange(n), pa, pb)], 200,
                             kind='spearman')
  assert got['mean'] == pytest.approx(metrics.spearman(ref, pa) - metrics.spearman(ref, pb))
  assert got['unit'] == 'rows' and got['n_units'] == n and got['p'] < 0.05
  with pytest.raises(ValueError, match='kind spearman'):
    stats.bootstrap_diff('x', [(ref[:, None], np.arange(n), pa[:, None], None)], 10,
                         kind='spearman')


def test_family_hooks_expand_rows_and_bootstrap_their_own_inputs(tmp_path):
  """report.Family.expand (pseudo-rows of a cell) and .inputs (kind 'mean' values per
  request), through bootstrap_family, bootstrap.csv and compare, against a hand computation."""
  import dataclasses
  from experiments import report
  rng = np.random.default_rng(0)
  vals = {s: {'x': rng.normal(0.5, 0.1, 50), 'y': rng.normal(0.4, 0.1, 50)} for s in range(3)}
  cells = [{'id': f'c{s}', 'seed': s, 'model': 'm', 'u/x': vals[s]['x'].mean(),
            'u/y': vals[s]['y'].mean()} for s in range(3)]
  records = [{'id': c['id']} for c in cells]

  def expand(cs):
    return [dict(c, fusion=f, utility=c[f'u/{f}']) for c in cs for f in ('x', 'y')]

  def inputs(row, rec, metric, outdir):
    assert rec['id'] == row['id'] and metric == 'utility' and outdir == str(tmp_path)
    return 'mean', None, np.arange(50), vals[row['seed']][row['fusion']], 'requests'

  fam = report.Family('fus', 'fusions', [('x', 'y')], ('utility',), lambda c: c['fusion'],
                      expand=expand, inputs=inputs)
  boot = report.bootstrap_family(fam, cells, records, str(tmp_path))
  assert len(boot) == 1 and boot[0]['paired'] and boot[0]['unit'] == 'requests'
  want = np.mean([vals[s]['x'].mean() - vals[s]['y'].mean() for s in range(3)])
  assert boot[0]['mean'] == pytest.approx(want) and boot[0]['seeds'] == [0, 1, 2]
  report.write_csv(boot, str(tmp_path / 'bootstrap.csv'))
  res = report.compare(cells, fam, report.read_csv(str(tmp_path / 'bootstrap.csv')))
  assert res[0]['seed']['mean'] == pytest.approx(want) and res[0]['family_size'] == 1
  assert res[0]['resolved'] and res[0]['boot_interval'][0] > 0
  assert 'requests (50, 2000 draws)' in report.write_comparisons(res, fam, str(tmp_path))
  # None from the hook: no bootstrap for that test, and the table says so.
  none = dataclasses.replace(fam, inputs=lambda *a: None)
  assert report.bootstrap_family(none, cells, records, str(tmp_path)) == []
  assert 'n/a (no bootstrap inputs)' in report.write_comparisons(
      report.compare(cells, none, []), none, str(tmp_path))
  # Both sides of a test must resample one kind.
  mixed = dataclasses.replace(fam, inputs=lambda row, *a: inputs(row, *a) if row['fusion'] == 'x'
                              else ('spearman',) + inputs(row, *a)[1:])
  with pytest.raises(ValueError, match="kind 'mean' for c0 and 'spearman'"):
    report.bootstrap_family(mixed, cells, records, str(tmp_path))
