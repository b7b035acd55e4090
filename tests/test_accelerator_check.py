"""benchmarks/accelerator_check.py: the CPU smoke run (its CI test) and its pure helpers (goal
verdicts, JUnit parsing, which carried wheels to install)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks import accelerator_check as ac

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
  out = tmp_path_factory.mktemp('acc')
  env = {k: v for k, v in os.environ.items() if k not in ('OUT', 'JAX_PLATFORMS')}
  proc = subprocess.run([sys.executable, '-m', 'benchmarks.accelerator_check', '--platform=cpu',
                         '--smoke', f'--outdir={out}'], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out / 'accelerator_check.json') as f:
    res = json.load(f)
  return out, res, proc.stdout


def test_smoke_run_writes_every_section(smoke):
  out, res, stdout = smoke
  assert {'command', 'started', 'settings', 'wall_s', 'goals', 'versions', 'tests', 'train',
          'multirun'} <= set(res)
  for name in ('versions', 'tests', 'train'):
    assert 'error' not in res[name], (name, res[name]['error'])
  v = res['versions']
  assert v['jax_backend'] == 'cpu' and v['platform_ok'] and v['dists']['jax']
  assert v['platform_defaults']['cpu']['measured'] is True
  assert res['tests']['passed'] >= 1 and res['tests']['failures'] == 0
  assert os.path.getsize(out / 'pytest.txt') > 0 and os.path.exists(out / 'accelerator_check.log')
  assert '## Goals' in stdout                     # the verdicts are the last thing printed


def test_smoke_train_rows_and_serving(smoke):
  _, res, _ = smoke
  tr = res['train']
  assert tr['rows'], tr
  for row in tr['rows']:
    assert row['examples_per_s'] > 0 and row['L'] == 20 and row['batch'] == 64
    assert {'min_examples_per_s', 'max_examples_per_s', 'step_ms', 'first_step_s'} <= set(row)
  assert {r['system'] for r in tr['rows']} >= {'jax_dense'}
  assert tr['serve'] and tr['serve'][0]['N'] == 1000 and tr['serve'][0]['p50_ms'] > 0
  assert tr['serve'][0]['path'] == 'shared'       # history computed once per request
  if not ac.torch_available():
    assert any('torch is not importable' in s for s in tr['skipped'])
    assert not any(r['system'].startswith('torch') for r in tr['rows'])


def test_smoke_multirun_section(smoke):
  _, res, _ = smoke
  mr = res['multirun']
  if not mr['available']:
    assert 'multi-run engine not available' in mr['reason']
    assert res['goals']['multirun_s64_vs_s1']['status'] == 'n/a'
  else:
    jobs = {j['runs']: j for j in mr['jobs']}
    assert set(jobs) == {2}, mr
    for j in jobs.values():
      assert 'error' not in j, j
      assert j['runs_per_hour'] > 0 and j['n_summaries'] == j['runs']


def test_smoke_markdown_and_goal_keys(smoke):
  out, res, _ = smoke
  md = (out / 'accelerator_check.md').read_text()
  for head in ('# Accelerator check', '## Tests', '## DIN training', '## Serving',
               '## Multi-run throughput', '## Goals'):
    assert head in md, head
  assert set(res['goals']) == set(ac.GOALS)
  for name, g in res['goals'].items():
    assert g['status'] in ('pass', 'fail', 'n/a'), name
    assert name in md


def _results(jax_rate, tc_rate, s1, s64, p50, dense=False):
  rows = []
  for L in (50, 100, 200):
    for b in (1024, 8192):
      rows += [{'system': 'jax_dense' if dense else 'jax', 'L': L, 'batch': b,
                'examples_per_s': jax_rate},
               {'system': 'torch_compile', 'L': L, 'batch': b, 'examples_per_s': tc_rate}]
  pd = {'gpu': {'data.pack_history': not dense}}
  return {'versions': {'platform_defaults': pd},
          'train': {'rows': rows, 'serve': [{'system': 'jax', 'L': L, 'p50_ms': p50}
                                            for L in (50, 100, 200)]},
          'multirun': {'available': True, 'jobs': [
              {'cell': 'din_synthetic', 'runs': 1, 'runs_per_hour': s1},
              {'cell': 'din_synthetic', 'runs': 64, 'runs_per_hour': s64}]}}


SETTINGS = {'platform': 'gpu', 'seq_lens': (50, 100, 200), 'batches': (1024, 8192),
            'runs': (1, 64, 8), 'candidates': 1000}


def test_goal_verdicts():
  g = ac.evaluate_goals(_results(2500, 1000, 100, 3100, 1.5), SETTINGS)
  assert [g[k]['status'] for k in ac.GOALS] == ['pass', 'pass', 'pass']
  g = ac.evaluate_goals(_results(1500, 1000, 100, 2900, 2.5), SETTINGS)
  assert [g[k]['status'] for k in ac.GOALS] == ['fail', 'fail', 'fail']
  # The platform default decides which seqrec_jax variant is judged.
  g = ac.evaluate_goals(_results(2500, 1000, 100, 3100, 1.5, dense=True), SETTINGS)
  assert g['train_vs_torch_compile']['seqrec_jax_system'] == 'jax_dense'
  assert g['train_vs_torch_compile']['status'] == 'pass'
  # A missing cell fails the "every L" goal; nothing measured is n/a.
  res = _results(2500, 1000, 100, 3100, 1.5)
  res['train']['rows'] = [r for r in res['train']['rows'] if r['L'] != 200]
  assert ac.evaluate_goals(res, SETTINGS)['train_vs_torch_compile']['status'] == 'fail'
  assert {v['status'] for v in ac.evaluate_goals({}, SETTINGS).values()} == {'n/a'}


def test_parse_junit(tmp_path):
  p = tmp_path / 'j.xml'
  p.write_text('<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1">'
               '<testcase classname="tests.test_x" name="test_a"/>'
               '<testcase classname="tests.test_x" name="test_b"><failure message="boom&#10;'
               'more"/></testcase><testcase classname="tests.test_x" name="test_c">'
               '<skipped/></testcase></testsuite></testsuites>')
  r = ac.parse_junit(str(p))
  assert (r['tests'], r['passed'], r['failures'], r['skipped']) == (3, 1, 1, 1)
  assert r['failed'] == ['tests.test_x::test_b: boom']
  assert 'error' in ac.parse_junit(str(tmp_path / 'none.xml'))


def test_wheels_to_install_skips_what_is_present(tmp_path):
  for name in ('numpy-9.9-py3-none-any.whl', 'surely_not_installed_pkg-0.1-py3-none-any.whl'):
    (tmp_path / name).write_bytes(b'')
  need, have = ac.wheels_to_install(str(tmp_path))
  assert [os.path.basename(w) for w in need] == ['surely_not_installed_pkg-0.1-py3-none-any.whl']
  assert have == ['numpy']


def test_bad_arguments_are_errors():
  with pytest.raises(SystemExit):
    ac.main(['--platform=cpu', '--sections=train,bogus'])
  with pytest.raises(SystemExit):
    ac.main(['--platform=cpu', '--time_box=nosuch=5'])


def test_a_dying_worker_is_dropped_not_fatal():
  class Dead:
    system, seq_len, batch, calls = 'torch', 200, 8192, 0

    def call(self, **cmd):
      del cmd
      self.calls += 1
      raise RuntimeError('worker torch exited (code -9)')

  w, failed, errors = Dead(), set(), []
  assert ac._safe_call(w, failed, errors, op='train', steps=3) is None  # pylint: disable=protected-access
  assert ac._safe_call(w, failed, errors, op='serve') is None  # pylint: disable=protected-access
  assert w.calls == 1 and errors == ['torch L=200 batch=8192 train: worker torch exited (code -9)']
