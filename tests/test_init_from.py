"""train.init_from (warm start) and train.trainable=embeddings (seqrec_jax/train.py, state.py).

Programs are built once and reused with another config where only train.init_from differs
(warm_start reads nothing else), so the file compiles few steps (CI time)."""
import dataclasses
import itertools
import os
import shutil

import jax
import numpy as np
import pytest

from seqrec_jax import parallel, train, workdir as workdir_lib
from seqrec_jax.checkpoint import (Checkpointer, CheckpointCorruptError, CheckpointMismatchError,
                                   find_source, read_source)
from seqrec_jax.configs import load_config, validate
from seqrec_jax.metric_writers import MetricsWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A small program (base model, PReLU) where only the loop's logic is tested.
SMALL = {'model.name': 'base', 'model.activation': 'prelu'}


def _config(**overrides):
  return load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py'), {
      'model.activation': 'dice',       # batch_stats to carry over
      'data.pack_history': False,       # one compiled step shape
      **overrides})


def _with(prog, **overrides):
  """prog with train.init_from (and nothing that changes the program) set in its config."""
  c = prog.config.copy_and_resolve_references()
  for k, v in overrides.items():
    c.train[k] = v
  return dataclasses.replace(prog, config=c)


def _save(prog, wd, step: int = 4):
  """A checkpoint of prog's fresh state with every leaf moved off its init (batch_stats too)
  in wd/best and wd/checkpoints, as a finished run leaves them; nothing trained."""
  rng = np.random.default_rng(0)
  state = jax.device_get(prog.init())
  state = state.replace(**{c: jax.tree.map(
      lambda x: (x + rng.normal(0, 0.1, x.shape)).astype(x.dtype), getattr(state, c))
      for c in ('params', 'batch_stats')})
  meta = prog.meta_item([{'best': 0.5, 'best_step': step, 'bad_evals': 0,
                          'stopped_early': False}] * prog.num_runs, step)
  ckpt = Checkpointer(wd, 2, prog.fingerprint)
  ckpt.save(step, state, meta, best=True)
  ckpt.save(step, state, meta)
  ckpt.close()
  return wd


def _start(prog, wd):
  """The state train_and_evaluate would start from in wd (step 0 or resumed), on the host."""
  ckpt = Checkpointer(wd, 2, prog.fingerprint)
  state, ps = train.init_or_restore(prog, ckpt, wd)
  ckpt.close()
  return state, ps


def _leaves(tree):
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.fixture(scope='module')
def din(tmp_path_factory):
  """(source workdir, its program): one DIN + Dice run's checkpoint (params and batch_stats)."""
  prog = train.build_program(_config())
  return _save(prog, str(tmp_path_factory.mktemp('src'))), prog


def test_init_from_reproduces_the_source_at_step_0(din, tmp_path):
  source, prog = din
  st = jax.device_get(_start(_with(prog, init_from=source), str(tmp_path))[0])
  src = read_source(source)[0]
  assert int(st.step[0]) == 0
  for coll in ('params', 'batch_stats'):
    want, got = _leaves(src[coll]), _leaves(getattr(st, coll))
    assert want and sorted(want) == sorted(got)
    for k in want:
      np.testing.assert_array_equal(got[k], want[k], err_msg=f'{coll}{k}')
  # Optimiser state fresh: Adam's moments are zero.
  assert all(not np.any(x) for x in jax.tree.leaves(st.opt_state.inner_state))


def test_mismatch_names_the_key_the_path_and_what_differs(din, tmp_path):
  source, _ = din
  prog = train.build_program(_config(**{'train.init_from': source, 'model.embed_dim': 6,
                                        'model.hidden': (16, 8, 4)}))
  with pytest.raises(CheckpointMismatchError) as e:
    _start(prog, str(tmp_path / 'a'))
  msg = str(e.value)
  assert 'config.train.init_from' in msg and source in msg
  assert "['embed']['item']['embedding']: (101, 4) -> (101, 6)" in msg
  assert "params missing from the checkpoint (3): ['head']['mlp']['Dice_2']['alpha'], " in msg
  assert 'batch_stats missing from the checkpoint (3)' in msg
  with pytest.raises(CheckpointMismatchError, match='config.train.init_from=.*no checkpoint'):
    find_source(str(tmp_path))


