"""Two local processes joined by jax.distributed (127.0.0.1) train, checkpoint, resume and
match a single-process run: per-step losses, final parameters and the test metrics.

Launched through benchmarks/multihost.sh (2 processes x 2 forced CPU devices = 4 devices).
Leg 1 trains steps 1-4 with strategy=jit on a (data=2, model=2) mesh: the item table is
sharded by rows inside each process. Leg 2 resumes the same workdir to step 8 with
strategy=pmap on (data=4): the checkpoint is restored into a different layout.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from seqrec_jax import train
from seqrec_jax.configs import test as test_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# A smaller DIN than test.py's (one Dice hidden layer, a one-layer attention MLP): every
# process compiles its steps, ~25% faster.
SMALL = {'model.hidden': (8,), 'model.attention.hidden': (4,)}


def _config():
  c = test_config.get_config('din')
  c.train.num_steps = 8
  c.data.synthetic.num_items = 119
  c.model.hidden, c.model.attention.hidden = SMALL.values()
  # Padded histories, as the multi-process legs (packing is single-device only): one compiled
  # train step shape, not one per packed capacity.
  c.data.pack_history = False
  return c


def _launch(workdir, logdir, *flags):
  env = dict(os.environ, PYTHON=sys.executable, LOGDIR=str(logdir), PYTHONPATH=ROOT)
  # multihost.sh adds its own device count to XLA_FLAGS; keep the rest (conftest's -O0).
  env['XLA_FLAGS'] = ' '.join(f for f in os.environ.get('XLA_FLAGS', '').split()
                              if 'device_count' not in f)
  cmd = ['bash', os.path.join(ROOT, 'benchmarks', 'multihost.sh'), '-n', '2', '-d', '2',
         '--config=seqrec_jax/configs/test.py', f'--workdir={workdir}',
         '--config.data.synthetic.num_items=119', '--config.train.progress=false',
         *[f'--config.{k}={v}' for k, v in SMALL.items()], *flags]
  out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900,
                       check=False)
  assert out.returncode == 0, out.stderr[-4000:]
  lines = [l for l in out.stdout.splitlines() if l.startswith('{"summary"')]
  assert len(lines) == 1, out.stdout[-2000:]    # printed by process 0 only
  return json.loads(lines[0])['summary']


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(l) for l in f if l.strip()]


def _params(workdir, step):
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  ckpt = ocp.StandardCheckpointer()
  sh = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sh),
                        dict(ckpt.metadata(path).item_metadata))
  return jax.device_get(ckpt.restore(path, target))['params']


@pytest.mark.slow
def test_two_processes_train_checkpoint_resume_and_match_one_process(tmp_path):
  ref_dir, mp_dir = tmp_path / 'ref', tmp_path / 'mp'
  ref = train.train_and_evaluate(_config(), str(ref_dir))

  first = _launch(mp_dir, tmp_path / 'logs1', '--config.train.num_steps=4',
                  '--config.parallel.model=2')
  assert first['steps'] == 4
  assert sorted(os.listdir(mp_dir / 'checkpoints')) == ['2', '4']
  mp = _launch(mp_dir, tmp_path / 'logs2', '--config.train.num_steps=8',
               '--config.parallel.strategy=pmap')
  assert 'Resumed from' in (tmp_path / 'logs2' / '0.log').read_text()

  # metrics.jsonl: one writer, each step once (the resumed run trimmed the first summary).
  recs = _records(mp_dir)
  train_steps = [r['step'] for r in recs if 'train/loss' in r]
  assert train_steps == list(range(1, 9))
  assert [r['step'] for r in recs if 'summary' in r] == [8]
  ref_loss = {r['step']: r['train/loss'] for r in _records(ref_dir) if 'train/loss' in r}
  mp_loss = {r['step']: r['train/loss'] for r in recs if 'train/loss' in r}
  assert max(abs(mp_loss[s] - ref_loss[s]) for s in ref_loss) < 1e-5, (mp_loss, ref_loss)

  got, want = _params(mp_dir, 8), _params(ref_dir, 8)
  diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), got, want)
  assert max(jax.tree.leaves(diffs)) < 1e-5, diffs
  for key in ('eval/test/auc', 'eval/test/gauc', 'eval/test/logloss', 'eval/valid/auc'):
    assert abs(mp[key] - ref[key]) < 1e-5, (key, mp[key], ref[key])
  assert mp['best_step'] == ref['best_step'] and mp['steps'] == ref['steps'] == 8
