"""requirements.lock stays in step with pyproject.toml, and the running environment is the lock.

`bash launch.sh test` (CI) installs requirements.lock; these checks make a stale lock, a lower
bound that was never tested, or a hand-upgraded package in .venv a test failure. Relock with
`bash launch.sh lock`.
"""
import importlib.metadata
import importlib.util
import pathlib
import re
import tomllib

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parents[1]
LOCKED_EXTRAS = ('test', 'data')   # what `bash launch.sh lock` compiles


def _locked():
  """{name: (version, marker or None)} from requirements.lock's `name==version ; marker` lines."""
  out = {}
  for line in (ROOT / 'requirements.lock').read_text().splitlines():
    m = re.match(r'^([A-Za-z0-9._-]+)==([^\s;]+)\s*(?:;\s*(.+))?$', line)
    if m:
      out[canonicalize_name(m[1])] = (Version(m[2]), Marker(m[3]) if m[3] else None)
  return out


def _direct():
  project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
  reqs = list(project['dependencies'])
  for extra in LOCKED_EXTRAS:
    reqs += project['optional-dependencies'][extra]
  return [Requirement(r) for r in reqs]


def test_lock_satisfies_pyproject_and_lower_bounds_are_the_locked_versions():
  locked = _locked()
  assert len(locked) > 50, 'requirements.lock looks empty or unparsable'
  for req in _direct():
    name = canonicalize_name(req.name)
    assert name in locked, f'{req} (pyproject.toml) is not in requirements.lock: relock'
    version = locked[name][0]
    assert req.specifier.contains(version, prereleases=True), (
        f'requirements.lock has {name}=={version}, outside pyproject.toml\'s {req}: '
        'relock')
    lower = [s.version for s in req.specifier if s.operator in ('>=', '==')]
    assert lower, f'{req} (pyproject.toml) has no lower bound; use >={version}, the locked version'
    assert Version(lower[0]) == version, (
        f'pyproject.toml says {req} but the tests run with {name}=={version} (requirements.lock): '
        f'set the lower bound to {version}')


def test_running_environment_is_the_locked_set():
  mismatched = []
  for name, (version, marker) in _locked().items():
    if marker is not None and not marker.evaluate():
      continue
    try:
      have = Version(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
      mismatched.append(f'{name}: missing (lock {version})')
      continue
    if have != version:
      mismatched.append(f'{name}: {have} installed, lock {version}')
  assert not mismatched, ('environment differs from requirements.lock (install it with '
                          f'`bash launch.sh test`): {mismatched}')


def test_tensorflow_is_not_installed():
  # tfds takes other code paths when TensorFlow is importable; TF belongs only in .venv-tf.
  assert importlib.util.find_spec('tensorflow') is None
