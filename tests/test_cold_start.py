"""Cold start (seqrec_jax/data/cold_start.py): the new-item / new-user split, the content path
that scores an unseen id, the popularity-within-category baseline and the tie-aware metrics."""
from __future__ import annotations

import numpy as np

from seqrec_jax.data import cold_start as C
from seqrec_jax.data import retrieval as D


def _logs() -> D.Logs:
  """8 users x 6 interactions at times 0..5 (T = 3 at cutoff 0.6), 12 items in 3 categories;
  item 12 is first seen at time 4."""
  rng = np.random.default_rng(0)
  user = np.repeat(np.arange(1, 9), 6)
  time = np.tile(np.arange(6), 8)
  item = np.stack([rng.permutation(np.arange(1, 12))[:6] for _ in range(8)]).reshape(-1)
  item[(user == 2) & (time == 4)] = 12
  cate = np.concatenate([[0], np.arange(12) % 3 + 1])
  return D._ordered('toy', user, item, time, cate, 4, {})   # pylint: disable=protected-access


def test_cold_split_new_items_new_users_and_cells():
  cs = C.cold_split(_logs(), cutoff=0.6, new_user_frac=0.25, launch_frac=0.2, per_user=2)
  sp, lg = cs.split, cs.split.logs
  assert cs.cutoff == 3 and len(cs.new_users) == 2 and len(cs.launched) == 2
  before = lg.time < cs.cutoff
  assert (sp.part[before] != D.TEST).all() and (sp.part[~before] == D.TEST).all()
  train_items = set(lg.item[sp.train].tolist())
  target = lg.item[sp.test_row]
  new_item = np.isin(cs.cell, (1, 3))
  assert new_item.any() and not set(target[new_item].tolist()) & train_items
  assert set(target[~new_item].tolist()) <= train_items
  assert 12 in target[new_item]                        # first seen after T: new by nature
  assert not np.isin(lg.item[before], cs.launched).any()      # launched at T
  # New users: no interaction before T, one request with an empty history.
  q = D.queries(sp, 'test', 4)
  new_user = np.isin(cs.cell, (2, 3))
  np.testing.assert_array_equal(np.isin(q['user_id'], cs.new_users), new_user)
  assert (q['hist_item'][new_user] == 0).all() and (q['hist_item'][~new_user] > 0).any(1).all()
  assert not np.isin(lg.user[sp.part != D.TEST], cs.new_users).any()
  assert np.bincount(q['user_id'][new_user]).max() == 1
  # The cells partition the requests; warm users keep up to per_user requests.
  assert len(cs.cell) == len(sp.test_row) == len(q['target'])
  assert ((cs.cell >= 0) & (cs.cell < len(C.CELLS))).all()
  assert np.bincount(q['user_id'][~new_user]).max() == 2
  cand = C.sample_candidates(cs, 5)
  np.testing.assert_array_equal(cand[:, 0], target)
  assert (cand[:, 1:] != target[:, None]).all() and (cand > 0).all()


def test_content_path_scores_unseen_ids_by_their_content():
  """Two-tower and DIN with item content and the unknown-id mapping: two unseen items score as
  their content says (different categories / genres -> different scores; same content ->
  the same score whatever the id), while raw ids would score each unseen id by its own row."""
  import jax
  from seqrec_jax.configs import default
  from seqrec_jax import models
  from seqrec_jax.data.features import DataSpec, FeatureSpec
  spec = DataSpec(9, 10, 4, 3, sparse=(FeatureSpec('genre2', 5, 'item'),))
  table = np.array([[0], [1], [2], [3], [4], [1], [2], [3], [4], [4]], np.int32)
  unknown = np.zeros(10, bool)
  unknown[[7, 8, 9]] = True                            # never trained
  # Rows: unseen 7 (cate 1), unseen 8 (cate 2), unseen 9 (cate 2, same genre as 8), seen 1.
  rows = {'user_id': np.ones(4, np.int32), 'target_item': np.array([7, 8, 9, 1], np.int32),
          'target_cate': np.array([1, 2, 2, 1], np.int32),
          'hist_items': np.array([[0, 1, 2]] * 4, np.int32),
          'hist_cates': np.array([[0, 1, 2]] * 4, np.int32),
          'hist_mask': np.array([[False, True, True]] * 4), 'label': np.zeros(4, np.float32)}
  mine = C.with_content(rows, table, unknown)
  np.testing.assert_array_equal(mine['target_item'], [0, 0, 0, 1])
  np.testing.assert_array_equal(mine['sparse'][:, 0], [3, 4, 4, 1])
  for name in ('two_tower', 'din'):
    cfg = default.get_config().model
    cfg.update(name=name, embed_dim=4, hidden=(8,))
    cfg.attention.hidden = (8,)
    m = models.build_model(cfg, spec)
    batch = {k: v for k, v in mine.items() if k != 'label'}
    v = jax.jit(lambda b, m=m: m.init(jax.random.key(0), b, train=False))(batch)
    apply = jax.jit(lambda v, b, m=m: m.apply(v, b, train=False))
    s = np.asarray(apply(v, batch)).reshape(-1)
    assert abs(s[0] - s[1]) > 1e-4, (name, s)          # unseen, other category and genre
    assert abs(s[1] - s[2]) < 1e-6, (name, s)          # unseen, same content: same score
    raw = C.with_content(rows, table, None)
    r = np.asarray(apply(v, {k: x for k, x in raw.items() if k != 'label'})).reshape(-1)
    assert abs(r[1] - r[2]) > 1e-6, (name, r)          # raw ids: each its own (random) row


