"""experiments/din_table.py without training: cells, configs, RelaImpr, tables, docs results."""
from __future__ import annotations

import os

import pytest

from experiments import din_table, publish, report, sweep
from seqrec_jax.configs import load_config


@pytest.mark.parametrize('dataset', ['synthetic', 'movielens'])
@pytest.mark.parametrize('full', [False, True])
def test_every_cell_is_a_valid_config(dataset, full):
  cells = din_table.make_cells(dataset, 2, full)
  assert [c.group['model'] for c in cells[::2]] == [r[1] for r in din_table.ROWS]
  assert len({c.id for c in cells}) == len(cells)
  for c in cells:
    cfg = load_config(f'seqrec_jax/configs/din.py:{dataset}', dict(c.overrides, seed=c.seed))
    assert cfg.train.select_metric == 'gauc'
  dice = [c for c in cells if c.group['model'] == 'DIN with Dice'][0]
  assert (dice.overrides['model.name'], dice.overrides['model.activation']) == ('din', 'dice')


@pytest.mark.parametrize('dataset', ['synthetic', 'movielens'])
def test_paper_protocol_cells(dataset):
  adam = din_table.make_cells(dataset, 1, False, ['din'])[0]
  paper = din_table.make_cells(dataset, 1, False, ['din'], protocol='paper')[0]
  cfg = load_config(f'seqrec_jax/configs/din.py:{dataset}', dict(paper.overrides, seed=0))
  assert (cfg.optim.name, cfg.optim.learning_rate, cfg.optim.schedule, cfg.data.batch_size,
          cfg.optim.decay_rate, cfg.optim.clip_norm) == ('sgd', 1.0, 'exponential', 32, 0.1, 5.0)
  assert cfg.train.eval_every == 8 * adam.overrides['train.eval_every']   # same evals per epoch
  assert paper.id != adam.id and cfg.train.save_predictions


def test_user_overrides_win_and_unknown_rows_fail():
  extra = din_table.cell_overrides('movielens', [
      'model.pooling=mean', 'data.movielens.path=/x/ml-20m.zip', 'model.hidden=(64, 32)',
      'train.eval_every=5000', 'data.synthetic.num_users=7'])   # another dataset's: dropped
  assert extra == {'model.pooling': 'mean', 'data.movielens.path': '/x/ml-20m.zip',
                   'model.hidden': (64, 32), 'train.eval_every': 5000}
  cells = din_table.make_cells('movielens', 1, False, ['base'], extra)
  assert len(cells) == 1 and cells[0].overrides['model.pooling'] == 'mean'
  with pytest.raises(ValueError, match='unknown rows'):
    din_table.make_cells('movielens', 1, False, ['dcn'])
  from absl import app
  with pytest.raises(app.UsageError, match='key=value'):
    din_table.cell_overrides('movielens', ['model.pooling'])
  with pytest.raises(app.UsageError, match='train.eval_every is of type int'):
    din_table.cell_overrides('movielens', ['train.eval_every=often'])


def test_dataset_and_override_reach_every_cell_config_and_command(tmp_path):
  from absl import app
  extra = din_table.cell_overrides('movielens', ['data.movielens.path=/data/ml-20m.zip',
                                                 'train.eval_every=5000'])
  cells = din_table.make_cells('movielens', 2, False, ['base', 'din'], extra)
  plain = din_table.make_cells('movielens', 2, False, ['base', 'din'])
  assert not {c.id for c in cells} & {c.id for c in plain}   # another source: other cells
  for c in cells:
    cfg = load_config('seqrec_jax/configs/din.py:movielens', dict(c.overrides, seed=c.seed))
    assert (cfg.data.movielens.path, cfg.train.eval_every) == ('/data/ml-20m.zip', 5000)
    assert '--config.data.movielens.path=/data/ml-20m.zip' in sweep.command(
        'seqrec_jax/configs/din.py:movielens', c.overrides, str(tmp_path))
  with pytest.raises(app.UsageError, match='Datasets that fit: movielens'):
    din_table.cell_overrides('criteo', [])


def _fake_train(cfg, workdir):
  del workdir
  gauc = {'lr': 0.55, 'base': 0.60, 'wide_deep': 0.61, 'pnn': 0.62, 'deepfm': 0.62,
          'din': 0.63}[cfg.model.name] + (0.01 if cfg.model.activation == 'dice'
                                          and cfg.model.name == 'din' else 0.0)
  gauc += 0.001 * cfg.seed
  return {'eval/test/gauc': gauc, 'eval/test/auc': gauc + 0.02, 'eval/test/logloss': 0.6,
          'eval/valid/gauc': gauc, 'best_step': 10, 'params': 100, 'examples_per_sec': 1.0}


def test_tables_rela_impr_and_resume(tmp_path):
  out = str(tmp_path / 'synthetic')
  cells = din_table.make_cells('synthetic', 3, False)
  records = sweep.run_sweep('seqrec_jax/configs/din.py:synthetic', cells, out,
                            train_fn=_fake_train, log=lambda *_: None)
  din_table.add_rela_impr(records)
  rows = din_table.rows_of(report.cell_rows(records, din_table.STUDY.metrics))
  by = {r['model']: r for r in rows}
  # Per seed: ((0.63 + s/1000 - 0.5) / (0.60 + s/1000 - 0.5) - 1) * 100, s = 0, 1, 2.
  want = [((0.63 + s / 1000 - 0.5) / (0.60 + s / 1000 - 0.5) - 1) * 100 for s in range(3)]
  assert by['DIN']['rela_impr'] == pytest.approx(sum(want) / 3)
  assert by['BaseModel']['rela_impr'] == 0.0
  text = din_table.dataset_table(rows, 'synthetic', {}, out)
  assert 'DIN with Dice' in text and os.path.exists(os.path.join(out, 'table.csv'))
  combined = din_table.combined_table({'synthetic': rows}, str(tmp_path))
  assert '0.8871' in combined and '+6.82 %' in combined      # paper's DIN+Dice on Amazon
  din_table.plot_rela_impr({'synthetic': rows}, str(tmp_path / 'p.png'))
  assert os.path.getsize(tmp_path / 'p.png') > 0

  def fail(cfg, workdir):
    raise AssertionError('a finished cell was trained again')
  again = sweep.run_sweep('seqrec_jax/configs/din.py:synthetic', cells, out, train_fn=fail,
                          log=lambda *_: None)
  assert [r['id'] for r in again] == [r['id'] for r in records]


def test_default_run_results_reach_the_docs_page(tmp_path):
  out, docs = tmp_path / 'runs', tmp_path / 'docs'
  names = din_table.result_files(['movielens', 'synthetic'])
  assert 'report.md' in names and 'synthetic/gauc.png' in names
  for name in names:
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(f'{name}\n')
  docs.mkdir()
  inc = 'results/din_table/report.md'
  (docs / 'din_table.md').write_text(f'a\n<!-- include:{inc} -->\nold\n<!-- /include:{inc} -->\n')
  publish.publish(str(out), 'din_table', names, docs=str(docs))
  assert (docs / 'results/din_table/movielens/commands.md').read_text() == 'movielens/commands.md\n'
  assert (docs / 'din_table.md').read_text() == (
      f'a\n<!-- include:{inc} -->\nreport.md\n<!-- /include:{inc} -->\n')
