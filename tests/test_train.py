"""End-to-end: train, checkpoint, resume (incl. SIGKILL), selection on valid, NaN guard, a
Dataset value instead of the registry, load_best."""
import dataclasses
import functools
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from seqrec_jax import checkpoint, evaluate, models, precision, steps, train
from seqrec_jax.checkpoint import CheckpointMismatchError
from seqrec_jax.configs.validate import ConfigError
from seqrec_jax.data import DATASETS, ArraySplit, synthetic

from kill import kill_after_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_KEYS = ('eval/valid/auc', 'eval/valid/gauc', 'eval/valid/logloss', 'eval/test/auc',
             'eval/test/gauc', 'eval/test/logloss')


@pytest.fixture
def tiny_config(tiny_config):
  """Padded histories: the properties here (resume, selection, rejection, load_best) do not
  depend on packing (stateless, per batch; its train/eval equality is test_packing's
  test_training_run_with_packing_matches_padded_run), and one train and one eval step compile
  per config instead of 2 + 2 packed shapes. The CLI runs below use the same programs."""
  tiny_config.data.pack_history = False
  return tiny_config


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(l) for l in f]


def test_two_steps_checkpoint_and_resume_match_uninterrupted(tiny_config, tmp_path):
  cfg = tiny_config
  cfg.train.num_steps = 4
  full = train.train_and_evaluate(cfg, str(tmp_path / 'full'))
  # Same run cut after 2 steps, then resumed to 4 in the same workdir.
  cfg.train.num_steps = 2
  part = train.train_and_evaluate(cfg, str(tmp_path / 'cut'))
  assert part['steps'] == 2
  assert sorted(os.listdir(tmp_path / 'cut' / 'checkpoints')) == ['2']
  cfg.train.num_steps = 4
  resumed = train.train_and_evaluate(cfg, str(tmp_path / 'cut'))
  assert resumed['steps'] == 4
  for k in EVAL_KEYS:
    assert resumed[k] == full[k], k
  assert resumed['best_step'] == full['best_step']
  # metrics.jsonl holds each step once, in order, and ends with the summary.
  recs = _metrics(tmp_path / 'cut')
  evals = [r['step'] for r in recs if 'eval/valid/auc' in r]
  assert evals == [2, 4]
  assert 'summary' in recs[-1]


def test_summary_reports_best_valid_state(tiny_config, tmp_path):
  tiny_config.train.num_steps = 6
  s = train.train_and_evaluate(tiny_config, str(tmp_path))
  evals = [r for r in _metrics(tmp_path) if 'eval/valid/auc' in r]
  best = max(evals, key=lambda r: r['eval/valid/auc'])
  assert s['best_step'] == best['step']
  assert s['eval/valid/auc'] == pytest.approx(best['eval/valid/auc'], abs=1e-12)
  assert 0.0 <= s['eval/test/auc'] <= 1.0 and np.isfinite(s['eval/test/logloss'])
  assert 'oracle/test/oracle_auc' in s


def test_checkpoint_from_another_model_is_rejected(tiny_config, tmp_path):
  tiny_config.train.num_steps = 2
  train.train_and_evaluate(tiny_config, str(tmp_path))
  tiny_config.model.name = 'base'
  # config.json (seqrec_jax/workdir.py) names each changed key; CheckpointMismatchError too.
  with pytest.raises(CheckpointMismatchError, match="model.name: 'din' -> 'base'"):
    train.train_and_evaluate(tiny_config, str(tmp_path))
  tiny_config.model.name = 'din'
  tiny_config.model.embed_dim = 6
  with pytest.raises(CheckpointMismatchError, match='model.embed_dim: 4 -> 6'):
    train.train_and_evaluate(tiny_config, str(tmp_path))


def test_non_finite_loss_stops_with_step_and_keeps_last_good_checkpoint(tiny_config, tmp_path,
                                                                         monkeypatch):
  # NaN labels from step 1, past the data's validation (test_faults injects its overflow the
  # same way): the loss is non-finite, on the programs of this file's other runs.
  batches = train.train_batches
  monkeypatch.setattr(train, 'train_batches', lambda *a, **kw: (
      dict(b, label=np.full_like(b['label'], np.nan)) for b in batches(*a, **kw)))
  with pytest.raises(FloatingPointError, match=r'non-finite training loss .* at step 1;'):
    train.train_and_evaluate(tiny_config, str(tmp_path))


def test_dataset_value_trains_without_registering_and_pins_the_resume(tiny_config, tmp_path):
  ds = dataclasses.replace(synthetic.load(tiny_config.data.synthetic), name='_in_memory')
  before = dict(DATASETS)
  tiny_config.data.name = '_in_memory'
  tiny_config.train.num_steps = 2
  s = train.train_and_evaluate(tiny_config, str(tmp_path), ds)
  assert s['dataset'] == '_in_memory' and s['steps'] == 2 and DATASETS == before
  # A resume with other data under the same name: the checkpoints' data fingerprint differs.
  fewer = dataclasses.replace(ds, splits={**ds.splits, 'train': ArraySplit(
      {k: v[:-32] for k, v in ds.splits['train'].arrays.items()})})
  tiny_config.train.num_steps = 4
  with pytest.raises(CheckpointMismatchError, match='written on other data'):
    train.train_and_evaluate(tiny_config, str(tmp_path), fewer)
  assert train.train_and_evaluate(tiny_config, str(tmp_path), ds)['steps'] == 4
  with pytest.raises(ConfigError, match='name of the Dataset value'):
    train.train_and_evaluate(tiny_config, str(tmp_path / 'other'),
                             dataclasses.replace(ds, name='_renamed'))
  with pytest.raises(ConfigError, match="unknown dataset '_in_memory'"):
    train.train_and_evaluate(tiny_config, str(tmp_path / 'none'))   # not registered


