"""Two-tower retrieval as a task on the training loop (tasks/two_tower.py): it learns planted
clusters far above popularity, writes its retrieval metrics, stops early, resumes bit for bit
after a SIGKILL; its loss modes; the TwoTowerChannel read back from the workdir against brute
force; the towers' field sides.

The registry contract tests (tests/test_models_registry.py) cover 'two_tower' as a ranker too.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from seqrec_jax import checkpoint, models
from seqrec_jax.configs import load_config
from seqrec_jax.data import video
from seqrec_jax.data.features import FeatureSpec
from seqrec_jax.retrieval import losses as L
from seqrec_jax.retrieval import two_tower_study as S
from seqrec_jax.retrieval.popularity import Popularity
from seqrec_jax.retrieval.two_tower import channels, model_batch
from seqrec_jax.tasks.two_tower import TwoTowerTask

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import two_tower_run as R  # noqa: E402  pylint: disable=g-import-not-at-top
from kill import kill_after_checkpoint  # noqa: E402

ROOT = R.ROOT


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """(workdir, summary) of tests/two_tower_run.py's group of 2 runs, trained in process."""
  wd = str(tmp_path_factory.mktemp('two_tower') / 'run')
  return wd, R.run(wd)


def _metrics(wd):
  with open(os.path.join(wd, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_learns_planted_clusters_far_above_popularity(trained):
  wd, out = trained
  ds = R.dataset()
  test = ds.splits['test'].all()
  pop = Popularity(ds.info['item_count']).retrieve(test['hist_items'], 10)[0]
  pop_recall = float((pop == test['target_item'][:, None]).any(1).mean())
  assert len(out['runs']) == 2
  for run in out['runs']:
    # Ideal: 10 of the cluster's 20 - 8 unseen items ~ 0.8; popularity ~ 10/120.
    assert run['eval/test/recall@10'] > max(0.4, 4 * pop_recall), (run, pop_recall)
    assert run['eval/valid/recall@50'] >= run['eval/valid/recall@10']
  # Every evaluation of every run is in metrics.jsonl, with the retrieval metrics.
  evals = [r for r in _metrics(wd) if 'eval/valid/recall@10' in r]
  assert sorted((r['step'], r['run']) for r in evals) == [
      (s, r) for s in (30, 60, 90, 120) for r in (0, 1)]
  assert {'eval/valid/ndcg@10', 'eval/valid/recall@50'} <= set(evals[0])
  first = [r['eval/valid/recall@10'] for r in evals if r['step'] == 30]
  assert all(r['eval/valid/recall@10'] > max(first) for r in evals if r['step'] == 120)
  # The channels read back from the workdir retrieve what the task evaluated.
  chans = channels(wd, ds)
  for run, ch in zip(out['runs'], chans):
    ids, _ = ch.retrieve(test['hist_items'], 10)
    got = float((ids == test['target_item'][:, None]).any(1).mean())
    assert got == pytest.approx(run['eval/test/recall@10'], abs=1e-9)


def test_channel_equals_brute_force_and_excludes_history(trained):
  ch = channels(trained[0], R.dataset(), chunk=100)[0]
  hist = R.dataset().splits['test'].all()['hist_items'][:150]
  ids, scores = ch.retrieve(hist, 15)
  assert ids.shape == (150, 15) and ids.dtype == np.int32 and scores.dtype == np.float32
  u = ch.user_vectors(hist)
  full = u @ ch.item_vectors.T                                        # [U, I]
  for r in range(len(hist)):
    full[r, 0] = -np.inf
    full[r, hist[r][hist[r] > 0]] = -np.inf
  want = np.argsort(-full, axis=1, kind='stable')[:, :15]
  np.testing.assert_allclose(scores, np.take_along_axis(full, want, 1), rtol=1e-5, atol=1e-5)
  assert (ids == want).mean() > 0.99                                  # ties may swap
  assert not (ids == 0).any()
  assert not np.any([np.isin(ids[r], hist[r][hist[r] > 0]).any() for r in range(len(hist))])
  assert (np.diff(scores, axis=1) <= 0).all()
  kept, _ = ch.retrieve(hist, 15, exclude_history=False)
  assert np.any([np.isin(kept[r], hist[r]).any() for r in range(len(hist))])


def test_cosine_towers_and_forward(trained):
  ch = channels(trained[0], R.dataset())[1]
  test = R.dataset().splits['test'].all()
  temp = ch.model.temperature
  u, v = ch.user_vectors(test['hist_items']), ch.item_vectors * temp
  np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(v[1:], axis=1), 1.0, rtol=1e-5)
  cate = ch.cate_of_item
  b = model_batch(np.zeros_like(test['user_id']), test['hist_items'],
                  cate[test['hist_items']], test['target_item'], cate[test['target_item']])
  logits = jax.jit(ch.model.apply)({'params': ch.params}, b)
  np.testing.assert_allclose(logits, (u * v[test['target_item']]).sum(1) / temp,
                             rtol=1e-4, atol=1e-4)


def test_early_stopping_on_valid_recall(tmp_path):
  """A learning rate too small to move recall@10: the first evaluation stays the best, and
  with patience 1 every run stops at the second (step 20 of 120)."""
  out = R.run(str(tmp_path), {'optim.learning_rate': 1e-9, 'train.eval_every': 10,
                              'train.patience': 1, 'train.num_steps': 120})
  for run in out['runs']:
    assert run['best_step'] == 10 and run['steps'] == 20, run
  assert max(r['step'] for r in _metrics(str(tmp_path)) if 'eval/valid/recall@10' in r) == 20


def test_sigkill_mid_training_then_rerun_is_bit_identical(trained, tmp_path):
  """The run of `trained`, SIGKILLed in a subprocess after its step-30 checkpoint and rerun
  (in process): the same best-valid and final states of both runs, bit for bit, and the same metrics
  (the negatives of each step come from (seed, step), the batch order from (seed, epoch))."""
  wd = str(tmp_path / 'killed')
  # Slow steps, so the kill lands mid-run.
  proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'tests', 'two_tower_run.py'), wd],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, 'SEQREC_TEST_STEP_DELAY': '0.05'})
  killed_at = kill_after_checkpoint(proc, os.path.join(wd, 'checkpoints'), 30, timeout=300)
  assert 30 <= killed_at < 120, killed_at
  got, want = R.run(wd), trained[1]          # the rerun resumes in process
  for g, w in zip(got['runs'], want['runs']):
    for k, v in w.items():
      if k.startswith('eval/') or k in ('best_step', 'steps'):
        assert g[k] == v, (k, g[k], v)
  # The best-valid and the final state (params, optimiser state, step) of each run.
  for d in ('best', os.path.join('checkpoints', '120')):
    (a, _, at), (b, _, bt) = (checkpoint.read_source(os.path.join(w, d)) for w in (wd, trained[0]))
    assert at.rsplit('/', 1)[1] == bt.rsplit('/', 1)[1]
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_every_loss_mode_descends_with_catalogue_and_hard_negatives(trained):
  """Each loss (softmax with M shared catalogue columns; the others with per-row count^0.75
  negatives), hard negatives at rate 0.5, through the task's prepare_batch and loss: the
  gradient is finite, reaches both towers, and a small step along it lowers that loss (same
  negatives). One compiled program for all four."""
  ds = R.dataset()
  rows = ds.splits['train'].__getitems__(np.arange(128))
  rows['hard_item'] = np.random.default_rng(0).integers(
      0, ds.spec.num_items, (128, 3)).astype(np.int32)
  tasks = [TwoTowerTask(R.config({'train.two_tower.loss': loss,
                                  'train.two_tower.num_catalogue': 16,
                                  'train.two_tower.num_negatives': 4,
                                  'train.two_tower.hard_negative_rate': 0.5}), ds)
           for loss in L.LOSSES]
  batches = [t.prepare_batch(rows, seed=0, step=3) for t in tasks]
  assert 'cat_item' in batches[0] and batches[1]['neg_item'].shape == (128, 4)
  assert batches[0]['hard_keep'].any() and not batches[0]['hard_keep'].all()
  params = checkpoint.load_best(trained[0]).variables[0]['params']        # trained towers
  fns = [lambda p, b, t=t: t.loss({'params': p}, b, None, {}).loss for t in tasks]
  # Compile-bound: XLA's backend optimisation level 0 halves this program's compile on CPU.
  value_and_grads = jax.jit(
      lambda ps, bs: [jax.value_and_grad(f)(p, b) for f, p, b in zip(fns, ps, bs)],
      compiler_options={'xla_backend_optimization_level': 0})
  out = value_and_grads([params] * 4, batches)
  step = lambda g: jax.tree.map(lambda a, d: a - 0.02 * d / optax.tree.norm(g), params, g)
  after = value_and_grads([step(g) for _, g in out], batches)
  for t, (loss, g), (loss2, _) in zip(tasks, out, after):
    norms = [float(optax.tree.norm(g[k])) for k in ('item_tower', 'user_tower', 'embed')]
    assert np.isfinite(float(loss)) and min(norms) > 0, (t.cfg.loss, norms)
    assert float(loss2) < float(loss), (t.cfg.loss, loss, loss2)
  # prepare_batch is a function of (seed, step): what makes a resume draw the same negatives.
  again = tasks[1].prepare_batch(rows, seed=0, step=3)
  np.testing.assert_array_equal(again['neg_item'], batches[1]['neg_item'])
  assert not np.array_equal(tasks[1].prepare_batch(rows, seed=0, step=4)['neg_item'],
                            batches[1]['neg_item'])


