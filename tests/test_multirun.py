"""Multi-run groups (seqrec_jax/multirun.py): run s of a group equals the single run with the
same seed and hyper-parameters; per-run selection, early stopping, records, resume; errors.

Tolerances (docs/multirun.md): the vmapped step batches the same float32 maths, so the only
differences are reduction order (batched vs plain matmuls) and the packed-history fallback:
~1e-7 relative per step, far inside 1e-5 on the loss over 20 steps and 1e-4 on the metrics.
"""
from __future__ import annotations

import json
import logging
import os

import jax
import ml_collections
import numpy as np
import pytest

from seqrec_jax import multirun, train
from seqrec_jax.configs import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOSS_RTOL, METRIC_ATOL = 1e-5, 1e-4
MOE = {'model.experts': 3, 'model.expert_hidden': (8,), 'model.bottom_hidden': (12,),
       'model.tower_hidden': (4,), 'model.shared_experts': 2, 'model.specific_experts': 1,
       'model.ple_levels': 2, 'model.activation': 'relu', 'data.mmoe_synthetic.dim': 10,
       'data.mmoe_synthetic.num_train': 1024, 'data.mmoe_synthetic.num_valid': 256,
       'data.mmoe_synthetic.num_test': 256, 'data.mmoe_synthetic.num_sin': 3,
       'data.batch_size': 32, 'data.eval_batch_size': 256, 'train.select_metric': 'mse',
       'train.progress': False, 'train.log_every': 1}


def _config(name, steps=20, **over):
  if name in ('mmoe', 'ple'):
    c = load_config(os.path.join(ROOT, 'seqrec_jax/configs/multitask.py:mmoe_synthetic'),
                    {**MOE, 'model.name': name})
  else:
    c = load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py') + ':' + name)
  c.train.num_steps, c.train.eval_every, c.train.checkpoint_every = steps, 5, 10
  c.data.pack_history = False   # groups use the padded path; packed == padded is tested apart
  for k, v in over.items():
    node = c
    *path, last = k.split('.')
    for p in path:
      node = node[p]
    node[last] = v
  return c


def _records(workdir, run=None):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    recs = [json.loads(l) for l in f]
  return [r for r in recs if r.get('run') == run]


def _eval_keys(summary):
  return [k for k in summary if k.startswith('eval/')]


def _assert_run_equals_single(group_dir, s, single_dir, got, want):
  loss_g = [r['train/loss'] for r in _records(group_dir, s) if 'train/loss' in r][:20]
  loss_1 = [r['train/loss'] for r in _records(single_dir) if 'train/loss' in r][:20]
  assert len(loss_g) == len(loss_1) > 0
  np.testing.assert_allclose(loss_g, loss_1, rtol=LOSS_RTOL)
  assert got['best_step'] == want['best_step'] and got['steps'] == want['steps']
  keys = _eval_keys(want)
  assert keys and sorted(keys) == sorted(_eval_keys(got))
  for k in keys:
    assert abs(got[k] - want[k]) <= METRIC_ATOL, (k, got[k], want[k])


# (model, group overrides, run index to compare): together they vary every vectorisable key.
CASES = {
    'din': ({'train.run_seeds': (3, 4), 'train.vary': '{"optim.learning_rate": [1e-3, 3e-3]}',
             'train.patience': 1}, 3),
    # The group's module is built with dropout 0.3 (the largest); run 0 calls it with 0.1.
    # adam's weight decay is an L2 step built only when the decay is nonzero: a varied decay
    # builds it for every run (0 adds 0 * theta); run 0 (decay 0) vs a single run without.
    'base': ({'train.run_seeds': (5,),
              'train.vary': '{"model.dropout": [0.1, 0.3], "optim.weight_decay": [0.0, 0.01]}'},
             0),
    'mmoe': ({'train.runs': 2, 'train.vary': '{"train.loss_weights": [[1, 1], [1, 0.25]]}'}, 3),
    'ple': ({'train.run_seeds': (0, 1, 2)}, 2),
    'dcnv2': ({'optim.name': 'adamw',
               'train.vary': '{"optim.weight_decay": [0.0, 0.05], '
                             '"model.mba_lambda": [0.03, 0.1]}'},
              1),

}


def _group(name, workdir):
  """Trains CASES[name]'s group; checks it compiled its step once; returns (config, summary)."""
  cfg = _config(name, **CASES[name][0])
  logs = []
  handler = logging.Handler()
  handler.emit = lambda r: logs.append(r.getMessage())
  logging.getLogger('jax').addHandler(handler)
  try:
    with jax.log_compiles(True):
      out = train.train_and_evaluate(cfg, str(workdir))
  finally:
    logging.getLogger('jax').removeHandler(handler)
  compiles = [m for m in logs if m.startswith('Compiling') and 'group_train_step' in m]
  assert len(compiles) == 1, compiles   # one program per group
  return cfg, out


