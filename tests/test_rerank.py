"""Re-ranking against brute force: greedy DPP (full and sliding window) vs greedy log-det by
np.linalg.slogdet, MMR vs a Python loop, scattering vs a first-fit loop and its rule; batched
== per request; padded candidates never picked. Random cases use fixed seeds."""
import numpy as np
import pytest

from seqrec_jax.rerank import dpp as dpp_lib
from seqrec_jax.rerank import metrics, mmr, scatter, similarity


def _psd(rng, n, d=None):
  """A random PSD kernel with unit diagonal [n, n] (rank d if given, else full)."""
  a = rng.normal(size=(n, d or n))
  s = a @ a.T + (0.0 if d else 0.1) * np.eye(n)
  q = 1.0 / np.sqrt(np.diag(s))
  return (s * q[:, None] * q[None, :]).astype(np.float32)


def _brute_dpp(rel, s, valid, k, alpha, window=None, eps=1e-6):
  """Greedy log det L_{W + i}, L = diag(exp(alpha rel)) S diag(exp(alpha rel)), W = the last
  window - 1 picks (all picks if window is None); items with det S_{W+i} / det S_W <= eps skip."""
  rel, s = rel.astype(np.float64), s.astype(np.float64)
  r = np.exp(alpha * rel)
  big = r[:, None] * s * r[None, :]
  picks = []
  for _ in range(k):
    w = picks if window is None else picks[max(0, len(picks) - (window - 1)):]
    ld_w = np.linalg.slogdet(s[np.ix_(w, w)])[1] if w else 0.0
    best, bj = -np.inf, -1
    for i in range(len(rel)):
      if not valid[i] or i in picks:
        continue
      idx = w + [i]
      sign_s, ld_s = np.linalg.slogdet(s[np.ix_(idx, idx)])
      if sign_s <= 0 or np.exp(ld_s - ld_w) <= eps:
        continue
      ld = np.linalg.slogdet(big[np.ix_(idx, idx)])[1]
      if ld > best:
        best, bj = ld, i
    if bj < 0:
      break
    picks.append(bj)
  return picks + [-1] * (k - len(picks))


def _brute_mmr(rel, sim, valid, k, lam):
  picks = []
  for _ in range(k):
    best, bj = -np.inf, -1
    for i in range(len(rel)):
      if valid[i] and i not in picks:
        pen = max(sim[i, j] for j in picks) if picks else 0.0
        score = lam * rel[i] - (1 - lam) * pen
        if score > best:
          best, bj = score, i
    if bj < 0:
      break
    picks.append(bj)
  return picks + [-1] * (k - len(picks))


def _brute_scatter(cates, valid, m, w):
  left = [i for i in range(len(cates)) if valid[i]]
  out = []
  while left:
    recent = [cates[i] for i in out[max(0, len(out) - (w - 1)):]] if w > 1 else []
    fit = [i for i in left if recent.count(cates[i]) < m]
    if not fit:
      break
    out.append(fit[0])
    left.remove(fit[0])
  return out, left


@pytest.mark.parametrize('window', [None, 2, 3, 5])
def test_dpp_equals_brute_force_greedy_log_det(window):
  rng = np.random.default_rng(0 if window is None else window)
  r, n, k = 8, 12, 8
  s = np.stack([_psd(rng, n, d=None if i % 2 else 6) for i in range(r)])  # full rank / rank 6
  rel = rng.normal(size=(r, n)).astype(np.float32)
  valid = rng.random((r, n)) < 0.85
  for alpha in (0.0, 0.3, 1.5):
    got = np.asarray(dpp_lib.dpp(rel, s, k, alpha=alpha, valid=valid, window=window))
    want = [_brute_dpp(rel[i], s[i], valid[i], k, alpha, window) for i in range(r)]
    np.testing.assert_array_equal(got, want)


def test_dpp_ties_go_to_the_lower_index_like_brute_force():
  rng = np.random.default_rng(7)
  for _ in range(5):
    n, k = 14, 10
    cates = rng.integers(0, 4, (1, n))
    rel = rng.choice([0.0, 0.5, 1.0], (1, n)).astype(np.float32)      # tied relevances
    s = np.asarray(similarity.category(cates, identity=0.3))
    for alpha, window in [(0.0, None), (0.7, None), (0.7, 3), (2.0, 4)]:
      got = np.asarray(dpp_lib.dpp(rel, s, k, alpha=alpha, window=window))[0]
      want = _brute_dpp(rel[0], s[0], np.ones(n, bool), k, alpha, window)
      np.testing.assert_array_equal(got, want)
  # S = I: the greedy is the ranker's order, ties by index.
  rel = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]], np.float32)
  got = dpp_lib.dpp(rel, np.eye(5, dtype=np.float32)[None], 5, alpha=1.0)
  assert np.asarray(got).tolist() == [[1, 2, 4, 3, 0]]


