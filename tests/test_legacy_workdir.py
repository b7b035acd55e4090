"""A single-run workdir written before every program became a group (tests/fixtures/
legacy_single_run: no run axis on the state, a flat checkpoint meta, an optimiser state
without injected hyper-parameters) still resumes and warm-starts (train.Program.restore_target,
checkpoint.restore_verified)."""
import os
import shutil

import jax
import numpy as np

from seqrec_jax import train
from seqrec_jax.checkpoint import Checkpointer, flat_leaves, read_source
from seqrec_jax.configs import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEGACY = os.path.join(ROOT, 'tests', 'fixtures', 'legacy_single_run')


def _config(**over):
  c = load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py'), {
      'model.name': 'base', 'model.activation': 'dice', 'data.pack_history': False, **over})
  c.train.eval_every = c.train.checkpoint_every = 2
  c.train.keep_checkpoints = 1
  return c


def test_legacy_single_run_resumes_as_if_never_interrupted(tmp_path):
  wd = str(tmp_path / 'legacy')
  shutil.copytree(LEGACY, wd)
  _, meta, _ = read_source(os.path.join(wd, 'checkpoints'))
  assert 'runs' not in meta and meta['best_step'] == 2          # the old layout
  resumed = train.train_and_evaluate(_config(), wd)              # steps 3-4 on top of 2
  full = train.train_and_evaluate(_config(), str(tmp_path / 'full'))
  assert resumed['steps'] == full['steps'] == 4 and 'runs' not in resumed
  # The fixture's steps 1-2 were computed on the CPU that wrote it (an Intel Xeon); XLA's CPU
  # code differs by instruction set, so on another CPU the resumed run agrees with an
  # uninterrupted one to float rounding (seen: 1e-9 on an AMD EPYC), not bit for bit.
  assert resumed['best_step'] == full['best_step']
  for k in full:
    if k.startswith('eval/'):
      np.testing.assert_allclose(resumed[k], full[k], rtol=1e-6, atol=1e-7, err_msg=k)
  _, meta, _ = read_source(os.path.join(wd, 'checkpoints'))
  assert meta['layout'] == train.LAYOUT and meta['step'] == 4 and len(meta['runs']) == 1


def test_legacy_single_run_warm_starts_a_run_and_a_group(tmp_path):
  src = read_source(LEGACY)[0]            # best/2
  for runs in (1, 2):
    prog = train.build_program(_config(**{'train.init_from': LEGACY, 'train.runs': runs}))
    ckpt = Checkpointer(str(tmp_path / str(runs)), 1, prog.fingerprint)
    state, ps = train.init_or_restore(prog, ckpt, str(tmp_path / str(runs)))
    ckpt.close()
    assert ps.step == 0
    mine, theirs = flat_leaves(jax.device_get(state.params)), flat_leaves(src['params'])
    assert mine and sorted(mine) == sorted(theirs)
    for k, x in mine.items():
      assert x.shape == (runs,) + np.shape(theirs[k])
      np.testing.assert_array_equal(x, np.broadcast_to(theirs[k], x.shape), err_msg=k)
