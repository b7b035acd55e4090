"""Config strictness and bad-input errors: all fail before any training step, with the
field, the value and where it came from."""
import os
import subprocess
import sys

import numpy as np
import pytest

from seqrec_jax.configs import load_config
from seqrec_jax.data.features import DataError, validate_arrays

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*flags):
  return subprocess.run([sys.executable, '-m', 'seqrec_jax.main', *flags], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_misspelled_flag_override_is_an_error(tmp_path):
  r = _main('--config=seqrec_jax/configs/test.py', f'--workdir={tmp_path}',
            '--config.model.activatoin=dice')
  assert r.returncode != 0
  assert 'activatoin' in r.stderr
  assert not os.path.exists(tmp_path / 'checkpoints')


# --help and a CLI override reaching a run (was test_help_and_flag_override_reaches_the_config,
# two subprocesses, ~28 s): test_reliability_cli.py::test_help_lists_config_keys_with_defaults_
# and_meaning_and_exits_0 runs --help; test_train.py::test_sigkill_mid_training_then_rerun_
# reaches_same_metrics trains through seqrec_jax.main with --config.train.num_steps=60 and
# checks the run took 60 steps.


def test_load_config_unknown_key_names_it():
  with pytest.raises(KeyError, match="config key 'train.num_stpes' does not exist"):
    load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py'), {'train.num_stpes': 3})


def test_unknown_model_fails_before_training(tiny_config, tmp_path):
  from seqrec_jax import train
  tiny_config.model.name = 'nope'
  with pytest.raises(ValueError, match="unknown model 'nope'"):
    train.train_and_evaluate(tiny_config, str(tmp_path))
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_unknown_dataset_and_activation(tiny_config, tmp_path):
  from seqrec_jax import train
  tiny_config.data.name = 'movielenz'
  with pytest.raises(ValueError, match="unknown dataset 'movielenz' \\(config.data.name\\)"):
    train.train_and_evaluate(tiny_config, str(tmp_path))


def _arrays(ds):
  return {k: v.copy() for k, v in ds.splits['train'].arrays.items()}


def test_out_of_range_item_id_names_field_value_row(tiny_dataset):
  a = _arrays(tiny_dataset)
  a['hist_items'][5, 3] = tiny_dataset.spec.num_items
  with pytest.raises(DataError, match=rf"src: field 'hist_items' has id "
                     rf"{tiny_dataset.spec.num_items} at row 5 position 3, outside"):
    validate_arrays(a, tiny_dataset.spec, 'src')


def test_negative_id(tiny_dataset):
  a = _arrays(tiny_dataset)
  a['target_cate'][7] = -1
  with pytest.raises(DataError, match="field 'target_cate' has id -1 at row 7"):
    validate_arrays(a, tiny_dataset.spec, 'src')


def test_nan_dense_feature(tiny_dataset):
  from seqrec_jax.data.features import DataSpec
  spec = DataSpec(**{**tiny_dataset.spec.__dict__, 'dense_dim': 2})
  a = _arrays(tiny_dataset)
  a['dense'] = np.zeros((len(a['label']), 2), np.float32)
  a['dense'][11, 1] = np.nan
  with pytest.raises(DataError, match="field 'dense' has non-finite value nan at row 11 column 1"):
    validate_arrays(a, spec, 'src')


def test_empty_history_policy(tiny_dataset):
  a = _arrays(tiny_dataset)
  a['hist_mask'][4] = False
  validate_arrays(a, tiny_dataset.spec, 'src')               # allowed by default
  with pytest.raises(DataError, match='row 4 has an empty history'):
    validate_arrays(a, tiny_dataset.spec, 'src', allow_empty_history=False)


def test_bad_label_and_mask_dtype(tiny_dataset):
  a = _arrays(tiny_dataset)
  a['label'][2] = 3.0
  with pytest.raises(DataError, match="task 'click' has label 3.0 at row 2"):
    validate_arrays(a, tiny_dataset.spec, 'src')
  a = _arrays(tiny_dataset)
  a['hist_mask'] = a['hist_mask'].astype(np.int32)
  with pytest.raises(DataError, match='hist_mask must be bool'):
    validate_arrays(a, tiny_dataset.spec, 'src')


def test_training_rejects_bad_ids_before_any_step(tiny_config, tmp_path, monkeypatch):
  from seqrec_jax import train
  from seqrec_jax.data import synthetic
  ds = synthetic.load(tiny_config.data.synthetic)   # a Dataset value: nothing registered
  ds.name = tiny_config.data.name = '_bad_ids'
  ds.splits['valid'].arrays['target_item'][3] = 10 ** 6
  with pytest.raises(DataError,
                     match="/valid: field 'target_item' has id 1000000 at row 3, outside"):
    train.train_and_evaluate(tiny_config, str(tmp_path), ds)
  assert not os.path.exists(tmp_path / 'checkpoints')
