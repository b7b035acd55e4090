"""The run axis sharded over a `runs` mesh axis (and combined with `data`) equals one device:
a group of 8 runs on 8 forced host devices (runs=8, and runs=4 x data=2) vs the same group on
1 device. Subprocesses (tests/multirun_devices.py): XLA_FLAGS must be set before jax starts."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _group(tmp_path, devices, runs, data):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT,
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  out = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'multirun_devices.py'),
                        f'--runs={runs}', f'--data={data}',
                        f'--workdir={tmp_path / f"d{devices}_r{runs}_x{data}"}'],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
                       check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.loads(out.stdout.strip().splitlines()[-1])
  assert res['devices'] == devices
  lead = 'runs' if runs > 1 else None
  assert {spec[0] for spec in res['specs']} == {lead}, res['specs']  # run axis on `runs`
  return res['runs']


@pytest.fixture(scope='module')
def one_device(tmp_path_factory):
  return _group(tmp_path_factory.mktemp('one'), 1, 1, 1)


@pytest.mark.parametrize('runs,data', [(8, 1), (4, 2)])
def test_group_on_8_devices_equals_1_device(one_device, tmp_path, runs, data):
  got = _group(tmp_path, 8, runs, data)
  assert len(got) == len(one_device) == 8
  for a, b in zip(got, one_device):
    # float32 reduction order differs across device layouts (Dice statistics and gradients
    # reduce over the data axis): ~1e-7 relative per step.
    np.testing.assert_allclose(a['loss'], b['loss'], rtol=1e-5)
    assert (a['best_step'], a['steps']) == (b['best_step'], b['steps'])
    for k in b:
      if k.startswith('eval/'):
        assert abs(a[k] - b[k]) <= 1e-4, (k, a[k], b[k])