def test_two_tower_loss_reads_the_vectors_in_candidate_ids_order():
  """two_tower_loss on the item vectors of candidate_ids against NumPy written from each
  formula with the item table: softmax with catalogue and hard columns, log-Q corrected (a kept
  hard slot adds `rate` to its Q), and hinge with per-row and hard negatives."""
  rng = np.random.default_rng(0)
  V = rng.normal(size=(12, 3)).astype(np.float32)                    # item table [I, D]
  u = rng.normal(size=(4, 3)).astype(np.float32)
  lq = np.log(rng.uniform(0.1, 2.0, 12)).astype(np.float32)
  b = {'target_item': np.array([1, 2, 1, 5], np.int32), 'cat_item': np.array([2, 7], np.int32),
       'neg_item': np.array([[3, 1], [4, 6], [2, 8], [5, 9]], np.int32),
       'hard_item': np.array([[9], [10], [11], [3]], np.int32),
       'hard_keep': np.array([[True], [False], [True], [True]])}
  rate, t = 0.5, 0.1
  f = jax.jit(L.two_tower_loss, static_argnums=0)   # jitted: ~10x faster than eager on CPU
  got = {loss: float(f(loss, u, V[np.asarray(L.candidate_ids(loss, b))], b, temperature=t,
                       log_q=lq, hard_rate=rate, margin=0.3)) for loss in ('softmax', 'hinge')}
  pos, total = b['target_item'], 0.0
  for i in range(4):
    cols = [(j, lq[j]) for k, j in enumerate(pos) if k == i or j != pos[i]]      # in-batch
    cols += [(j, lq[j]) for j in b['cat_item'] if j != pos[i]]                    # catalogue
    cols += [(j, np.log(np.exp(lq[j]) + rate))
             for j, keep in zip(b['hard_item'][i], b['hard_keep'][i]) if keep]
    z = np.array([u[i] @ V[j] / t - q for j, q in cols], np.float64)
    total += np.log(np.exp(z).sum()) - (u[i] @ V[pos[i]] / t - lq[pos[i]])
  assert got['softmax'] == pytest.approx(total / 4, rel=1e-5)
  pairs = [max(0.0, u[i] @ V[j] - u[i] @ V[pos[i]] + 0.3)
           for i in range(4) for j, keep in [(n, n != pos[i]) for n in b['neg_item'][i]]
           + list(zip(b['hard_item'][i], b['hard_keep'][i])) if keep]
  assert got['hinge'] == pytest.approx(np.mean(pairs), rel=1e-5)