def test_dpp_window_at_least_k_plus_one_equals_full_and_stops_on_a_singular_kernel():
  rng = np.random.default_rng(3)
  s = np.stack([_psd(rng, 10) for _ in range(4)])
  rel = rng.normal(size=(4, 10)).astype(np.float32)
  full = np.asarray(dpp_lib.dpp(rel, s, 6, alpha=0.5))
  np.testing.assert_array_equal(np.asarray(dpp_lib.dpp(rel, s, 6, alpha=0.5, window=7)), full)
  # Pure category kernel (rank 3): one item per category, then nothing adds volume.
  cates = np.array([[1, 1, 2, 2, 3, 3, 1]])
  picks = np.asarray(dpp_lib.dpp(np.zeros((1, 7)), similarity.category(cates), 5, alpha=0.0))
  assert picks.tolist() == [[0, 2, 4, -1, -1]]


def test_dpp_alpha_from_theta_and_argument_errors():
  assert dpp_lib.alpha_from_theta(0.5) == 0.5 and dpp_lib.alpha_from_theta(0.0) == 0.0
  s, rel = np.eye(3, dtype=np.float32)[None], np.zeros((1, 3))
  with pytest.raises(ValueError, match='theta=1.0'):
    dpp_lib.alpha_from_theta(1.0)
  with pytest.raises(ValueError, match='window=1'):
    dpp_lib.dpp(rel, s, 2, alpha=1.0, window=1)
  with pytest.raises(ValueError, match='k=4'):
    dpp_lib.dpp(rel, s, 4, alpha=1.0)
  with pytest.raises(ValueError, match=r'sim \(3, 3\)'):
    dpp_lib.dpp(rel, s[0], 2, alpha=1.0)
  with pytest.raises(ValueError, match='lam=1.5'):
    mmr.mmr(rel, s, 2, lam=1.5)


@pytest.mark.parametrize('seed', range(4))
def test_mmr_equals_python_loop(seed):
  rng = np.random.default_rng(seed)
  r, n, k = 4, 15, 9
  emb = rng.normal(size=(r, n, 5)).astype(np.float32)
  sim = np.asarray(similarity.cosine(emb, shift=False))
  rel = rng.random((r, n)).astype(np.float32)
  rel[:, :3] = rel[:, 3:4]                                          # a tie
  valid = rng.random((r, n)) < 0.8
  for lam in (0.0, 0.3, 0.7, 1.0):
    got = np.asarray(mmr.mmr(rel, sim, k, lam=lam, valid=valid))
    want = [_brute_mmr(rel[i].astype(np.float64), sim[i].astype(np.float64), valid[i], k, lam)
            for i in range(r)]
    np.testing.assert_array_equal(got, want)
  top = np.asarray(mmr.mmr(rel, sim, k, lam=1.0))                   # lam = 1: ranker order
  np.testing.assert_array_equal(top, np.argsort(-rel, axis=1, kind='stable')[:, :k])


@pytest.mark.parametrize('method', ['dpp', 'dpp_window', 'mmr'])
def test_batched_equals_per_request_and_padding_is_never_picked(method):
  rng = np.random.default_rng(11)
  r, n, k = 6, 20, 12
  emb = rng.normal(size=(r, n, 8)).astype(np.float32)
  rel = rng.normal(size=(r, n)).astype(np.float32)
  valid = np.arange(n)[None, :] < rng.integers(5, n + 1, (r, 1))    # padded tails
  emb[~valid], rel[~valid] = np.nan, 1e9                            # garbage must not leak
  sim = np.asarray(similarity.cosine(np.where(valid[..., None], emb, 0.0), identity=0.05))
  kw = {'dpp': dict(alpha=0.8), 'dpp_window': dict(alpha=0.8, window=4),
        'mmr': dict(lam=0.6)}[method]
  fn = mmr.mmr if method == 'mmr' else dpp_lib.dpp

  def call(rl, sm, vl):
    return np.asarray(fn(rl, sm, k, valid=vl, **kw))

  batch = call(rel, sim, valid)
  for i in range(r):
    np.testing.assert_array_equal(batch[i], call(rel[i:i + 1], sim[i:i + 1], valid[i:i + 1])[0])
    picked = batch[i][batch[i] >= 0]
    assert valid[i][picked].all() and len(set(picked)) == len(picked)
    assert len(picked) == min(k, valid[i].sum())                    # -1 only past the valid