def test_category_popularity_against_a_hand_computation():
  cs = C.cold_split(_logs(), cutoff=0.6, new_user_frac=0.25, launch_frac=0.2)
  sp, lg = cs.split, cs.split.logs
  q = D.queries(sp, 'test', 4)
  cand = C.sample_candidates(cs, 6, seed=1)
  got = C.category_popularity(sp, q['hist_cate'], cand)
  cnt = np.bincount(lg.item[sp.train], minlength=lg.num_items)
  n_real = lg.num_cates - 1
  for e in range(len(cand)):
    h = [c for c in q['hist_cate'][e] if c > 0]
    for j, i in enumerate(cand[e]):
      c = lg.cate_of_item[i]
      members = [x for x in range(1, lg.num_items) if lg.cate_of_item[x] == c]
      want = ((h.count(c) + 1) / (len(h) + n_real)
              * (cnt[i] + 1) / (sum(cnt[x] for x in members) + len(members)))
      np.testing.assert_allclose(got[e, j], want, rtol=1e-12)


def test_rank_metrics_expect_over_ties():
  s = np.array([[5.0, 1, 2, 3],       # target first: HR 1, NDCG 1, AUC 1
                [1.0, 1, 1, 1],       # all tied: position 0..3 equally likely
                [0.0, 1, 2, 3]])      # last
  m = C.rank_metrics(s, k=2)
  np.testing.assert_allclose(m['hr@2'], [1, 0.5, 0])
  np.testing.assert_allclose(m['ndcg@2'], [1, (1 + 1 / np.log2(3)) / 4, 0])
  np.testing.assert_allclose(m['auc'], [1, 0.5, 0])


def test_tiny_cold_start_study_reports_and_rechecks(tmp_path):
  """The cold-start study end to end on small planted-interest logs (DIN with the unknown-id
  bucket, 2 seeds, a few steps; the two baselines): cells.csv holds each (model, seed) with
  the per-cell means of its per-request values, the bootstrap's point difference is the
  seed-averaged per-request difference (NumPy), `recheck cold_start` reproduces the published
  tables from a scratch docs/ and fails on a changed number in cells.csv."""
  from experiments import cold_start as study
  from experiments import recheck, report
  din, base = 'DIN + unknown-id bucket', 'popularity within category'
  st = study.Settings(
      num_steps=20, max_len=8, max_warm=120, split=study.SPLITS['synthetic'], models=(din,),
      synthetic=dict(num_users=400, num_items=120, num_cates=8, max_len=8, min_len=6,
                     impressions_per_user=8, max_interests=2),
      # Compiling is most of the test's time: a one-layer MLP, 2 capacity buckets (one packed
      # train shape, one eval shape) and one evaluation (and checkpoint), at the last step.
      model_overrides={'model.embed_dim': 8, 'model.hidden': (16,),
                       'model.attention.hidden': (16,), 'optim.learning_rate': 1e-2,
                       'data.pack_buckets': 2, 'train.eval_every': 20})
  res = study.run_dataset('synthetic', [0, 1], str(tmp_path), lambda m: None, st)
  docs, out = tmp_path / 'docs', str(tmp_path / 'out')
  docs.mkdir()
  study.report_dataset(res, out, [0, 1], res['seconds'], '1.0', publish_to='cold_start/synthetic',
                       docs=str(docs))
  pub = docs / 'results' / 'cold_start' / 'synthetic'
  cells = report.read_csv(str(pub / 'cells.csv'))
  assert len(cells) == 2 * (len(study.BASELINES) + 1)
  cell, mets = res['cell'], res['metrics']
  assert all((cell == i).any() for i in range(len(study.SHOWN_CELLS))), np.bincount(cell)
  c = next(c for c in cells if c['model'] == din and c['seed'] == 1)
  assert c['new item/auc'] == mets[din][1]['auc'][cell == 1].mean()
  # Popularity within category ranks a warm target far above chance on interest data.
  pc = [c for c in cells if c['model'] == base]
  assert pc[0]['warm/auc'] > 0.7, pc[0]
  boot = report.read_csv(str(pub / 'bootstrap.csv'))
  b = next(x for x in boot if x['row'] == din and x['baseline'] == base
           and x['metric'] == 'warm/auc')
  want = np.mean([mets[din][s]['auc'][cell == 0] - mets[base][s]['auc'][cell == 0]
                  for s in (0, 1)])
  np.testing.assert_allclose(b['mean'], want, rtol=1e-12)
  assert b['n_units'] == len(np.unique(res['users'][cell == 0])) and b['unit'] == 'users'
  text = (pub / 'cold_start_diffs.md').read_text()
  assert 'Family: 6 test(s)' in text, text         # 1 pair x 2 metrics x 3 cells
  logs = []
  assert recheck.recheck('cold_start', str(docs), log=logs.append), logs
  c['warm/hr@10'] += 0.01
  report.write_csv(cells, str(pub / 'cells.csv'))
  logs = []
  assert not recheck.recheck('cold_start', str(docs), log=logs.append)
  assert any('cold_start.md differs' in line for line in logs), logs
  assert any('cold_start_diffs.md differs' in line for line in logs), logs
