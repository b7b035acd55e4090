"""Reliability (issue 14): no checkpoint past a non-finite step, resume refuses a changed
config, one run per workdir, corrupt checkpoints fall back, config errors before any work."""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from seqrec_jax import train
from seqrec_jax.data import register_dataset, synthetic
from seqrec_jax.data.features import DataSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@register_dataset('_zero_dense')
def _zero_dense(data_cfg):
  """Synthetic data plus one all-zero dense feature (the fault tests overwrite it)."""
  ds = synthetic.load(data_cfg.synthetic)
  ds.spec = DataSpec(**{**ds.spec.__dict__, 'dense_dim': 1})
  for split in ds.splits.values():
    split.arrays['dense'] = np.zeros((len(split), 1), np.float32)
  return ds


_TRAIN_BATCHES = train.train_batches


@pytest.fixture
def fast_config(tiny_config):
  """The tiny config without packed histories (one compiled shape: faster to start)."""
  tiny_config.data.pack_history = False
  return tiny_config


def _poison_from(monkeypatch, first_bad_step, starts):
  """Training batches from `first_bad_step` on carry a dense value that overflows the loss;
  records the start step of every run."""
  real = _TRAIN_BATCHES

  def batches(split, gb, seed, start, *args, **kw):
    starts.append(start)
    for step, b in enumerate(real(split, gb, seed, start, *args, **kw), start + 1):
      if first_bad_step is not None and step >= first_bad_step:
        b = dict(b, dense=np.full_like(b['dense'], 3e38))
      yield b
  monkeypatch.setattr(train, 'train_batches', batches)


def _steps(path):
  return sorted(int(d) for d in os.listdir(path) if d.isdigit()) if os.path.isdir(path) else []


def test_no_checkpoint_past_a_non_finite_step_and_rerun_resumes_from_last_good(
    fast_config, tmp_path, monkeypatch):
  """Issue 14.4: losses are checked before every checkpoint, not only on logging steps."""
  cfg = fast_config
  cfg.data.name = '_zero_dense'
  cfg.train.num_steps, cfg.train.eval_every, cfg.train.log_every = 20, 20, 20
  cfg.train.checkpoint_every = 5
  starts = []
  _poison_from(monkeypatch, 7, starts)
  want = r'at step 7; the last finite step is 6, the last good checkpoint is step 5'
  with pytest.raises(FloatingPointError, match=want):
    train.train_and_evaluate(cfg, str(tmp_path))
  assert _steps(tmp_path / 'checkpoints') == [5]
  assert _steps(tmp_path / 'best') == []
  # The data is fixed: the rerun resumes from step 5 and finishes.
  _poison_from(monkeypatch, None, starts)
  summary = train.train_and_evaluate(cfg, str(tmp_path))
  assert starts == [0, 5]
  assert summary['steps'] == 20 and np.isfinite(summary['eval/test/logloss'])


def _first_run(cfg, workdir, num_steps=2):
  cfg.train.num_steps = num_steps
  return train.train_and_evaluate(cfg, str(workdir))


def test_resume_refuses_a_changed_config_naming_each_key(fast_config, tmp_path):
  """Issue 14.2: config.json is written on the first run; a result-changing difference is an
  error naming each key with its old and new value; neutral keys may change."""
  from seqrec_jax.configs import load_config  # pylint: disable=g-import-not-at-top
  first = _first_run(fast_config, tmp_path)
  with open(tmp_path / 'config.json') as f:
    assert json.load(f)['seed'] == 0
  changed = {'seed': (0, 7), 'data.batch_size': (32, 16), 'optim.learning_rate': (1e-3, 1e-2),
             'data.synthetic.num_users': (400, 300)}
  cfg = load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py'),
                    {'data.pack_history': False, 'train.num_steps': 2,
                     **{k: new for k, (_, new) in changed.items()}})
  with pytest.raises(ValueError, match='another config') as err:
    train.train_and_evaluate(cfg, str(tmp_path))
  for key, (old, new) in changed.items():
    assert f'{key}: {old!r} -> {new!r}' in str(err.value)
  # Logging cadence and the evaluation batch cannot change results: the finished run reports
  # its summary again.
  cfg = load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py'),
                    {'data.pack_history': False, 'train.num_steps': 2, 'train.log_every': 7,
                     'data.eval_batch_size': 32, 'train.keep_checkpoints': 3})
  again = train.train_and_evaluate(cfg, str(tmp_path))
  for k in ('eval/test/auc', 'eval/test/logloss', 'best_step', 'seed'):
    assert again[k] == first[k], k