def test_task_errors_name_the_key():
  ds = R.dataset()
  with pytest.raises(ValueError, match=r"select_metric='recall@20'.*ks=\(10, 50\)"):
    TwoTowerTask(R.config({'train.two_tower.select_metric': 'recall@20'}), ds)
  with pytest.raises(ValueError, match=r"info\['item_count'\]"):
    TwoTowerTask(R.config(), dataclasses.replace(ds, info={'cate_of_item': [0] * 121}))
  with pytest.raises(ValueError, match="model.name='two_tower', not 'din'"):
    TwoTowerTask(R.config({'model.name': 'din'}), ds)


def test_study_mines_hard_negatives_and_summarizes_paired_differences(trained):
  rows = R.dataset().splits['train'].all()
  hard = S.mine_hard(channels(trained[0], R.dataset())[0], rows, 5, 20, per_row=3)
  assert hard.shape == (len(rows['target_item']), 3)
  liked = {(u, i) for u, i in zip(rows['user_id'], rows['target_item'])}
  assert not any((u, h) in liked for u, row in zip(rows['user_id'], hard) for h in row if h)
  in_hist = (hard[:, :, None] == rows['hist_items'][:, None, :]) & (hard[:, :, None] > 0)
  assert not in_hist.any()
  assert (hard > 0).mean() > 0.5                 # mostly real items, from the same cluster
  table = S.summarize(
      [{'variant': 'softmax', 'split': 'test', 'seed': s, 'recall@50': r}
       for s, r in enumerate([0.20, 0.22, 0.21])]
      + [{'variant': 'bce', 'split': 'test', 'seed': s, 'recall@50': r}
         for s, r in enumerate([0.10, 0.13, 0.10])])
  # Paired differences -0.10, -0.09, -0.11: mean -0.100, sd 0.01, t(0.975, 2) = 4.303.
  assert '| bce | 0.110 ± 0.017 | -0.100 ± 0.025 (resolved) |' in table, table