def test_similarities_are_psd_with_unit_diagonal():
  rng = np.random.default_rng(5)
  emb = rng.normal(size=(3, 9, 2)).astype(np.float32)
  emb[0, 4] = 0.0                                                   # a zero (padding) row
  for s in (similarity.cosine(emb), similarity.cosine(emb, identity=0.2),
            similarity.category(rng.integers(0, 3, (3, 9)), identity=0.1)):
    s = np.asarray(s, np.float64)
    np.testing.assert_allclose(np.diagonal(s, axis1=1, axis2=2), 1.0, atol=1e-6)
    assert np.linalg.eigvalsh(s).min() > -1e-6 and s.min() >= 0 and s.max() <= 1 + 1e-6
  with pytest.raises(ValueError, match='identity=2'):
    similarity.category(np.zeros((1, 2), int), identity=2)


def _random_lists(rng, r, n, cates_max):
  """r random lists padded to n: cates [r, n], valid [r, n] (random lengths and holes)."""
  cates = rng.integers(0, rng.integers(1, cates_max + 1, (r, 1)), (r, n))
  valid = (np.arange(n)[None, :] < rng.integers(1, n + 1, (r, 1))) & (rng.random((r, n)) < 0.9)
  return cates, valid


@pytest.mark.parametrize('m,w', [(1, 1), (1, 2), (1, 3), (2, 4), (2, 2), (3, 6)])
def test_scatter_equals_first_fit_and_satisfies_the_rule_on_random_lists(m, w):
  rng = np.random.default_rng(m * 10 + w)
  cates, valid = _random_lists(rng, 40, 24, 5)
  order, unplaced = (np.asarray(x) for x in scatter.scatter(cates, m, w, valid=valid))
  new = np.asarray(scatter.take(cates, order, fill=-1))
  assert not np.asarray(scatter.violations(new, m, w, valid=order >= 0)).any()
  for case in range(len(cates)):
    want_out, want_left = _brute_scatter(cates[case], valid[case], m, w)
    placed = order[case][order[case] >= 0]
    assert placed.tolist() == want_out, case
    assert np.flatnonzero(unplaced[case]).tolist() == want_left, case
    assert (order[case][len(placed):] == -1).all()
    for c in np.unique(cates[case]):                                # per category order kept
      same = [i for i in placed if cates[case, i] == c]
      assert same == sorted(same)


def test_scatter_is_a_no_op_on_lists_that_obey_the_rule_and_reports_the_rest():
  rng = np.random.default_rng(1)
  n, m, w = 12, 1, 3
  cates = rng.integers(0, 8, (400, n))
  ok = np.asarray(scatter.violations(cates, m, w)) == 0
  assert ok.sum() > 20
  order, unplaced = scatter.scatter(cates[ok], m, w)
  assert (np.asarray(order) == np.arange(n)).all() and not np.asarray(unplaced).any()
  order, unplaced = scatter.scatter(np.array([[1, 1, 1, 2, 1]]), 1, 3)
  assert np.asarray(order).tolist() == [[0, 3, -1, -1, -1]]        # 1 2 | 1 would repeat
  assert np.flatnonzero(np.asarray(unplaced)[0]).tolist() == [1, 2, 4]
  assert int(scatter.violations(np.array([[1, 1, 2, 1]]), 1, 3)[0]) == 2


def test_list_metrics():
  emb = np.array([[[1, 0], [0, 1], [1, 0], [-1, 0]]], np.float32)
  picks = np.array([[0, 2, 1, -1]])
  np.testing.assert_allclose(metrics.intra_list_distance(emb, picks), [(0 + 1 + 1) / 3])
  np.testing.assert_allclose(metrics.coverage(np.array([[5, 6, 5, 7]]), picks), [2 / 3])
  np.testing.assert_allclose(metrics.mean_relevance(np.array([[1., 2., 3., 9.]]), picks), [2.0])
