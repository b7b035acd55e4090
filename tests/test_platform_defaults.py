"""Per-platform speed defaults (seqrec_jax/platform_defaults.py): keys left at None are filled
from the platform's table at the entry point; explicit values win."""
from __future__ import annotations

import pytest

from seqrec_jax import platform_defaults, train
from seqrec_jax.configs import load_config

KEYS = ('data.pack_history', 'data.pack_buckets', 'data.pack_max_fill', 'train.run_chunk')


def _data(cfg):
  return {k: cfg[k.split('.')[0]][k.split('.')[1]] for k in KEYS}


def test_default_config_leaves_packing_to_the_platform():
  assert _data(load_config('din.py:synthetic')) == dict.fromkeys(KEYS)


@pytest.mark.parametrize('platform', platform_defaults.PLATFORMS)
def test_resolve_fills_the_platform_table_without_touching_the_input(platform):
  cfg = load_config('din.py:synthetic')
  out = platform_defaults.resolve(cfg, platform)
  assert _data(out) == platform_defaults.DEFAULTS[platform]
  assert _data(cfg) == dict.fromkeys(KEYS)          # a copy: the caller's config is unchanged
  assert out.is_locked                              # still no new keys


def test_cpu_and_gpu_values_are_the_measured_ones_and_tpu_is_marked_unmeasured():
  packed = {'data.pack_history': True, 'data.pack_buckets': 32, 'data.pack_max_fill': 0.8}
  # run_chunk: CPU a lax.map over the runs, accelerators one vmap (docs/multirun.md "Speed")
  assert platform_defaults.DEFAULTS['cpu'] == {**packed, 'train.run_chunk': 1}
  assert platform_defaults.DEFAULTS['gpu'] == {**packed, 'train.run_chunk': 0}  # H100
  assert platform_defaults.DEFAULTS['tpu'] == {**packed, 'data.pack_history': False,
                                               'train.run_chunk': 0}
  assert platform_defaults.MEASURED == {'cpu': True, 'gpu': True, 'tpu': False}
  assert platform_defaults.table()['tpu']['measured'] is False


def test_explicit_values_win_over_the_platform():
  cfg = load_config('din.py:synthetic', {'data.pack_history': False, 'data.pack_max_fill': 1})
  out = platform_defaults.resolve(cfg, 'cpu')
  assert (out.data.pack_history, out.data.pack_buckets, out.data.pack_max_fill) == (
      False, 32, 1.0)
  out = platform_defaults.resolve(load_config('din.py:synthetic', {'data.pack_history': True}),
                                  'tpu')
  assert out.data.pack_history is True


def test_typed_auto_keys_reject_wrong_types():
  cfg = load_config('din.py:synthetic')
  with pytest.raises(TypeError):
    cfg.data.pack_buckets = 'auto'


def test_unknown_platform_is_an_error_naming_the_choices():
  with pytest.raises(ValueError, match=r"platform 'metal'.*'cpu', 'gpu', 'tpu'"):
    platform_defaults.resolve(load_config('din.py:synthetic'), 'metal')


def test_current_platform_here():
  assert platform_defaults.current_platform() in platform_defaults.PLATFORMS


@pytest.mark.parametrize('platform,packed', [('cpu', True), ('gpu', True), ('tpu', False)])
def test_train_and_evaluate_resolves_before_reading_data(monkeypatch, tmp_path, platform,
                                                         packed):
  seen = {}

  class Stop(Exception):
    pass

  def fake_load(data_cfg, *args, **kwargs):
    del args, kwargs
    seen.update({k.split('.')[1]: data_cfg[k.split('.')[1]] for k in KEYS if k[:5] == 'data.'})
    raise Stop

  monkeypatch.setattr(platform_defaults, 'current_platform', lambda: platform)
  monkeypatch.setattr(train.data_lib, 'dataset_for', fake_load)
  with pytest.raises(Stop):
    train.train_and_evaluate(load_config('din.py:synthetic'), str(tmp_path))
  assert seen['pack_history'] is packed and seen['pack_buckets'] == 32
