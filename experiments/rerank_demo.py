"""Re-ranking trade-offs and a bucketed A/B read-out on synthetic data (docs/rerank_and_buckets.md).

  python -m experiments.rerank_demo                    # both parts, ~30 s on 2 CPU cores
  python -m experiments.rerank_demo --part=ab          # only the A/B test
  python -m experiments.rerank_demo --part=rerank --requests=200

Part ab: users of seqrec_jax/data/synthetic.py (its oracle click probability p per
impression) are bucketed by seqrec_jax/bucketing.py into control / treatment / holdback of a
layer. Each user's 10 impressions are the candidates; a scorer shows the top SHOWN of them and
clicks are drawn with p. Control ranks by logit(p) + N(0, 2^2), treatment by logit(p) +
N(0, 1) (a better ranker, no model trained). The read-out is clicks per user (Welch CI) with
the SRM check; the truth it should cover is the expected difference over every user. A second
run loses LOST of the treatment users, all with <= 1 click (a logging bug): the lift
looks larger, and SRM flags it.

Part rerank: R requests, each the ranker's top-N of a catalogue whose items are category
latents plus noise (as synthetic.py builds them); relevance in (0, 1) from the user's
interests. Rows: the ranker's top-K, MMR at several lambda, greedy DPP at several theta (and a
sliding window, and a category kernel), each before and after category scattering (at most
RULE_M of a category in any RULE_W consecutive positions).
"""
from __future__ import annotations

import time

from absl import app, flags
import numpy as np

_PART = flags.DEFINE_enum('part', 'all', ['all', 'ab', 'rerank'], 'Which part to run.')
_REQUESTS = flags.DEFINE_integer('requests', 500, 'Re-ranking requests (part rerank).')
_USERS = flags.DEFINE_integer('users', 100_000, 'Synthetic users (part ab).')

SHOWN = 3
LOST = 0.05
N, K, LONG = 100, 10, 20                  # candidates, list shown, list scattered
CATALOGUE, CATES, DIM = 1000, 25, 16
RULE_M, RULE_W = 1, 3


def _p(p: float) -> str:
  return '< 1e-15' if p < 1e-15 else f'{p:.2g}'


def ab_test(num_users: int) -> str:
  from seqrec_jax import bucketing as bk  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  ds = synthetic.generate(**dict(synthetic.DEFAULTS, num_users=num_users))
  users = np.concatenate([ds.splits[s].arrays['user_id'] for s in ds.oracle_prob])
  p = np.concatenate([ds.oracle_prob[s] for s in ds.oracle_prob])
  order = np.argsort(users, kind='stable')
  users, p = users[order].reshape(num_users, -1)[:, 0], p[order].reshape(num_users, -1)
  rng = np.random.default_rng(0)
  logit = np.log(p / (1 - p))

  masks = {}
  for arm, noise in (('control', 2.0), ('treatment', 1.0)):
    m = np.zeros(p.shape, bool)
    s = logit + noise * rng.normal(size=p.shape)
    np.put_along_axis(m, np.argsort(-s, axis=1)[:, :SHOWN], True, 1)
    masks[arm] = m
  expected = {a: (p * m).sum(1) for a, m in masks.items()}       # E[clicks | user, arm]
  truth = float((expected['treatment'] - expected['control']).mean())

  layer = bk.Layer('rerank_ab', 1000, {'control': (0, 450), 'treatment': (450, 900)},
                   holdback=(900, 1000))
  other = bk.Layer('ranking_ab', 1000, {'a': (0, 500), 'b': (500, 1000)})
  arm = layer.assign(users)
  low_p = np.mean([bk.uniformity_test(bk.buckets(users, f'salt{i}', 1000), 1000)[1] < 0.01
                   for i in range(200)])
  seen = np.where((arm == 1)[:, None], masks['treatment'], masks['control'])
  clicks = ((rng.random(p.shape) < p) & seen).sum(1)
  # The logging bug: treatment users with at most one click are lost, LOST of the arm.
  silent = (arm == 1) & (clicks <= 1)
  lost = silent & (rng.random(len(users)) < LOST * (arm == 1).sum() / silent.sum())
  lines = ['| check | value |', '|---|---|',
           f'| users (control / treatment / holdback) | {(arm == 0).sum()} / {(arm == 1).sum()}'
           f' / {layer.in_holdback(users).sum()} |',
           f'| uniformity of buckets, chi-square p | '
           f'{bk.uniformity_test(layer.buckets(users), 1000)[1]:.3f} |',
           f'| same, share of 200 other salts with p < 0.01 (expect 0.01) | {low_p:.3f} |',
           f'| layers rerank_ab x ranking_ab independent, chi-square p | '
           f'{bk.independence_test(layer.buckets(users), other.buckets(users), 1000)[1]:.3f} |',
           f'| true effect: E[clicks/user], treatment - control | {truth:+.4f} |']
  rows = ['| read-out | control mean | diff (95% Welch CI) | rel. lift | p | SRM p |',
          '|---|---:|---:|---:|---:|---:|']
  bug = f'{lost.sum() / (arm == 1).sum():.1%} of treatment users (<= 1 click) lost'
  for name, keep in (('as logged', np.ones(len(users), bool)), (bug, ~lost)):
    r = bk.ab_readout(layer, users[keep], clicks[keep], 'control', 'treatment')
    c_mean = float(clicks[keep][arm[keep] == 0].mean())
    rows.append(f'| {name} | {c_mean:.4f} | {r["diff"]:+.4f} [{r["lo"]:+.4f}, {r["hi"]:+.4f}] '
                f'| {100 * r["rel"]:+.1f}% | {_p(r["p"])} | {_p(r["srm_p"])} |')
  return '\n'.join(lines) + '\n\n' + '\n'.join(rows)


