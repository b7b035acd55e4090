"""The command line (issue 14.11, 14.7): --help lists every config key with its value and
meaning and exits 0; a missing config file leaves no workdir behind."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args):
  return subprocess.run([sys.executable, '-m', 'seqrec_jax.main', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_help_lists_config_keys_with_defaults_and_meaning_and_exits_0():
  out = _main('--help')
  assert out.returncode == 0, out.stderr[-2000:]
  assert '--workdir' in out.stdout and '--config.<key>=<value>' in out.stdout
  line = next(l for l in out.stdout.splitlines() if l.strip().startswith('train.num_steps ='))
  assert '-1' in line and 'overrides num_epochs' in line
  assert 'data.batch_size = 256' in out.stdout
  from seqrec_jax.configs import default  # pylint: disable=g-import-not-at-top
  assert all(f'\n  {k} = ' in out.stdout for k in default.BY_PATH)   # every key of the table
  out = _main('--help', '--config=seqrec_jax/configs/test.py')
  assert out.returncode == 0 and 'train.num_steps = 4' in out.stdout


def test_missing_config_file_leaves_no_workdir(tmp_path):
  wd = tmp_path / 'wd'
  out = _main('--config=no_such_config.py', f'--workdir={wd}')
  assert out.returncode != 0
  assert 'no_such_config.py' in out.stderr
  assert not wd.exists()


def test_full_disk_ends_with_one_line_naming_the_workdir_and_the_cause(tmp_path):
  """The CLI on a disk that fills at the step-4 checkpoint: the last line of stderr names the
  workdir and the cause (not a shutdown traceback of orbax's commit threads)."""
  driver = '\n'.join([
      'import errno, sys',
      'from orbax.checkpoint._src.handlers import json_checkpoint_handler as jh',
      'save = jh.JsonCheckpointHandler._save_fn',
      'async def full(self, x, directory):',
      "  if '/checkpoints/4.' in str(directory):",
      "    raise OSError(errno.ENOSPC, 'No space left on device', str(directory))",
      '  return await save(self, x, directory)',
      'jh.JsonCheckpointHandler._save_fn = full',
      'from seqrec_jax import main',
      "sys.argv = ['seqrec_jax.main'] + sys.argv[1:]",
      'main.run()'])
  wd = tmp_path / 'wd'
  out = subprocess.run([sys.executable, '-c', driver, '--config=seqrec_jax/configs/test.py',
                        f'--workdir={wd}', '--config.train.progress=False'], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode != 0
  last = [line for line in out.stderr.splitlines() if line.strip()][-1]
  assert f'workdir {wd}' in last and 'no space left on device' in last.lower(), out.stderr[-3000:]
  assert 'nothing was lost' in last and 'step 2' in last
  # The failed save left only orbax's temporary directory (never read; removed by orbax).
  assert [d for d in os.listdir(wd / 'checkpoints') if d.isdigit()] == ['2']
