"""Multi-run groups (seqrec_jax/multirun.py): run s of a group equals the single run with the
same seed and hyper-parameters; per-run selection, early stopping, records, resume; errors.

Tolerances (docs/multirun.md): the vmapped step batches the same float32 maths, so the only
differences are reduction order (batched vs plain matmuls) and packed histories (a group's
capacity is its fullest run's, so a run has more filler rows than alone): ~1e-7 relative
per step, far inside 1e-5 on the loss over 10-20 steps and 1e-4 on the metrics.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from seqrec_jax import multirun, platform_defaults, train

from multirun_devices import CASES, SMALL_DIN, group_config, run_results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOSS_RTOL, METRIC_ATOL = 1e-5, 1e-4


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


def _group(name, workdir):
  """Trains CASES[name]'s group; checks it compiled its step once; returns (config, summary).
  din (shared: early stopping, SIGKILL, devices) 20 steps, so its runs stop at different
  evaluations; the others 10 (2 evaluations): equality is a per-step property."""
  cfg = group_config(name, steps=20 if name == 'din' else 10, **CASES[name][0])
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


# ple (3 seeds, no key of its own varied) is left out: its group takes mmoe's multi-task path
# (task, loss weights, per-task metrics, mse selection) and seeds are varied by din and mmoe;
# PLE itself is tested in test_multitask.py. (`multirun_devices.py --tolerance` still runs it.)
@pytest.mark.parametrize('name', sorted(set(CASES) - {'ple'}))
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
  assert out['num_runs'] == 8 and len(out['runs']) == 8
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


def _packed_din(**over):
  """A DIN group of 3 seeds on packed histories (every batch packed, at most 2 shapes)."""
  cfg = group_config('din', steps=10, **{'train.run_seeds': (3, 4, 5), **SMALL_DIN, **over})
  cfg.data.pack_history, cfg.data.pack_buckets, cfg.data.pack_max_fill = True, 2, 1.0
  return cfg


def test_group_trains_on_packed_histories():
  """A group's train batch carries hist_index [S, C]: row s run s's own real positions, one
  capacity C for the step, filler -1 (data/packing.py); eval batches are packed too."""
  cfg = platform_defaults.resolve(_packed_din())
  prog = train.build_program(cfg)
  assert train._packer(cfg, prog.part) is not None                 # pylint: disable=protected-access
  batch = next(iter(prog.batches(0)))
  idx, masks = batch['hist_index'], batch['hist_mask']
  assert idx.shape[0] == 3 and masks.shape[0] == 3
  for s in range(3):
    real = np.flatnonzero(masks[s].reshape(-1))
    np.testing.assert_array_equal(idx[s], np.pad(real, (0, idx.shape[1] - real.size),
                                                 constant_values=-1))
  assert len({int((idx[s] >= 0).sum()) for s in range(3)}) > 1    # the runs' rows differ


def test_packed_group_equals_padded_group_and_its_single_runs(tmp_path):
  cfg = _packed_din()
  packed = train.train_and_evaluate(cfg, str(tmp_path / 'packed'))['runs']
  cfg.data.pack_history = False
  padded = train.train_and_evaluate(cfg, str(tmp_path / 'padded'))['runs']
  got = run_results(tmp_path / 'packed', packed)
  want = run_results(tmp_path / 'padded', padded)
  for g, w in zip(got, want):
    assert len(g['loss']) == len(w['loss']) > 0 and g.keys() == w.keys()
    np.testing.assert_allclose(g['loss'], w['loss'], rtol=LOSS_RTOL)
    assert (g['best_step'], g['steps']) == (w['best_step'], w['steps'])
    for k in _eval_keys(w):
      assert abs(g[k] - w[k]) <= METRIC_ATOL, (k, g[k], w[k])
  # A run of the packed group = its single packed run. One run: every run's packed rows are
  # checked against the padded group above, the padded group against single runs in
  # test_run_of_group_equals_single_run, and a single packed run against a single padded one
  # in test_packing.py::test_training_run_with_packing_matches_padded_run.
  cfg.data.pack_history = True
  s = 1
  single = train.train_and_evaluate(multirun.run_config(cfg, multirun.group_runs(cfg)[s]),
                                    str(tmp_path / 'one'))
  _assert_run_equals_single(tmp_path / 'packed', s, tmp_path / 'one', packed[s], single)


def test_group_axis_and_config_errors():
  from seqrec_jax.configs import validate  # pylint: disable=g-import-not-at-top
  cfg = group_config('din')
  for vary, words in (('{"model.hidden": [[8], [16]]}',
                       r"'model.hidden'.*changes shapes.*vectorisable keys"),
                      ('{"model.hiden": [1]}', r"'model.hiden' is not a config key"),
                      ('{"optim.learning_rate": 0.1}', r'must be a non-empty list')):
    cfg.train.vary = vary
    with pytest.raises(validate.ConfigError, match=words):
      validate.validate_config(cfg)
  cfg.train.vary, cfg.train.run_seeds, cfg.train.runs = '', (1, 2), 3
  with pytest.raises(validate.ConfigError,
                     match=r'runs=3: disagrees with config.train.run_seeds'):
    validate.validate_config(cfg)
  cfg.train.runs = 1
  cfg.train.vary = '{"optim.learning_rate": [1, 2], "model.dropout": [0.0, 0.1, 0.2]}'
  runs = multirun.group_runs(cfg)
  assert len(runs) == 12 and runs[0].seed == 1 and runs[6].seed == 2   # seeds outer
  assert runs[1].hparams == {'model.dropout': 0.0, 'optim.learning_rate': 2}
  one = multirun.run_config(cfg, runs[5])
  assert (one.seed, one.model.dropout, one.optim.learning_rate) == (1, 0.2, 2.0)
  assert not multirun.is_group(one)


def test_multirun_keys_are_validated_with_the_config_before_any_work(tmp_path):
  """Every bad multi-run key in the one ConfigError, before data, model or workdir (was: after
  the data loaded and the workdir existed, and NaN / 0 learning rates and non-numeric loss
  weights were accepted)."""
  from seqrec_jax.configs import validate  # pylint: disable=g-import-not-at-top
  cfg = group_config('din')
  cfg.train.runs, cfg.train.run_seeds = 0, (1, 'b')
  cfg.train.loss_weights = ('x',)
  cfg.train.vary = ('{"optim.learning_rate": [NaN, 0, 0.1], "model.dropout": [1.5], '
                    '"train.loss_weights": [[1, "a"]], "seed": [1, 2]}')
  wd = tmp_path / 'wd'
  with pytest.raises(validate.ConfigError) as e:
    train.train_and_evaluate(cfg, str(wd))
  msg = str(e.value)
  for words in ('config.train.runs=0: must be an integer >= 1',
                "config.train.run_seeds=(1, 'b'): must be a list of integer seeds",
                "config.train.loss_weights=('x',): must be a list of finite numbers >= 0",
                "config.train.vary['optim.learning_rate'] value nan: must be a finite number > 0",
                "config.train.vary['optim.learning_rate'] value 0: must be a finite number > 0",
                "config.train.vary['model.dropout'] value 1.5: must be in [0, 1)",
                "config.train.vary['train.loss_weights'] value [1, 'a']: must be a list",
                'config.train.vary key "seed": set config.train.run_seeds instead'):
    assert words in msg, (words, msg)
  assert 'value 0.1' not in msg and not wd.exists()


def _main(workdir, **env):
  """The din group of CASES via seqrec_jax.main (a subprocess that can be SIGKILLed)."""
  over = {'seed': 0, 'data.pack_history': False, 'train.num_steps': 20, 'train.eval_every': 5,
          'train.checkpoint_every': 10, **CASES['din'][0]}
  flags = [f'--config.{k}={v}' for k, v in over.items()]
  return subprocess.Popen(
      [sys.executable, '-m', 'seqrec_jax.main', '--config=seqrec_jax/configs/test.py',
       f'--workdir={workdir}', *flags], cwd=ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True, env={**os.environ, 'PYTHONPATH': ROOT, **env})


@pytest.mark.slow
def test_group_sigkill_then_rerun_matches_uninterrupted(din_group, tmp_path):
  _, _, want = din_group
  proc = _main(tmp_path, SEQREC_TEST_STEP_DELAY='0.3')   # slow steps: the kill lands mid-run
  ckdir = tmp_path / 'checkpoints'
  deadline = time.time() + 600
  while time.time() < deadline:
    if ckdir.exists() and '10' in os.listdir(ckdir):
      break
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert '20' not in os.listdir(ckdir), 'the group finished before it could be killed'
  # The rerun resumes the killed run's workdir in this process: the train_and_evaluate the CLI
  # calls (main.py), with the config the CLI wrote (checked on resume), and no second
  # interpreter start (~4 CPU s of imports).
  got = train.train_and_evaluate(group_config('din', **CASES['din'][0]), str(tmp_path))
  for a, b in zip(want['runs'], got['runs']):
    for k in _eval_keys(a) + ['best_step', 'steps']:
      assert a[k] == b[k], (k, a[k], b[k])


@pytest.mark.multidevice
def test_group_on_4_devices_equals_1_device(din_group, tmp_path):
  """The run axis sharded over a `runs` mesh axis combined with `data` equals one device:
  the 8-run din group on 4 forced host devices (runs=2 x data=2: 4 runs per device, each
  run's batch split over 2 devices; a subprocess, XLA_FLAGS must be set before jax starts) vs
  the same group here on 1 device; and with parallel.strategy=pmap over 4 data devices (the
  per-run pmap_step vmapped inside the pmap: a group is not refused by, nor forks, the pmap
  path). runs=8 x data=1 is the same jit path with a data axis of 1 (dropped: ~30 s). 4
  devices, not 8: the same paths, and half the per-device checkpoint slices to compile."""
  workdir, _, summary = din_group
  want = run_results(workdir, summary['runs'])
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT, XLA_FLAGS=(  # + conftest's
      os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=4').strip())
  out = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'multirun_devices.py'),
                        '--layouts=2x2,pmap4', f'--workdir={tmp_path}'],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=900,
                       check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.loads(out.stdout.strip().splitlines()[-1])
  assert res['devices'] == 4
  for layout in ('2x2', 'pmap4'):
    if layout != 'pmap4':     # run axis sharded on `runs` (pmap: replicated state)
      assert res[layout]['lead'] == ['runs'], res[layout]['lead']
    got = res[layout]['runs']
    assert len(got) == len(want) == 8
    for a, b in zip(got, want):
      # float32 reduction order differs across layouts (Dice statistics and gradients reduce
      # over the data axis): ~1e-7 relative per step.
      np.testing.assert_allclose(a['loss'], b['loss'], rtol=1e-5, err_msg=layout)
      assert (a['best_step'], a['steps']) == (b['best_step'], b['steps']), layout
      for k in b:
        if k.startswith('eval/'):
          assert abs(a[k] - b[k]) <= 1e-4, (layout, k, a[k], b[k])


# ------------------------------------------------- a diverged run is masked; the rest go on

def _dense_data(cfg):
  """The test data with one all-zero dense feature (poisoned per run below)."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data.features import DataSpec  # pylint: disable=g-import-not-at-top
  ds = synthetic.load(cfg.data.synthetic)
  for split in ds.splits.values():
    split.arrays['dense'] = np.zeros((len(split), 1), np.float32)
  return dataclasses.replace(ds, name='_run_dense',
                             spec=DataSpec(**{**ds.spec.__dict__, 'dense_dim': 1}))


_TRAIN_BATCHES = train.train_batches


def _poison(monkeypatch, run, first_bad, stop_at=None):
  """Group batches whose row `run` overflows the loss from step first_bad on (run None: clean);
  stop_at: the batch of that step raises instead (a run killed after its checkpoints)."""
  def batches(split, gb, seeds, start, *a, **kw):
    for step, b in enumerate(_TRAIN_BATCHES(split, gb, seeds, start, *a, **kw), start + 1):
      if step == stop_at:
        raise RuntimeError('killed')
      if run is not None and step >= first_bad:
        dense = b['dense'].copy()
        dense[run] = 3e38
        b = dict(b, dense=dense)
      yield b
  monkeypatch.setattr(train, 'train_batches', batches)


def _diverge_config(tiny_config, seeds):
  c = tiny_config
  c.data.name, c.data.pack_history, c.data.device_resident = '_run_dense', False, 'never'
  c.model.hidden, c.model.attention.hidden = SMALL_DIN.values()
  c.train.run_seeds = seeds
  c.train.num_steps, c.train.eval_every, c.train.checkpoint_every = 15, 5, 5
  c.train.log_every = 15
  return c


def test_diverged_run_is_masked_and_the_others_go_on(tiny_config, tmp_path, monkeypatch):
  """Run 1's loss turns non-finite at step 7: it is reported diverged with its best-valid
  state (step 5), frozen at step 6; runs 0 and 2 end bit for bit as in the clean group. A
  group killed after the divergence resumes with run 1 still masked and diverged."""
  from seqrec_jax.checkpoint import read_source  # pylint: disable=g-import-not-at-top
  cfg = _diverge_config(tiny_config, (0, 1, 2))
  ds = _dense_data(cfg)
  _poison(monkeypatch, None, None)
  clean = train.train_and_evaluate(cfg, str(tmp_path / 'clean'), ds)
  _poison(monkeypatch, 1, 7, stop_at=13)
  with pytest.raises(RuntimeError, match='killed'):
    train.train_and_evaluate(cfg, str(tmp_path / 'bad'), ds)
  saved, meta, where = read_source(str(tmp_path / 'bad' / 'checkpoints'))
  assert where.endswith('/10') and meta['runs'][1]['diverged'] == {'step': 7,
                                                                   'last_finite_step': 6}
  assert 'diverged' not in meta['runs'][0] and 'diverged' not in meta['runs'][2]
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(saved['params']))
  assert np.asarray(saved['step']).tolist() == [10, 6, 10]
  _poison(monkeypatch, None, None)    # resumed on clean data: run 1 stays diverged
  out = train.train_and_evaluate(cfg, str(tmp_path / 'bad'), ds)
  bad = out['runs'][1]
  assert bad['diverged'] is True and bad['diverged_step'] == 7, bad
  assert bad['steps'] == 6 and bad['best_step'] == 5
  assert np.isfinite(bad['eval/test/auc'])
  for s in (0, 2):
    assert 'diverged' not in out['runs'][s]
    assert {k: v for k, v in out['runs'][s].items() if k not in ('train_seconds',
                                                                 'examples_per_sec')} == {
        k: v for k, v in clean['runs'][s].items() if k not in ('train_seconds',
                                                                'examples_per_sec')}