# ------------------------------------------------ field sides (issue 28.3): the user tower
# reads user-side fields only, the item tower item-side ones, context fields neither.

VIDEO = dict(num_users=30, num_items=60, num_cates=5, max_len=6, candidates=10,
             requests_per_user=1, interest_alpha=0.3, kappa=4.0, valid_frac=0.0,
             test_frac=0.0, seed=0)


def _video_model(**replace):
  """(model, variables, rows of one request): one user, 10 candidates of distinct durations."""
  ds, orc = video.generate_with_oracle(**VIDEO)
  rows = np.flatnonzero(orc['train']['request'] == orc['train']['request'][0])
  req = ds.splits['train'].__getitems__(rows)
  spec = dataclasses.replace(ds.spec, **replace)
  cfg = load_config('seqrec_jax/configs/test.py:two_tower', {'model.use_user_embedding': True})
  model = models.build_model(cfg.model, spec)
  return model, model.init(jax.random.key(0), req), req


def test_video_user_vector_ignores_the_candidate_and_forward_is_u_dot_v():
  model, v, req = _video_model()
  assert np.ptp(req['sparse']) > 0 and np.ptp(req['dense']) > 0
  assert (req['user_id'] == req['user_id'][0]).all()
  u = np.asarray(model.apply(v, req, method=model.user_vectors))
  np.testing.assert_allclose(u, np.repeat(u[:1], len(u), 0), rtol=1e-6, atol=1e-7)
  feats = model.spec.side_inputs(req, 'item')
  items = np.asarray(model.apply(v, req['target_item'], req['target_cate'], feats,
                                 method=model.item_vectors))
  want = np.asarray(model.apply(v, req))[:, 0]                        # the shared similarity
  np.testing.assert_allclose((u[0] * items).sum(-1) / model.temperature
                             + np.asarray(v['params']['task_bias'])[0], want,
                             rtol=1e-4, atol=1e-4)
  # The item-side duration reaches the item tower.
  longer = dict(req, dense=req['dense'] + 1.0)
  assert not np.allclose(np.asarray(model.apply(v, longer))[:, 0], want)


def test_context_fields_enter_neither_tower():
  model, v, req = _video_model(
      sparse=(FeatureSpec('dur_bucket', 11, side='context'),), dense_sides=('context',))
  want = np.asarray(model.apply(v, req))
  other = dict(req, sparse=np.roll(req['sparse'], 1, 0), dense=req['dense'] * -3.0)
  np.testing.assert_allclose(np.asarray(model.apply(v, other)), want, rtol=1e-6)
  assert not any('sparse_' in k for k in v['params']['embed'])      # no table, no parameter


def test_item_vectors_need_the_item_side_features():
  model, v, req = _video_model()
  with pytest.raises(ValueError, match=r"item-side sparse fields \['dur_bucket'\]"):
    model.apply(v, req['target_item'], req['target_cate'], method=model.item_vectors)
