"""experiments/sweep.py trusts nothing it reads back (issue 28): a cell record that is not
valid JSON, lacks a key, fails its checksum or names a workdir that is not the cell's is moved
to cells/corrupt/ and the cell reruns; a stale cell never deletes outside the outdir (copied
outdirs, hand-edited records, symlinks); a bad workdir stamp is an error naming the file.
Fake engines, no training."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from experiments import sweep
from seqrec_jax.configs import default

SPEC = 'seqrec_jax/configs/test.py'


class Engine:
  """train_and_evaluate's contract for single runs: writes a checkpoint and a metrics line."""

  def __init__(self):
    self.calls = []

  def __call__(self, cfg, workdir):
    self.calls.append(workdir)
    with open(os.path.join(workdir, 'checkpoint'), 'w') as f:
      f.write('step 4')
    with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
      f.write(json.dumps({'step': 4, 'train/loss': float(cfg.seed)}) + '\n')
    return {'seed': cfg.seed, 'eval/test/auc': 0.6 + 0.01 * cfg.seed, 'steps': 4}


def _cells(n=2):
  return [sweep.Cell({'model': 'din'}, {'optim.learning_rate': 1e-3}, s) for s in range(n)]


def _run(out, eng, logs=None):
  return sweep.run_sweep(SPEC, _cells(), str(out), eng,
                         log=(logs.append if logs is not None else lambda _: None))


def _path(out, cell):
  return os.path.join(str(out), 'cells', f'{cell.id}.json')


def _json(x):
  return json.loads(json.dumps(x, sort_keys=True, default=str))


def _edit(path, fn):
  with open(path) as f:
    rec = json.load(f)
  fn(rec)
  with open(path, 'w') as f:
    json.dump(rec, f)


def _stale(monkeypatch):
  """A shared default changes: every finished cell is stale."""
  orig = default.get_config

  def changed():
    c = orig()
    c.model.dice_eps = 1e-5
    return c
  monkeypatch.setattr(default, 'get_config', changed)


def _precious(tmp_path):
  d = tmp_path / 'precious'
  d.mkdir()
  (d / 'thesis.tex').write_text('years of work')
  return d


def test_a_record_naming_another_directory_never_deletes_it(tmp_path, monkeypatch):
  out, eng = tmp_path / 'out', Engine()
  _run(out, eng)
  precious = _precious(tmp_path)
  cell = _cells()[0]
  _edit(_path(out, cell), lambda r: r.update(workdir=str(precious)))
  _stale(monkeypatch)
  logs = []
  recs = _run(out, eng, logs)
  assert (precious / 'thesis.tex').read_text() == 'years of work'
  assert recs[0]['workdir'] == os.path.join(str(out), 'work', cell.id)
  assert len(eng.calls) == 4 and all(c.startswith(str(out)) for c in eng.calls)
  assert any(_path(out, cell) in m for m in logs)


def test_a_copied_outdir_never_touches_the_original(tmp_path, monkeypatch):
  a, b, eng = tmp_path / 'a', tmp_path / 'b', Engine()
  _run(a, eng)
  shutil.copytree(a, b)
  # Same config: the copy's records are reused, and they point at the copy's workdirs.
  recs = _run(b, eng)
  assert len(eng.calls) == 2
  assert all(r['workdir'].startswith(str(b) + os.sep) for r in recs)
  assert [m['train/loss'] for m in sweep.cell_metrics(recs[1], str(b))] == [1.0]
  # Stale: the copy's workdirs are replaced, the original's are untouched.
  _stale(monkeypatch)
  _run(b, eng)
  assert eng.calls[2:] == [os.path.join(str(b), 'work', c.id) for c in _cells()]
  for c in _cells():
    assert sorted(os.listdir(a / 'work' / c.id)) == ['checkpoint', 'metrics.jsonl',
                                                    'sweep_config.json']
    assert json.load(open(_path(a, c)))['config']['model']['dice_eps'] != 1e-5


