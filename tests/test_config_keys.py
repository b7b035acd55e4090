"""The one table of config keys (configs/keys.py, configs/default.py: KEYS): every key has a
help text and a check, option lists come from their owners, errors name key, value and the
allowed values, and a workdir recorded before a key existed still resumes at its default
(config.json: tests/fixtures/legacy_single_run's without the keys added since)."""
import json
import os

import pytest

from seqrec_jax import checkpoint, configs, state, workdir
from seqrec_jax.configs import default, help as config_help, keys, load_config, validate
from seqrec_jax.layers import attention

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEGACY = os.path.join(ROOT, 'tests', 'fixtures', 'legacy_single_run')


def test_every_key_has_help_a_check_and_a_valid_default():
  flat = keys.flatten(default.get_config())
  assert sorted(flat) == sorted(default.BY_PATH) and len(default.BY_PATH) == len(default.KEYS)
  for k in default.KEYS:
    assert len(k.help) > 5, k.path
    assert k.check(k.default, k.path) is None, k.path
    why = k.check(object(), k.path)                       # no key accepts anything
    assert why and ('must be' in why or 'unknown' in why), (k.path, why)
  with pytest.raises(ValueError, match="'seed' is declared twice"):
    keys.build(default.KEYS[:1] * 2)


def test_help_lists_every_key_with_its_help_rule_and_changed_default():
  text = config_help.describe(load_config('test.py'), 'test.py')
  lines = text.splitlines()
  for k in default.KEYS:
    line = next(x for x in lines if x.startswith(f'  {k.path} = '))
    assert k.help in line and f'[{k.check.rule()}]' in line, line
  line = next(x for x in lines if x.startswith('  train.num_steps = 4 '))
  assert '(default -1)' in line and 'overrides num_epochs' in line
  assert '[data.movielens]' in lines and 'newest behaviours' in text


@pytest.mark.parametrize('key,value,allowed', [
    ('optim.name', 'adamm', f'must be one of {sorted(state.OPTIMIZERS)}'),
    ('model.attention.normalizer', 'softmx', f'must be one of {sorted(attention.NORMALIZERS)}'),
    ('data.movielens.genre', 'middle', "must be one of ['first', 'last']"),
    ('model.hidden', (64, 0), 'must be a tuple of integers >= 1'),
    ('data.device_memory_fraction', 0.0, 'must be in (0, 1]'),
    ('model.attention.name', 'dott', "unknown attention unit 'dott' "
     '(config.model.attention.name); registered: ['),
])
def test_a_wrong_value_names_key_value_and_allowed_values(key, value, allowed):
  cfg = load_config('test.py', {key: value})
  with pytest.raises(validate.ConfigError) as e:
    validate.validate_config(cfg)
  assert f'config.{key}={value!r}: {allowed}' in str(e.value)


def test_option_lists_are_read_from_their_owners(monkeypatch):
  check = default.BY_PATH['optim.name'].check
  assert check('lion') == f'must be one of {sorted(state.OPTIMIZERS)}'
  monkeypatch.setattr(state, 'OPTIMIZERS', state.OPTIMIZERS + ('lion',))
  assert check('lion') is None


def _recorded_before(*added):
  """tests/fixtures/legacy_single_run's config.json without the keys `added` ('block.key'):
  the config.json of a workdir recorded before they existed."""
  d = json.load(open(os.path.join(LEGACY, 'config.json')))
  for key in added:
    *parents, leaf = key.split('.')
    node = d
    for p in parents:
      node = node[p]
    node.pop(leaf, None)        # the fixture (written at 61ba59b) predates them already
  return d


ADDED = ('train.task', 'model.input_bn', 'data.video.watch_head')


def test_a_workdir_recorded_before_a_key_existed_resumes_at_its_default(tmp_path):
  """A config.json without keys added since: a resume with them at their defaults is allowed,
  any other value refused, naming the key and its default."""
  wd = tmp_path / 'wd'
  os.makedirs(wd / 'checkpoints' / '2')                  # a checkpoint to resume from
  with open(wd / 'config.json', 'w') as f:
    json.dump(_recorded_before(*ADDED), f)
  cfg = load_config('test.py', {'model.name': 'base', 'model.activation': 'dice',
                                'data.pack_history': False, 'train.keep_checkpoints': 1})
  cfg.train.num_steps = cfg.train.eval_every = cfg.train.checkpoint_every = 2
  workdir.check_config(str(wd), cfg, write=False)
  cfg.train.task = 'two_tower'
  with pytest.raises(workdir.ConfigChangedError, match=r"train.task: 'ranking' -> 'two_tower'"):
    workdir.check_config(str(wd), cfg, write=False)


def test_a_recorded_config_reads_back_over_the_defaults():
  """configs.recorded (checkpoint.load_best's reading of config.json): the recorded values,
  keys added since at their defaults, tuples as tuples."""
  d = _recorded_before(*ADDED)
  cfg = configs.recorded(d)
  flat, want = keys.flatten(cfg), keys.flatten(d)
  assert all(flat[k] == (tuple(v) if isinstance(v, list) else v) for k, v in want.items())
  assert (cfg.train.task, cfg.model.input_bn, cfg.data.video.watch_head) == (
      'ranking', False, 'soft_label')
  assert cfg.model.hidden == (16, 8)
  best = checkpoint.load_best(LEGACY)
  assert best.model_config.name == 'base' and best.config.train.task == 'ranking'