def test_load_best_scores_as_the_summary(tiny_config, tiny_dataset, tmp_path):
  s = train.train_and_evaluate(tiny_config, str(tmp_path))
  best = checkpoint.load_best(str(tmp_path))
  assert best.step == s['best_step'] and len(best.variables) == 1
  apply = precision.cast_apply(models.build_model(best.model_config, tiny_dataset.spec).apply,
                               best.config.model.compute_dtype)
  f = jax.jit(functools.partial(steps.predict, apply, tasks=tiny_dataset.spec.tasks))
  preds, labels, users = evaluate.predict(f, best.variables[0], tiny_dataset.splits['test'],
                                          64, lambda b: b)
  got = evaluate.split_metrics(preds, labels, users, tiny_dataset.spec.tasks, 'eval/test')
  assert got['eval/test/auc'] == pytest.approx(s['eval/test/auc'], abs=1e-6)
  assert got['eval/test/logloss'] == pytest.approx(s['eval/test/logloss'], abs=1e-5)


_CLI = dict(num_steps=60, eval_every=20, checkpoint_every=10, log_every=5)


def _run_main(workdir, extra=(), **kw):
  cmd = [sys.executable, '-m', 'seqrec_jax.main', '--config=seqrec_jax/configs/test.py',
         f'--workdir={workdir}', *(f'--config.train.{k}={v}' for k, v in _CLI.items()),
         '--config.data.pack_history=False', *extra]   # padded, as tiny_config above
  return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kw)


def _summary(out):
  return json.loads([l for l in out.splitlines() if l.startswith('{"summary"')][-1])['summary']


@pytest.mark.slow
def test_sigkill_mid_training_then_rerun_reaches_same_metrics(tiny_config, tmp_path):
  # The uninterrupted reference in-process (the CLI runs' config and programs; one
  # interpreter start fewer), the killed run and its rerun through the CLI.
  tiny_config.train.update(_CLI)
  want = train.train_and_evaluate(tiny_config, str(tmp_path / 'ref'))
  # Slow every step down so the kill lands mid-training, after a few checkpoints.
  proc = _run_main(tmp_path / 'killed', env={**os.environ, 'SEQREC_TEST_STEP_DELAY': '0.05'})
  killed_at = kill_after_checkpoint(proc, tmp_path / 'killed' / 'checkpoints', 20)
  assert killed_at < 60, 'the run finished before it could be killed'
  again = _run_main(tmp_path / 'killed')
  out2, err2 = again.communicate(timeout=600)
  assert again.returncode == 0, err2[-3000:]
  got = _summary(out2)
  assert got['steps'] == 60     # --config.train.num_steps=60 reached the run (the CLI override)
  for k in EVAL_KEYS + ('best_step', 'steps'):
    assert got[k] == want[k], (k, got[k], want[k])


def test_a_new_periodic_action_runs_on_its_cadence_without_editing_the_loop(tiny_config,
                                                                               tmp_path):
  from seqrec_jax import periodic  # pylint: disable=g-import-not-at-top
  from seqrec_jax.metric_writers import MetricsWriter  # pylint: disable=g-import-not-at-top
  cfg = tiny_config
  cfg.train.num_steps, cfg.train.eval_every, cfg.train.checkpoint_every = 7, 100, 100
  cfg.train.log_every = 100
  prog = train.build_program(cfg)
  seen = {'a': [], 'b': []}

  def rec(name):
    def fn(ctx):
      assert ctx.metrics['loss'].shape == (1,) and np.isfinite(ctx.metrics['loss']).all()
      seen[name].append((ctx.step, ctx.last, int(np.asarray(ctx.state.step)[0])))
    return fn

  with checkpoint.Checkpointer(str(tmp_path), 2, prog.fingerprint) as ckpt:
    state, ps = train.init_or_restore(prog, ckpt, str(tmp_path))
    writer = MetricsWriter(str(tmp_path), ps.step)
    actions = train.default_actions(prog, ps) + [
        periodic.Callback(rec('a'), every=3), periodic.Callback(rec('b'), (2, 5), on_last=False)]
    train.train_loop(prog, state, ps, ckpt, writer, actions)
    writer.close()
  assert seen['a'] == [(3, False, 3), (6, False, 6), (7, True, 7)]
  assert seen['b'] == [(2, False, 2), (4, False, 4), (5, False, 5), (6, False, 6)]
  # The default actions kept their cadence (eval_every > num_steps: the last step only).
  assert [r['step'] for r in _metrics(tmp_path) if 'eval/valid/auc' in r] == [7]
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['7']
