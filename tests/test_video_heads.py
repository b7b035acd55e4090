"""Watch-time and completion-rate task kinds: transform, losses, served predictions, metrics."""
from __future__ import annotations

import itertools
import types

import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax import evaluate, losses, metrics, steps
from seqrec_jax.data.features import (DataError, DataSpec, Task, validate_arrays,
                                      watch_time_target)

TASKS = (Task('click'), Task('watch', 'watch_time'), Task('finish', 'completion_rate'),
         Task('y', 'regression'))


def test_watch_time_round_trip():
  t = np.array([1e-3, 0.5, 1.0, 3.0, 47.0, 3600.0])
  y = watch_time_target(t)
  z = np.log(y / (1 - y))                          # the logit that sigmoid(z) = y
  np.testing.assert_allclose(np.exp(z), t, rtol=1e-9)
  np.testing.assert_allclose(z, np.log(t), rtol=1e-9, atol=1e-12)


def test_eval_step_serves_each_kind():
  z = jnp.array([[0.0, np.log(3.0), 0.0, -1.5], [2.0, np.log(60.0), -2.0, 4.0]], jnp.float32)
  state = types.SimpleNamespace(apply_fn=lambda v, b, train: z, variables={})
  out = np.asarray(steps.eval_step(state, {}, tasks=TASKS))
  sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
  np.testing.assert_allclose(out[:, 0], sig(np.array([0.0, 2.0])), rtol=1e-6)
  np.testing.assert_allclose(out[:, 1], [3.0, 60.0], rtol=1e-5)     # exp(z) = watch time
  np.testing.assert_allclose(out[:, 2], sig(np.array([0.0, -2.0])), rtol=1e-6)
  np.testing.assert_allclose(out[:, 3], [-1.5, 4.0])


def test_task_losses_hand_computed():
  # click: z=0, y=1 -> log 2. watch: t=1 (y=1/2), z=0 -> log 2; t=3 (y=3/4), z=log 3 -> the
  # entropy H(3/4). completion: r=1/4, z=0 -> log 2. regression: (2 - 0.5)^2.
  h34 = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
  logits = jnp.array([[0.0, 0.0, 0.0, 2.0], [0.0, np.log(3.0), 0.0, 2.0]], jnp.float32)
  labels = jnp.array([[1.0, 1.0, 0.25, 0.5], [1.0, 3.0, 0.25, 0.5]], jnp.float32)
  per = np.asarray(losses.task_losses(logits, labels, TASKS))
  np.testing.assert_allclose(per, [np.log(2), (np.log(2) + h34) / 2, np.log(2), 2.25], rtol=1e-5)
  # The watch-time loss is minimised at z = log t.
  g = np.asarray(jax_grad_watch(np.log(3.0), 3.0))
  assert abs(g) < 1e-6


def jax_grad_watch(z, t):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.grad(lambda z: losses.task_losses(
      jnp.reshape(z, (1, 1)), jnp.array([[t]], jnp.float32), (Task('w', 'watch_time'),))[0])(
          jnp.float32(z))


def _brute_order_auc(y, p):
  num = den = 0.0
  for i, j in itertools.combinations(range(len(y)), 2):
    if y[i] == y[j]:
      continue
    den += 1
    d = (y[i] - y[j]) * (p[i] - p[j])
    num += 1.0 if d > 0 else (0.5 if p[i] == p[j] else 0.0)
  return num / den


def test_continuous_metrics_known_cases():
  y = np.array([1.0, 2.0, 3.0, 4.0])
  assert metrics.order_auc(y, [1, 3, 2, 4]) == pytest.approx(5 / 6)
  assert metrics.order_auc(y, [1, 1, 2, 3]) == pytest.approx(5.5 / 6)
  assert metrics.order_auc(y, [5, 5, 5, 5]) == 0.5
  assert metrics.spearman(y, [10, 20, 30, 40]) == pytest.approx(1.0)
  assert metrics.spearman(y, [4, 3, 2, 1]) == pytest.approx(-1.0)
  assert metrics.spearman(y, [1, 3, 2, 4]) == pytest.approx(0.8)   # 1 - 6 * 2 / (4 * 15)
  assert metrics.mae(y, [1.5, 2.0, 2.0, 4.0]) == pytest.approx(0.375)
  rng = np.random.default_rng(0)
  yy, pp = rng.integers(0, 5, 40).astype(float), rng.integers(0, 6, 40).astype(float)
  assert metrics.order_auc(yy, pp) == pytest.approx(_brute_order_auc(yy, pp), rel=1e-12)
  yb = (rng.random(50) < 0.4).astype(float)
  pb = rng.integers(0, 7, 50).astype(float)
  assert metrics.order_auc(yb, pb) == pytest.approx(metrics.auc(yb, pb), rel=1e-12)