def test_group_whose_every_run_diverged_stops_with_the_error(tiny_config, tmp_path, monkeypatch):
  cfg = _diverge_config(tiny_config, (0, 1))
  _poison(monkeypatch, [0, 1], 3)
  want = (r'non-finite training loss in every run of the group \(run 0 \(seed 0, \{\}\) at '
          r'step 3; run 1 \(seed 1, \{\}\) at step 3\); no checkpoint was written yet')
  with pytest.raises(FloatingPointError, match=want):
    train.train_and_evaluate(cfg, str(tmp_path), _dense_data(cfg))


def test_injected_optimiser_hparams_momentum_and_scheduled_lr(tmp_path):
  """Per-run optimiser hyper-parameters live in the optimiser state (optax.inject_hyperparams):
  sgd momentum varies (a key the rebuilt-optimiser step could not vary) and the learning
  rate's peak varies under a warmup + cosine schedule; run 2 (lr 0.2, momentum 0.5) equals
  its single run."""
  cfg = group_config('base', steps=10, **{
      'optim.name': 'sgd', 'optim.schedule': 'cosine', 'optim.warmup_steps': 3,
      'train.vary': '{"optim.learning_rate": [0.05, 0.2], "optim.momentum": [0.5, 0.9]}',
      'model.activation': 'prelu', 'model.hidden': (8,)})
  cfg.train.eval_every, cfg.train.log_every = 5, 1
  group = train.train_and_evaluate(cfg, str(tmp_path / 'group'))
  runs = multirun.group_runs(cfg)
  assert runs[2].hparams == {'optim.learning_rate': 0.2, 'optim.momentum': 0.5}
  single = train.train_and_evaluate(multirun.run_config(cfg, runs[2]), str(tmp_path / 'one'))
  _assert_run_equals_single(tmp_path / 'group', 2, tmp_path / 'one', group['runs'][2], single)
  losses = [[r['train/loss'] for r in _records(tmp_path / 'group', s) if 'train/loss' in r]
            for s in range(4)]
  assert len({tuple(x[3:6]) for x in losses}) == 4     # every run its own trajectory