def test_second_run_into_a_locked_workdir_is_refused_and_a_crashed_holder_leaves_no_lock(
    fast_config, tmp_path):
  """Issue 14.3: one run per workdir; the error names the holder; kill -9 frees the lock."""
  from seqrec_jax import workdir  # pylint: disable=g-import-not-at-top
  code = ('import sys, time\nfrom seqrec_jax import workdir\n'
          'with workdir.lock(sys.argv[1]):\n  print("locked", flush=True)\n  time.sleep(600)\n')
  holder = subprocess.Popen([sys.executable, '-c', code, str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(workdir.WorkdirLockedError, match=f'pid {holder.pid} on host'):
      _first_run(fast_config, tmp_path)
    assert not (tmp_path / 'checkpoints').exists() and not (tmp_path / 'config.json').exists()
  finally:
    holder.kill()          # SIGKILL: no cleanup runs; the kernel drops the lock
    holder.wait()
  assert (tmp_path / '.lock').exists()
  assert _first_run(fast_config, tmp_path)['steps'] == 2
  with workdir.lock(str(tmp_path)):   # released when the run returned
    pass


def _truncate_all(path):
  for root, _, files in os.walk(path):
    for f in files:
      p = os.path.join(root, f)
      with open(p, 'r+b') as fh:
        fh.truncate(os.path.getsize(p) // 2)


def _summary_lines(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [line for line in f if '"summary"' in line]


def test_corrupt_latest_checkpoint_falls_back_and_corrupt_best_keeps_the_summary(
    fast_config, tmp_path):
  """Issue 14.6: a truncated newest checkpoint -> resume from the previous one (the replay
  reaches the same result); a corrupt best/ of a finished run -> a clear error, summary kept."""
  from seqrec_jax.checkpoint import CheckpointCorruptError  # pylint: disable=g-import-not-at-top
  first = _first_run(fast_config, tmp_path, num_steps=4)
  assert _steps(tmp_path / 'checkpoints') == [2, 4]
  _truncate_all(tmp_path / 'checkpoints' / '4' / 'state')
  with open(tmp_path / 'checkpoints' / '4' / 'meta' / 'metadata', 'w') as f:
    f.write('{"best": 0.5, garbage')
  again = train.train_and_evaluate(fast_config, str(tmp_path))
  for k in ('eval/test/auc', 'eval/test/logloss', 'best_step', 'steps'):
    assert again[k] == first[k], k
  assert os.listdir(tmp_path / 'corrupt') == ['checkpoints_4']
  assert _steps(tmp_path / 'checkpoints') == [2, 4]
  # The finished run's best/ is damaged: refuse before metrics.jsonl loses its summary.
  kept = _summary_lines(tmp_path)
  assert len(kept) == 1
  (best_step,) = _steps(tmp_path / 'best')
  _truncate_all(tmp_path / 'best' / str(best_step) / 'state')
  with pytest.raises(CheckpointCorruptError, match=f'best/{best_step}: state does not restore'):
    train.train_and_evaluate(fast_config, str(tmp_path))
  assert _summary_lines(tmp_path) == kept


def test_checkpointer_skips_garbage_meta_and_a_state_that_fails_its_checksum(tmp_path):
  """Issue 14.6 (unit): garbage meta, or state files that restore to other values than were
  saved (here: step 1's state files copied over step 2's), are never restored."""
  import shutil  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from seqrec_jax.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  fp = {'model': 'm', 'dataset': 'd', 'params': {}}
  state = {'w': jnp.arange(64, dtype=jnp.float32)}
  ck = Checkpointer(str(tmp_path), 4, fp)
  for s in (1, 2, 3):
    ck.save(s, {'w': state['w'] + s}, {'best': None})
  ck.wait()
  ck.close()
  ckdir = tmp_path / 'checkpoints'
  with open(ckdir / '3' / 'meta' / 'metadata', 'w') as f:
    f.write('\x00garbage')
  shutil.rmtree(ckdir / '2' / 'state')
  shutil.copytree(ckdir / '1' / 'state', ckdir / '2' / 'state')
  ck = Checkpointer(str(tmp_path), 4, fp)
  restored, _ = ck.restore_latest(jax.eval_shape(lambda: state))
  np.testing.assert_array_equal(np.asarray(restored['w']), np.arange(64) + 1)
  assert sorted(os.listdir(tmp_path / 'corrupt')) == ['checkpoints_2', 'checkpoints_3']
  ck.save(2, {'w': state['w'] + 2}, {'best': None})   # the replay saves step 2 again
  ck.wait()
  ck.close()


def test_config_errors_come_before_any_work_and_name_every_key(fast_config, tmp_path):
  """Issue 14.7: one error listing each bad key and value, and no workdir left behind."""
  from seqrec_jax.configs.validate import ConfigError  # pylint: disable=g-import-not-at-top
  bad = {'train.select_metric': 'aucc', 'train.eval_every': 0, 'train.log_every': 0,
         'train.keep_checkpoints': 0, 'data.batch_size': 0, 'optim.learning_rate': -1.0}
  for key, value in bad.items():
    *parents, leaf = key.split('.')
    node = fast_config
    for p in parents:
      node = node[p]
    node[leaf] = value
  wd = tmp_path / 'wd'
  with pytest.raises(ConfigError) as err:
    train.train_and_evaluate(fast_config, str(wd))
  for key, value in bad.items():
    assert f'config.{key}={value!r}' in str(err.value)
  assert "one of ['auc', 'gauc', 'logloss', 'mae', 'mse']" in str(err.value)
  assert not wd.exists()


def test_select_metric_is_checked_against_the_tasks_before_training(fast_config, tmp_path):
  """Issue 14.7: a metric the dataset's task does not have fails before any step."""
  from seqrec_jax.configs.validate import ConfigError  # pylint: disable=g-import-not-at-top
  fast_config.train.select_metric = 'mse'          # the synthetic task is binary
  with pytest.raises(ConfigError, match=r"select_metric='mse'.*\['auc', 'gauc', 'logloss'\]"):
    train.train_and_evaluate(fast_config, str(tmp_path))
  assert _steps(tmp_path / 'checkpoints') == []


@pytest.mark.parametrize('module,arg', [('default', None), ('test', None), ('din', 'synthetic'),
                                        ('dcn', 'census'), ('multitask', 'census,mmoe')])
def test_get_config_is_locked(module, arg):
  """Issue 14.8: a misspelt key on the Python API is an error, not a silent no-op."""
  import importlib  # pylint: disable=g-import-not-at-top
  mod = importlib.import_module(f'seqrec_jax.configs.{module}')
  c = mod.get_config(arg) if arg else mod.get_config()
  c.train.num_steps = 2                       # existing keys stay writable
  with pytest.raises((AttributeError, KeyError), match='num_stepz'):
    c.train.num_stepz = 2


def test_unknown_keys_of_an_unlocked_config_are_refused(fast_config, tmp_path):
  """Issue 14.8: a hand-built (unlocked) ConfigDict with a misspelt key is refused by
  train_and_evaluate."""
  from seqrec_jax.configs.validate import ConfigError  # pylint: disable=g-import-not-at-top
  fast_config.unlock()
  fast_config.train.num_stepz = 2
  with pytest.raises(ConfigError, match=r'config.train.num_stepz=2: unknown key'):
    train.train_and_evaluate(fast_config, str(tmp_path / 'wd'))
  assert not (tmp_path / 'wd').exists()


# ---------------------------------------------------------------- full disk (issue 28.10)

def _full_disk_at(monkeypatch, where='/checkpoints/4.'):
  """orbax's meta write of the checkpoint whose path contains `where` fails with ENOSPC in
  orbax's commit thread, as on a full disk."""
  import errno  # pylint: disable=g-import-not-at-top
  from orbax.checkpoint._src.handlers import json_checkpoint_handler as jh  # pylint: disable=g-import-not-at-top
  save = jh.JsonCheckpointHandler._save_fn   # pylint: disable=protected-access

  async def full(self, x, directory):
    if where in str(directory):
      raise OSError(errno.ENOSPC, 'No space left on device', str(directory))
    return await save(self, x, directory)
  monkeypatch.setattr(jh.JsonCheckpointHandler, '_save_fn', full)


def test_full_disk_names_the_workdir_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path,
                                                                        monkeypatch, caplog):
  from seqrec_jax.checkpoint import CheckpointDiskFullError, read_source  # pylint: disable=g-import-not-at-top
  _full_disk_at(monkeypatch)
  wd = str(tmp_path / 'wd')
  with pytest.raises(CheckpointDiskFullError) as e:
    train.train_and_evaluate(tiny_config, wd)
  msg = str(e.value)
  assert len(msg.splitlines()) == 1, msg
  assert f'workdir {os.path.abspath(wd)}' in msg and 'no space left on device' in msg.lower()
  assert 'nothing was lost' in msg and 'last good checkpoint is step 2' in msg
  _, _, where = read_source(os.path.join(wd, 'checkpoints'))   # restores and verifies
  assert where.endswith('checkpoints/2')
  monkeypatch.undo()             # space freed: the rerun resumes from step 2 and finishes
  caplog.set_level(logging.INFO)
  assert train.train_and_evaluate(tiny_config, wd)['steps'] == 4
  assert any(r.getMessage().endswith('at step 2') and 'Resumed' in r.getMessage()
             for r in caplog.records), [r.getMessage() for r in caplog.records][-20:]