def test_split_metrics_and_validation_per_kind():
  labels = np.array([[1, 2.0, 0.5, 0.0], [0, 5.0, 1.0, 1.0], [1, 0.0, 0.0, 2.0]])
  preds = np.array([[0.8, 1.0, 0.4, 0.1], [0.3, 4.0, 0.9, 1.2], [0.6, 0.5, 0.1, 1.9]])
  out = evaluate.split_metrics(preds, labels, np.array([1, 1, 2]), TASKS, 'valid')
  assert out['valid/watch/mae'] == pytest.approx((1 + 1 + 0.5) / 3)
  assert out['valid/watch/order_auc'] == 1.0 and out['valid/finish/spearman'] == 1.0
  assert {'valid/click/auc', 'valid/finish/logloss', 'valid/y/mse'} <= set(out)
  spec = DataSpec(num_users=3, num_items=0, num_cates=0, max_len=0, tasks=TASKS)
  ok = {'user_id': np.array([0, 1, 2]), 'labels': labels}
  validate_arrays(ok, spec, 'test')
  for col, bad, kind in ((1, -1.0, 'watch_time'), (2, 1.5, 'completion_rate')):
    lab = labels.copy()
    lab[1, col] = bad
    with pytest.raises(DataError, match=kind):
      validate_arrays({**ok, 'labels': lab}, spec, 'test')


def _expected_watch_loss(z, t, prob, form):
  """E_t[loss(z, t)] under the discrete distribution P(t_i) = prob_i, through losses.task_losses."""
  task = (Task('w', 'watch_time', loss=form),)
  logits = jnp.full((len(t), 1), z, jnp.float32)
  return losses.task_losses(logits, jnp.asarray(t, jnp.float32)[:, None], task,
                            jnp.asarray(prob, jnp.float32))[0]


@pytest.mark.parametrize('seed', [0, 1])
def test_weighted_watch_loss_optimum_is_expected_watch_time(seed):
  """For one input whose watch time t varies, the (1 + t)-weighted loss is minimised at
  exp(z) = E[t]; the notes' soft-label loss at exp(z) = E[y] / E[1 - y] (y = t / (1 + t)),
  which is not E[t]."""
  import jax  # pylint: disable=g-import-not-at-top
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  t = np.concatenate([[0.0], rng.uniform(0.5, 5.0, 3), rng.uniform(20.0, 120.0, 3)])
  prob = rng.dirichlet(np.ones(len(t)))
  mean_t = float(prob @ t)
  y = t / (1 + t)
  notes_opt = float(prob @ y) / float(prob @ (1 - y))
  got = {}
  for form in ('weighted', 'soft_label'):
    f = jax.jit(lambda z, form=form: _expected_watch_loss(z, t, prob, form))
    res = optimize.minimize_scalar(lambda z, f=f: float(f(z)), bracket=(-5.0, 8.0), tol=1e-10)
    got[form] = np.exp(res.x)
  np.testing.assert_allclose(got['weighted'], mean_t, rtol=1e-3)
  np.testing.assert_allclose(got['soft_label'], notes_opt, rtol=1e-3)
  assert abs(got['soft_label'] / mean_t - 1) > 0.2      # the notes' head is biased here
  g = jax.grad(lambda z: _expected_watch_loss(z, t, prob, 'weighted'))(jnp.float32(np.log(mean_t)))
  assert abs(float(g)) < 1e-4


def test_task_loss_forms_validated_and_video_heads():
  with pytest.raises(ValueError, match="loss='weighted'"):
    Task('click', 'binary', loss='weighted')
  with pytest.raises(ValueError, match='soft_label'):
    Task('w', 'watch_time', loss='mse')
  from seqrec_jax.data import video  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  cfg = dict(video.DEFAULTS, num_users=30, num_items=40, requests_per_user=2, candidates=5)
  kinds = {}
  for head in video.WATCH_HEADS:
    ds = video.load(ml_collections.ConfigDict(dict(cfg, watch_head=head)))
    kinds[head] = [(t.kind, t.loss) for t in ds.spec.tasks if t.name == 'watch'][0]
  assert kinds == {'soft_label': ('watch_time', ''), 'weighted': ('watch_time', 'weighted'),
                   'regression': ('regression', '')}
  with pytest.raises(ValueError, match='watch_head'):
    video.load(ml_collections.ConfigDict(dict(cfg, watch_head='mse')))