def test_a_work_folder_that_links_outside_is_never_deleted(tmp_path, monkeypatch):
  out, eng = tmp_path / 'out', Engine()
  _run(out, eng)
  elsewhere = tmp_path / 'elsewhere'
  shutil.move(str(out / 'work'), str(elsewhere))
  os.symlink(elsewhere, out / 'work')
  _stale(monkeypatch)
  with pytest.raises(sweep.SweepError, match='outside the outdir'):
    _run(out, eng)
  assert all((elsewhere / c.id / 'checkpoint').exists() for c in _cells())


@pytest.mark.parametrize('name,corrupt', [
    ('truncated', lambda p: open(p, 'r+').truncate(os.path.getsize(p) // 2)),
    ('not_json', lambda p: open(p, 'w').write('{"id": oops')),
    ('not_an_object', lambda p: open(p, 'w').write('[1, 2]')),
    ('no_summary', lambda p: _edit(p, lambda r: r.pop('summary'))),
    ('edited_metric', lambda p: _edit(p, lambda r: r['summary'].update({'eval/test/auc': 0.99}))),
    ('other_cell', lambda p: _edit(p, lambda r: r.update(id='x'))),
])
def test_a_malformed_record_is_moved_aside_and_its_cell_reruns(tmp_path, name, corrupt):
  out, eng = tmp_path / 'out', Engine()
  first = _run(out, eng)
  cell = _cells()[1]
  corrupt(_path(out, cell))
  bad = open(_path(out, cell)).read()
  logs = []
  recs = _run(out, eng, logs)
  assert eng.calls[2:] == [os.path.join(str(out), 'work', cell.id)], name
  assert recs[1]['summary'] == first[1]['summary'] and _json(recs[0]) == _json(first[0])
  kept = out / 'cells' / 'corrupt' / f'{cell.id}.json'
  assert kept.read_text() == bad
  assert any(_path(out, cell) in m and str(kept) in m for m in logs), logs
  # Corrupted again: the first kept copy stays, the second is kept beside it.
  corrupt(_path(out, cell))
  _run(out, eng)
  assert kept.read_text() == bad and (out / 'cells' / 'corrupt' / f'{cell.id}.json.1').exists()


def test_records_carry_a_checksum_of_their_body(tmp_path):
  out = tmp_path / 'out'
  _run(out, Engine())
  rec = json.load(open(_path(out, _cells()[0])))
  assert rec['checksum'].startswith('sha256:') and len(rec['checksum']) == 7 + 64


def test_records_from_before_checksums_are_reused_with_a_warning(tmp_path):
  out, eng = tmp_path / 'out', Engine()
  first = _run(out, eng)
  for c in _cells():
    _edit(_path(out, c), lambda r: r.pop('checksum', None))
  logs = []
  recs = _run(out, eng, logs)
  assert len(eng.calls) == 2
  assert [r['summary'] for r in recs] == [r['summary'] for r in first]
  assert sum('no checksum' in m for m in logs) == 2


def test_a_malformed_workdir_stamp_is_an_error_naming_it(tmp_path):
  out, eng = tmp_path / 'out', Engine()
  _run(out, eng)
  cell = _cells()[0]
  os.remove(_path(out, cell))
  stamp = out / 'work' / cell.id / 'sweep_config.json'
  stamp.write_text('{"seed": ')
  with pytest.raises(sweep.SweepError, match=str(stamp)):
    _run(out, eng)
  assert (out / 'work' / cell.id / 'checkpoint').exists()


def test_diverged_runs_are_counted_in_the_table(tmp_path):
  recs = [{'id': f'c{i}', 'group': {'model': 'din'}, 'summary': {'eval/test/auc': 0.5 + i / 10,
                                                                   'diverged': i == 2}}
          for i in range(3)]
  rows = sweep.aggregate(recs, ['eval/test/auc'])
  assert rows[0]['diverged_ids'] == ['c2'] and rows[0]['n_seeds'] == 3
  text = sweep.write_table(rows, [('model', 'model'), ('AUC', 'eval/test/auc')], str(tmp_path))
  assert '1 run(s) diverged (non-finite training loss)' in text and 'c2' in text
  clean = sweep.write_table(sweep.aggregate(recs[:2], ['eval/test/auc']),
                            [('AUC', 'eval/test/auc')], str(tmp_path))
  assert 'diverged' not in clean