def test_embeddings_only_updates_leave_dense_params_bit_identical(din, tmp_path):
  source, _ = din
  cfg = _config(**{'train.init_from': source, 'train.trainable': 'embeddings', 'seed': 3})
  prog = train.build_program(cfg)
  state, _ = _start(prog, str(tmp_path))
  for batch in prog.batches(0):
    state, _ = prog.train(state, batch, np.ones(1, bool))
  after, before = jax.device_get(state), read_source(source)[0]
  assert int(after.step[0]) == cfg.train.num_steps
  changed = set()
  for coll in ('params', 'batch_stats'):
    a, b = _leaves(getattr(after, coll)), _leaves(before[coll])
    assert b
    for k in b:
      if coll == 'params' and k.endswith("['embedding']"):
        if not np.array_equal(a[k], b[k]):
          changed.add(k[k.find("['embed']"):])
      else:
        assert a[k].tobytes() == b[k].tobytes(), f'{coll}{k} changed'
  assert {"['embed']['item']['embedding']", "['embed']['cate']['embedding']"} <= changed
  # Optimiser state only for the embedding tables (Adam: two moments each).
  # (Every leaf has the run axis [S=1]; the injected hyper-parameters are not moments.)
  n_tables = sum(x.size for p, x in jax.tree_util.tree_flatten_with_path(prog.abstract.params)[0]
                 if parallel.is_embedding_table(p, np.zeros(x.shape[1:])))
  n_opt = sum(x.size for x in jax.tree.leaves(prog.abstract.opt_state.inner_state)
              if x.ndim > 1)
  assert n_opt == 2 * n_tables


def _train(prog, wd, stop_after=None):
  """train_and_evaluate's init-or-resume and loop in wd; stop_after: the host is 'killed'
  after that many steps (the checkpoint of step checkpoint_every is on disk)."""
  ckpt = Checkpointer(wd, 2, prog.fingerprint)
  state, ps = train.init_or_restore(prog, ckpt, wd)
  writer = MetricsWriter(wd, ps.step)
  if stop_after is not None:
    prog = dataclasses.replace(prog, batches=lambda s, b=prog.batches: itertools.islice(
        b(s), stop_after - s))
  state = train.train_loop(prog, state, ps, ckpt, writer)
  ckpt.wait()
  ckpt.close()
  writer.close()
  return jax.device_get(state)


def test_resume_after_interruption_does_not_reapply_init_from(tmp_path):
  base = train.build_program(_config(**SMALL, seed=5))
  src = _save(base, str(tmp_path / 'src'))
  prog = _with(base, init_from=src)
  full = _train(prog, str(tmp_path / 'full'))
  cut = _train(prog, str(tmp_path / 'cut'), stop_after=2)
  assert int(cut.step[0]) == 2
  shutil.rmtree(src)             # the resumed run must not read the source again
  resumed = _train(prog, str(tmp_path / 'cut'))
  assert int(resumed.step[0]) == int(full.step[0]) == 4
  for k, v in _leaves(full.params).items():
    np.testing.assert_array_equal(_leaves(resumed.params)[k], v, err_msg=k)
  # init_from is result-affecting: another source is refused on resume.
  old = workdir_lib.flatten(prog.config.to_dict())
  new = dict(old, **{'train.init_from': src + '2'})
  assert workdir_lib.config_differences(old, new) == [
      f'train.init_from: {src!r} -> {src + "2"!r}']
  # A workdir recorded before the keys existed resumes at their defaults, and only there.
  old = {k: v for k, v in old.items() if k not in ('train.init_from', 'train.trainable')}
  assert workdir_lib.config_differences(old, dict(old, **{'train.init_from': '',
                                                          'train.trainable': 'all'})) == []
  assert workdir_lib.config_differences(old, dict(old, **{'train.trainable': 'embeddings'}))


