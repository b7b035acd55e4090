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
  out = _main('--help', '--config=seqrec_jax/configs/test.py')
  assert out.returncode == 0 and 'train.num_steps = 4' in out.stdout


def test_help_meanings_cover_every_dataset_block_and_name_only_real_keys():
  from seqrec_jax.configs import default, help as config_help, validate  # pylint: disable=g-import-not-at-top
  cfg = default.get_config()
  found = {name for name, _ in config_help._dataset_modules(cfg)}  # pylint: disable=protected-access
  blocks = {k for k, v in cfg.data.items() if hasattr(v, 'items')}
  assert {'synthetic', 'movielens', 'video', 'mmoe_synthetic'} <= found <= blocks
  flat = validate.flatten(cfg)
  keys = {'.'.join(k.split('.')[:i]) for k in flat for i in range(1, k.count('.') + 2)}
  notes = config_help.meanings()
  assert set(notes) <= keys, sorted(set(notes) - keys)          # no parsing artefacts
  assert 'newest behaviours' in notes['data.movielens.max_len']


def test_missing_config_file_leaves_no_workdir(tmp_path):
  wd = tmp_path / 'wd'
  out = _main('--config=no_such_config.py', f'--workdir={wd}')
  assert out.returncode != 0
  assert 'no_such_config.py' in out.stderr
  assert not wd.exists()
