"""metrics.jsonl + TensorBoard event files (seqrec_jax/metric_writers.py), read back with
TensorBoard's own event reader."""
import glob
import json
import os

import pytest
from tensorboard.backend.event_processing import event_accumulator

from seqrec_jax import train
from seqrec_jax.metric_writers import MetricsWriter, read_metrics


def _events(logdir):
  acc = event_accumulator.EventAccumulator(logdir, size_guidance={'scalars': 0, 'tensors': 0})
  acc.Reload()
  return acc


def _scalar(acc, tag):
  return [(e.step, e.value) for e in acc.Scalars(tag)]


def _same(got, want):
  """(step, value) lists equal up to float32 rounding (TensorBoard stores float32)."""
  return ([s for s, _ in got] == [s for s, _ in want]
          and [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6))


def test_tiny_run_writes_tensorboard_events_with_train_loss_eval_auc_and_hparams(
    tiny_config, tmp_path):
  summary = train.train_and_evaluate(tiny_config, str(tmp_path))
  assert glob.glob(str(tmp_path / 'events.out.tfevents.*'))
  acc = _events(str(tmp_path))
  tags = acc.Tags()
  assert {'train/loss', 'eval/valid/auc', 'examples_per_sec',
          'summary/eval/test/auc'} <= set(tags['scalars'])
  records = read_metrics(str(tmp_path / 'metrics.jsonl'))
  losses = [(r['step'], r['train/loss']) for r in records if 'train/loss' in r]
  assert _same(_scalar(acc, 'train/loss'), losses)
  aucs = [(r['step'], r['eval/valid/auc']) for r in records if 'eval/valid/auc' in r]
  assert [s for s, _ in aucs] == [2, 4] and _same(_scalar(acc, 'eval/valid/auc'), aucs)
  assert _scalar(acc, 'summary/eval/test/auc')[0][1] == pytest.approx(summary['eval/test/auc'],
                                                                  rel=1e-6)
  # Hyper-parameters: once, the flattened config (TensorBoard's HParams plugin format).
  assert len(acc.Tensors('_hparams_/session_start_info')) == 1
  info = acc.SummaryMetadata('_hparams_/session_start_info').plugin_data
  assert info.plugin_name == 'hparams' and b'model.name' in info.content
  # The JSON lines keep their keys.
  assert set(records[0]) >= {'step', 'train/loss', 'examples_per_sec'}
  assert 'summary' in records[-1]


def test_resume_drops_later_events_and_writes_hparams_once(tiny_config, tmp_path):
  tiny_config.train.num_steps = 2
  train.train_and_evaluate(tiny_config, str(tmp_path))
  tiny_config.train.num_steps = 4
  train.train_and_evaluate(tiny_config, str(tmp_path))
  assert len(glob.glob(str(tmp_path / 'events.out.tfevents.*'))) == 2
  acc = _events(str(tmp_path))
  assert [s for s, _ in _scalar(acc, 'train/loss')] == [1, 2, 3, 4]
  assert [s for s, _ in _scalar(acc, 'eval/valid/auc')] == [2, 4]
  assert len(acc.Tensors('_hparams_/session_start_info')) == 1


def test_runs_get_their_own_tensorboard_directory_and_keep_the_run_field(tmp_path):
  w = MetricsWriter(str(tmp_path), 0, hparams={'seed': 0, 'model': {'name': 'din'}})
  for run in (0, 1):
    w.write({'step': 1, 'run': run, 'train/loss': 0.5 + run})
    w.write({'step': 2, 'run': run, 'eval/valid/auc': 0.6 + run / 10})
  w.close()
  records = read_metrics(str(tmp_path / 'metrics.jsonl'))
  assert [r['run'] for r in records] == [0, 0, 1, 1]
  assert not glob.glob(str(tmp_path / 'events.out.tfevents.*'))
  for run in (0, 1):
    acc = _events(str(tmp_path / 'runs' / str(run)))
    assert _same(_scalar(acc, 'train/loss'), [(1, 0.5 + run)])
    assert _same(_scalar(acc, 'eval/valid/auc'), [(2, 0.6 + run / 10)])
    assert b'run' in acc.SummaryMetadata('_hparams_/session_start_info').plugin_data.content


def test_torn_last_line_is_dropped_with_a_warning_on_resume(tmp_path, caplog):
  path = tmp_path / 'metrics.jsonl'
  good = [{'step': 1, 'train/loss': 0.7}, {'step': 2, 'train/loss': 0.6}]
  path.write_text(''.join(json.dumps(r) + '\n' for r in good) + '{"step": 3, "train/lo')
  MetricsWriter(str(tmp_path), resume_step=2)
  assert read_metrics(str(path)) == good
  assert path.read_text().endswith('\n')
  assert any('torn last line' in r.getMessage() for r in caplog.records)


def test_unparsable_line_before_the_end_is_an_error_naming_file_and_line(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 1}\n{"step": 2, oops\n{"step": 3}\n')
  with pytest.raises(ValueError, match=r'metrics.jsonl:2: not a JSON record'):
    MetricsWriter(str(tmp_path), resume_step=3)


def test_resume_after_a_crash_mid_write_of_metrics(tiny_config, tmp_path):
  tiny_config.train.num_steps = 2
  train.train_and_evaluate(tiny_config, str(tmp_path))
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 3, "train/loss": 0.69')          # killed mid-write at step 3
  tiny_config.train.num_steps = 4
  summary = train.train_and_evaluate(tiny_config, str(tmp_path))
  records = read_metrics(str(tmp_path / 'metrics.jsonl'))
  assert [r['step'] for r in records if 'train/loss' in r] == [1, 2, 3, 4]
  assert records[-1]['summary']['steps'] == summary['steps'] == 4
  assert os.path.getsize(tmp_path / 'metrics.jsonl') > 0