def _requests(num: int, seed: int = 0):
  """-> rel [R, N] in (0, 1), emb [R, N, DIM], cates [R, N]: each request's top-N by rel."""
  rng = np.random.default_rng(seed)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
  u = unit(rng.normal(size=(CATES, DIM)))
  cate = rng.integers(0, CATES, CATALOGUE)
  v = unit(u[cate] + 0.6 * rng.normal(size=(CATALOGUE, DIM)) / np.sqrt(DIM))
  interests = np.argsort(rng.random((num, CATES)), 1)[:, :4]
  w = rng.dirichlet(np.full(4, 0.7), size=num)
  affinity = np.einsum('rc,ic->ri', np.einsum('rk,rkd->rd', w, u[interests]) * 2.0, v)
  score = 1 / (1 + np.exp(-(3.0 * affinity - 1.0 + 0.3 * rng.normal(size=affinity.shape))))
  top = np.argsort(-score, axis=1)[:, :N]
  rel = np.take_along_axis(score, top, 1).astype(np.float32)
  return rel, v[top].astype(np.float32), cate[top].astype(np.int32)


def rerank_table(num: int) -> str:
  import jax  # pylint: disable=g-import-not-at-top
  from seqrec_jax.rerank import dpp, metrics, mmr, scatter, similarity, stage  # pylint: disable=g-import-not-at-top
  rel, emb, cates = _requests(num)
  s_cos = similarity.cosine(emb, shift=False)
  s_dpp = similarity.cosine(emb, identity=0.05)
  s_cat = similarity.category(cates, identity=0.1)
  runs = [('ranker top-K', '-', lambda: np.broadcast_to(np.arange(LONG), (num, LONG)))]
  for lam in (0.9, 0.7, 0.5, 0.3):
    runs.append(('MMR (cosine)', f'lambda={lam}',
                 lambda lam=lam: mmr.mmr(rel, s_cos, LONG, lam=lam)))
  for theta in (0.9, 0.7, 0.5, 0.3):
    a = dpp.alpha_from_theta(theta)
    runs.append(('DPP (cosine)', f'theta={theta}', lambda a=a: dpp.dpp(rel, s_dpp, LONG, alpha=a)))
  a = dpp.alpha_from_theta(0.7)
  runs.append(('DPP (cosine), window 4', 'theta=0.7',
               lambda: dpp.dpp(rel, s_dpp, LONG, alpha=a, window=4)))
  runs.append(('DPP (category)', 'theta=0.7', lambda: dpp.dpp(rel, s_cat, LONG, alpha=a)))
  base = float(metrics.mean_relevance(rel, np.broadcast_to(np.arange(K), (num, K))).mean())
  out = [f'| method | trade-off | rel@{K} / ranker | ILD@{K} | categories@{K} | '
         f'violations@{K} | rel@{K} after scatter | ms / {num} requests |',
         '|---|---|---:|---:|---:|---:|---:|---:|']
  for name, arg, fn in runs:
    jax.block_until_ready(fn())                        # compile
    times = []
    for _ in range(3):
      t0 = time.perf_counter()
      picks = np.asarray(jax.block_until_ready(fn()))
      times.append(1e3 * (time.perf_counter() - t0))
    ms = min(times)
    top = picks[:, :K]
    full = stage.complete(picks, N)   # the picks, then the rest in ranker order (= index)
    order, _ = scatter.scatter(np.take_along_axis(cates, full, 1), RULE_M, RULE_W)
    after = np.asarray(scatter.take(full, order, fill=-1))[:, :K]
    list_c = np.take_along_axis(cates, np.maximum(top, 0), 1)
    assert (picks >= 0).all() and (after >= 0).all(), name          # every slot filled
    out.append(
        f'| {name} | {arg} | {float(metrics.mean_relevance(rel, top).mean()) / base:.3f} '
        f'| {float(metrics.intra_list_distance(emb, top).mean()):.3f} '
        f'| {float(metrics.coverage(cates, top).mean()) * K:.2f} '
        f'| {float(np.asarray(scatter.violations(list_c[:, :K], RULE_M, RULE_W)).mean()):.2f} '
        f'| {float(metrics.mean_relevance(rel, after).mean()) / base:.3f} '
        f'| {ms:.1f} |')
  return '\n'.join(out)


def main(argv):
  del argv
  from seqrec_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  xla_cpu.apply_defaults()
  t0 = time.time()
  if _PART.value in ('all', 'ab'):
    print(f'## A/B read-out ({_USERS.value} synthetic users, top {SHOWN} of 10 shown)\n')
    print(ab_test(_USERS.value) + '\n')
  if _PART.value in ('all', 'rerank'):
    print(f'## Re-ranking {_REQUESTS.value} requests: top-{K} of N={N} candidates '
          f'(scatter rule: <= {RULE_M} per category in {RULE_W} consecutive)\n')
    print(rerank_table(_REQUESTS.value) + '\n')
  print(f'({time.time() - t0:.0f} s)')


if __name__ == '__main__':
  app.run(main)