def test_group_warm_start_broadcast_and_run_by_run(tmp_path):
  one = train.build_program(_config(**SMALL))
  grp = train.build_program(_config(**SMALL, **{'train.runs': 2}))
  one_src, grp_src = _save(one, str(tmp_path / 'one')), _save(grp, str(tmp_path / 'grp'))
  st, _ = _start(_with(grp, init_from=one_src), str(tmp_path / 'a'))
  src = _leaves(read_source(one_src)[0]['params'])
  for k, v in _leaves(jax.device_get(st.params)).items():
    assert v.shape[0] == 2
    np.testing.assert_array_equal(v, np.broadcast_to(src[k], v.shape), err_msg=k)
  st, _ = _start(_with(grp, init_from=grp_src), str(tmp_path / 'b'))
  want = _leaves(read_source(grp_src)[0]['params'])
  for k, v in _leaves(jax.device_get(st.params)).items():
    np.testing.assert_array_equal(v, want[k], err_msg=k)
    assert not np.array_equal(v[0], v[1]), k      # run s from run s
  with pytest.raises(CheckpointMismatchError,
                     match='a group of 2 runs.*cannot start one run.*config.train.runs=2'):
    _start(_with(one, init_from=grp_src), str(tmp_path / 'c'))


def test_config_validation_of_both_keys():
  bad = _config(**{'train.trainable': 'dense'}).to_dict()
  bad['train']['init_from'] = 3          # past ml_collections' type check (a dict config)
  with pytest.raises(validate.ConfigError) as e:
    validate.validate_config(bad)
  msg = str(e.value)
  assert "config.train.trainable='dense'" in msg and "['all', 'embeddings']" in msg
  assert 'config.train.init_from=3' in msg
  validate.validate_config(_config(**{'train.trainable': 'embeddings', 'train.init_from': '/x'}))


def _tamper(wd, prog, sub='best', step=4):
  """Rewrites wd/sub/step with one embedding value's sign flipped and the meta it was saved
  with (so its CRC32 no longer matches), as a flipped byte on disk would."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  ckpt = Checkpointer(wd, 2, prog.fingerprint)
  mgr = getattr(ckpt, 'best' if sub == 'best' else 'latest')
  state, meta = ckpt._restore(mgr, step, prog.abstract)  # pylint: disable=protected-access
  ckpt.close()
  flip = lambda p, x: (x.at[..., 1, 0].set(-x[..., 1, 0]) if jax.tree_util.keystr(p).endswith(
      "['item']['embedding']") else x)
  state = state.replace(params=jax.tree_util.tree_map_with_path(flip, state.params))
  shutil.rmtree(os.path.join(wd, sub, str(step)))
  mgr = ocp.CheckpointManager(os.path.join(wd, sub))
  mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                         meta=ocp.args.JsonSave(meta)), force=True)
  mgr.wait_until_finished()
  mgr.close()


def test_corrupt_source_is_an_error_naming_it_never_a_silent_load(din, tmp_path):
  source, prog = din
  bad = str(tmp_path / 'src')
  shutil.copytree(source, bad)
  _tamper(bad, prog)
  with pytest.raises(CheckpointCorruptError) as e:
    _start(_with(prog, init_from=bad), str(tmp_path / 'wd'))
  msg = str(e.value)
  assert f'config.train.init_from={bad!r}' in msg and f'{bad}/best/4' in msg
  assert 'state checksum' in msg and 'does not fall back' in msg
  assert f'{bad}/checkpoints/4' in msg        # another checkpoint to choose from
  assert not (tmp_path / 'wd' / 'checkpoints').exists() or not os.listdir(tmp_path / 'wd'
                                                                          / 'checkpoints')
  # That other checkpoint verifies and warm-starts.
  st = jax.device_get(_start(_with(prog, init_from=f'{bad}/checkpoints/4'),
                             str(tmp_path / 'wd2'))[0])
  assert int(st.step[0]) == 0
