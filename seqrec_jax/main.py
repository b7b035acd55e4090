r"""Train and evaluate a ranking model.

  python -m seqrec_jax.main --config=seqrec_jax/configs/din.py:synthetic --workdir=runs/din \
      --config.model.activation=prelu

Every config value can be overridden with --config.<path>=<value>; unknown keys are errors.
Rerunning with the same --workdir resumes from its latest checkpoint.
Multi-process: add --coordinator_address=host:port --num_processes=N --process_id=i (or run
under SLURM / a TPU slice with --distributed=on); see seqrec_jax/distributed.py.
"""
from __future__ import annotations

import os
import sys
import traceback

from absl import app, flags
from ml_collections import config_flags

from seqrec_jax import distributed  # defines --distributed, --coordinator_address, ...
from seqrec_jax import xla_cpu

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, e.g. seqrec_jax/configs/din.py:synthetic', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints and metrics.jsonl go.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  xla_cpu.apply_defaults()  # CPU runtime defaults, before the backend starts
  distributed.initialize_from_flags()  # before anything touches devices
  from seqrec_jax import train  # pylint: disable=g-import-not-at-top  (keeps --help fast)
  from seqrec_jax.checkpoint import CheckpointDiskFullError  # pylint: disable=g-import-not-at-top
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except CheckpointDiskFullError as e:
    _exit_disk_full(e)


def _exit_disk_full(e: BaseException):
  """Ends a run whose disk filled: its traceback, then one last line naming the workdir and
  the cause. os._exit, after the workdir lock and the managers were released: the failed
  save's orbax commit threads stay blocked and would print unrelated tracebacks at exit."""
  traceback.print_exception(e)
  sys.stdout.flush()
  print(f'\nerror: {e}', file=sys.stderr, flush=True)
  os._exit(1)  # pylint: disable=protected-access


def _help(argv) -> str:
  """--help: this docstring, the flags, and every config key with its value and meaning."""
  from seqrec_jax.configs import help as config_help, load_config  # pylint: disable=g-import-not-at-top
  spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  config = load_config(spec or 'default.py')
  flags_help = '\n'.join(f'  --{f.name}: {f.help}' for f in flags.FLAGS.get_key_flags_for_module(
      __name__) + flags.FLAGS.get_key_flags_for_module(distributed))
  return (f'{__doc__.strip()}\n\nFlags:\n{flags_help}\n  --config.<key>=<value>: override '
          'a config key (below)\n\n' + config_help.describe(
              config, spec or 'seqrec_jax/configs/default.py (add --config=FILE[:ARG] to see '
              "that file's values)"))


def run():
  if any(a in ('--help', '-h', '--help=true') for a in sys.argv[1:]):
    print(_help(sys.argv[1:]))
    sys.exit(0)
  app.run(main)


if __name__ == '__main__':
  run()