@pytest.fixture(scope='module')
def din_group(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('din_group')
  return (workdir,) + _group('din', workdir)


@pytest.mark.parametrize('name', sorted(CASES))
def test_run_of_group_equals_single_run(name, tmp_path, request):
  s = CASES[name][1]
  if name == 'din':
    group_dir, cfg, group = request.getfixturevalue('din_group')
  else:
    group_dir = tmp_path / 'group'
    cfg, group = _group(name, group_dir)
  runs = multirun.group_runs(cfg, 2 if name in ('mmoe', 'ple') else 1)
  assert [r['run'] for r in group['runs']] == list(range(len(runs)))
  assert [(r['seed'], r['hparams']) for r in group['runs']] == [
      (r.seed, r.hparams) for r in runs]
  single = train.train_and_evaluate(multirun.run_config(cfg, runs[s]), str(tmp_path / 'one'))
  assert single['seed'] == runs[s].seed and 'runs' not in single
  _assert_run_equals_single(group_dir, s, tmp_path / 'one', group['runs'][s], single)
  # Runs really differ (different seeds/hparams give different trajectories).
  other = [r['train/loss'] for r in _records(group_dir, len(runs) - 1 if s == 0 else 0)
           if 'train/loss' in r]
  mine = [r['train/loss'] for r in _records(group_dir, s) if 'train/loss' in r]
  assert other[:5] != mine[:5]


def test_per_run_early_stopping_selection_and_records(din_group):
  workdir, _, out = din_group
  assert out['num_runs'] == 4 and len(out['runs']) == 4
  for s, summ in enumerate(out['runs']):
    recs = _records(workdir, s)
    evals = [r for r in recs if 'eval/valid/auc' in r]
    best = max(evals, key=lambda r: r['eval/valid/auc'])
    assert summ['best_step'] == best['step']      # best-valid selection per run
    assert summ['eval/valid/auc'] == pytest.approx(best['eval/valid/auc'], abs=METRIC_ATOL)
    # A stopped run has no records past its stop and its step counter froze there.
    assert evals[-1]['step'] == summ['steps']
    assert max(r['step'] for r in recs if 'train/loss' in r) == summ['steps']
    assert [r for r in recs if 'summary' in r][0]['summary']['run'] == s
  assert len({s['steps'] for s in out['runs']}) > 1, 'expected runs to stop at different steps'


def _strip(recs):
  return [{k: v for k, v in r.items() if k not in ('examples_per_sec', 'summary')}
          for r in recs]


def test_group_resume_matches_uninterrupted(din_group, tmp_path):
  full_dir, cfg, full = din_group
  cfg = ml_collections.ConfigDict(cfg.to_dict())   # a copy
  cfg.train.num_steps = 10
  train.train_and_evaluate(cfg, str(tmp_path))
  cfg.train.num_steps = 20
  resumed = train.train_and_evaluate(cfg, str(tmp_path))
  for a, b in zip(full['runs'], resumed['runs']):
    for k in _eval_keys(a) + ['best_step', 'steps']:
      assert a[k] == b[k], k
  for s in range(len(full['runs'])):
    assert _strip(_records(tmp_path, s)) == _strip(_records(full_dir, s))


def test_group_axis_and_config_errors():
  cfg = _config('din')
  cfg.train.vary = '{"model.hidden": [[8], [16]]}'
  with pytest.raises(ValueError, match=r"'model.hidden'.*changes shapes.*vectorisable keys"):
    multirun.group_runs(cfg)
  cfg.train.vary = '{"model.hiden": [1]}'
  with pytest.raises(ValueError, match=r"'model.hiden' is not a config key"):
    multirun.group_runs(cfg)
  cfg.train.vary = '{"optim.learning_rate": 0.1}'
  with pytest.raises(ValueError, match=r'must be a non-empty list'):
    multirun.group_runs(cfg)
  cfg.train.vary, cfg.train.run_seeds, cfg.train.runs = '', (1, 2), 3
  with pytest.raises(ValueError, match=r'runs=3 disagrees with config.train.run_seeds'):
    multirun.group_runs(cfg)
  cfg.train.runs = 1
  cfg.train.vary = '{"optim.learning_rate": [1, 2], "model.dropout": [0.0, 0.1, 0.2]}'
  runs = multirun.group_runs(cfg)
  assert len(runs) == 12 and runs[0].seed == 1 and runs[6].seed == 2   # seeds outer
  assert runs[1].hparams == {'model.dropout': 0.0, 'optim.learning_rate': 2}
  one = multirun.run_config(cfg, runs[5])
  assert (one.seed, one.model.dropout, one.optim.learning_rate) == (1, 0.2, 2.0)
  assert not multirun.is_group(one)
