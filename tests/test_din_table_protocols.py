"""experiments/din_table.py: the paper protocol's overrides and lr candidates, diverged runs
reported as diverged (single cells and multi-run groups), the default seed count."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from experiments import din_table, report, study
from seqrec_jax import multirun
from seqrec_jax.configs import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = 'seqrec_jax/configs/din.py:synthetic'


def test_default_is_five_seeds_and_both_protocols():
  out = subprocess.run([sys.executable, '-m', 'experiments.din_table', '--helpshort'],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
  text = ' '.join(out.stdout.split())
  assert "--seeds: Seeds per model. (default: '5'" in text, out.stdout[-2000:]
  assert "(default: 'both')" in text and din_table.SEEDS == 5


def test_paper_overrides_and_lr_candidates():
  cells = din_table.make_cells('movielens', 2, False, ['base', 'din'], protocol='paper')
  labels = [c.group['model'] for c in cells]
  assert labels == (['BaseModel'] * 2 + ['BaseModel lr=0.3'] * 2 + ['BaseModel lr=0.1'] * 2
                    + [din_table.NO_BN] * 2 + ['DIN'] * 2)
  for c in cells:
    cfg = load_config('seqrec_jax/configs/din.py:movielens', dict(c.overrides, seed=c.seed))
    lr = float(c.group['model'].split('=')[1]) if '=' in c.group['model'] else 1.0
    assert (cfg.optim.name, cfg.optim.learning_rate, cfg.optim.schedule, cfg.optim.decay_rate,
            cfg.data.batch_size, cfg.optim.clip_norm, cfg.train.num_epochs) == (
                'sgd', lr, 'exponential', 0.1, 32, 5.0, din_table.PAPER_EPOCHS)
  adam = din_table.make_cells('movielens', 2, False, ['base'])
  assert [c.group['model'] for c in adam] == ['BaseModel'] * 2      # no candidates
  assert adam[0].overrides['optim.name'] == 'adam' and adam[0].overrides['train.num_epochs'] == 3
  # The extension's cells: the new candidates only (no literal rows, no NO_BN).
  more = din_table.make_cells('movielens', 2, False, ['base'], protocol='paper',
                              base_lrs=[0.01], literal=False)
  assert [c.group['model'] for c in more] == ['BaseModel lr=0.01'] * 2
  assert din_table.RUNS_PER_GROUP == {'adam': 1, 'paper': 30}
  with pytest.raises(ValueError, match="protocol='sgd'"):
    din_table.size_overrides('movielens', False, 'sgd')


@pytest.mark.parametrize('dataset', ['synthetic', 'movielens'])
def test_paper_protocol_has_the_input_batch_norm(dataset):
  """Paper: every row with an MLP normalises its input (the released DIN code), NO_BN and LR
  (no MLP) do not; the adam protocol's cells are as before (no input_bn key: same ids)."""
  spec = f'seqrec_jax/configs/din.py:{dataset}'
  paper = din_table.make_cells(dataset, 1, False, protocol='paper')
  want = {'LR': False, din_table.NO_BN: False}
  for c in paper:
    cfg = load_config(spec, dict(c.overrides, seed=c.seed))
    assert cfg.model.input_bn is want.get(c.group['model'], True), c.group
  assert {c.group['model'] for c in paper} >= {'BaseModel', 'DIN with Dice', din_table.NO_BN}
  for c in din_table.make_cells(dataset, 1, False):
    assert 'model.input_bn' not in c.overrides
    assert not load_config(spec, dict(c.overrides, seed=c.seed)).model.input_bn


def _summary(cfg):
  gauc = {'lr': 0.55, 'base': 0.60, 'din': 0.63}[cfg.model.name] + 0.001 * cfg.seed
  gauc += 0.02 * (cfg.optim.learning_rate == 0.3)     # lr 0.3 is best on valid
  return {'eval/test/gauc': gauc, 'eval/test/auc': gauc, 'eval/test/logloss': 0.6,
          'eval/valid/gauc': gauc, 'best_step': 10, 'params': 100, 'examples_per_sec': 1.0}


def _fake_train(bad):
  """A train_fn like train_and_evaluate: a (model, seed, lr) in `bad` diverges. A group
  reports it in that run's summary (diverged, diverged_step) and trains the others on; a
  single run, or a group whose every run diverged, raises the engine's FloatingPointError."""
  calls = []

  def fn(cfg, workdir):
    del workdir
    runs = multirun.group_runs(cfg) if multirun.is_group(cfg) else None
    calls.append(len(runs) if runs else 1)
    is_bad = [(cfg.model.name, r.seed, r.hparams.get('optim.learning_rate',
                                                     cfg.optim.learning_rate)) in bad
              for r in runs or [multirun.Run(0, cfg.seed, {})]]
    if all(is_bad):
      raise FloatingPointError('non-finite training loss nan at step 7; the last finite '
                               'step is 6, no checkpoint was written yet (x)')
    if runs is None:
      return _summary(cfg)
    return {'runs': [dict(_summary(multirun.run_config(cfg, r)), seed=r.seed, hparams=r.hparams,
                          **({'diverged': True, 'diverged_step': 7} if b else {}))
                     for r, b in zip(runs, is_bad)]}
  return fn, calls


@pytest.mark.parametrize('rpg', [1, 30])
def test_diverged_runs_are_reported_not_averaged(tmp_path, rpg):
  out = str(tmp_path / 'synthetic')
  cells = din_table.make_cells('synthetic', 3, False, ['lr', 'base', 'din', 'din_dice'],
                               protocol='paper')
  lr_row = {('lr', s, 1.0) for s in range(3)}       # every run of the LR row diverges
  fn, calls = _fake_train({('base', 1, 0.1), ('base', 2, 1.0)} | lr_row)
  logs = []
  records = din_table.run_cells(SPEC, cells, out, rpg, train_fn=fn, log=logs.append)
  assert [r['id'] for r in records] == [c.id for c in cells]
  div = {(r['group']['model'], r['seed']) for r in records if din_table.is_diverged(r)}
  assert div == {('BaseModel lr=0.1', 1), ('BaseModel', 2), (din_table.NO_BN, 2)} | {
      ('LR', s) for s in range(3)}             # NO_BN is BaseModel at lr 1.0 too
  # Every cell trains once: a diverged run never stops the others (no retries).
  assert sum(calls) == len(cells) and (rpg == 1 or 9 in calls)
  records = din_table.extend_base_lr(SPEC, 'synthetic', 3, out, rpg, records, train_fn=fn,
                                     log=logs.append)     # lr 0.3 is inside the grid: no runs
  assert sum(calls) == len(cells)
  study.study_main(din_table.STUDY, records, out, 'synthetic')
  text = ''.join(open(os.path.join(out, n)).read() for n in ('table.md', 'resolved.md'))
  rows = din_table.rows_of(report.read_csv(os.path.join(out, 'cells.csv')))
  by = {r['model']: r for r in rows}
  assert (by['BaseModel']['n_seeds'], by['BaseModel']['n_diverged']) == (2, 1)
  assert by['BaseModel']['eval/test/gauc'] == pytest.approx(0.6005)     # seeds 0 and 1 only
  assert '| BaseModel | 2 (+1 diverged) |' in text and 'Diverged runs' in text
  assert '| LR | 0 (+3 diverged) |' in text
  # lr 0.1 had a diverged seed, so it is no candidate; lr 0.3 is best on valid.
  assert '| BaseModel (lr on valid) | 3 |' in text and 'lr 0.3.' in text
  assert by['BaseModel (lr on valid)']['eval/test/gauc'] == pytest.approx(0.621)
  # DIN vs BaseModel pairs only the two seeds BaseModel finished.
  assert '| DIN | BaseModel | test GAUC | 2 |' in text
  assert '| DIN | BaseModel lr=0.3 | test GAUC | 3 |' in text
  assert text.count('| BaseModel | BaseModel lr=0.3 | test GAUC |') == 1
  assert '| DIN with Dice | DIN | test GAUC | 3 |' in text
  combined = din_table.combined_table({'synthetic': rows}, str(tmp_path))
  assert '(1 of 3 diverged)' in combined and 'BaseModel (lr on valid)' in combined
  # A rerun trains nothing: finished and diverged cells are both skipped.
  fn2, calls2 = _fake_train(set())
  again = din_table.run_cells(SPEC, cells, out, rpg, train_fn=fn2, log=logs.append)
  assert calls2 == [] and [din_table.is_diverged(r) for r in again] == [
      din_table.is_diverged(r) for r in records]


def test_no_lr_variant_without_candidates():
  cells = [{'id': f'b{s}', 'seed': s, 'model': 'BaseModel', 'diverged': False,
            'eval/valid/gauc': 0.6} for s in range(2)]
  assert din_table.select_base_lr(cells) == (None, None, '')


def _base_lr_selection(tmp_path, monkeypatch, valid, bad=()):
  """The paper protocol's BaseModel cells and their lr extension with valid GAUC valid(lr)
  (fake runs; a (model, seed, lr) in bad diverges): (records, cells.csv rows, runs trained)."""
  out = str(tmp_path / 'synthetic')
  cells = din_table.make_cells('synthetic', 2, False, ['base'], protocol='paper')
  fn, calls = _fake_train(set(bad))
  plain = _summary
  monkeypatch.setattr(sys.modules[__name__], '_summary', lambda cfg: dict(
      plain(cfg), **{'eval/valid/gauc': valid(cfg.optim.learning_rate)}))
  records = din_table.run_cells(SPEC, cells, out, 30, train_fn=fn, log=lambda *_: None)
  records = din_table.extend_base_lr(SPEC, 'synthetic', 2, out, 30, records, train_fn=fn,
                                     log=lambda *_: None)
  return records, report.cell_rows(records, din_table.STUDY.metrics), calls


def _labels(records):
  return sorted({r['group']['model'] for r in records})


def test_base_lr_on_the_low_edge_extends_up_to_the_cap(tmp_path, monkeypatch):
  records, cells, calls = _base_lr_selection(tmp_path, monkeypatch, lambda lr: -lr)
  assert din_table.LR_EXTENSIONS == 3
  assert _labels(records) == ['BaseModel', 'BaseModel lr=0.0037037', 'BaseModel lr=0.0111111',
                              'BaseModel lr=0.0333333', 'BaseModel lr=0.1', 'BaseModel lr=0.3',
                              din_table.NO_BN]
  assert sum(calls) == 2 * 7          # 3 lrs + NO_BN, then one new lr per round, 2 seeds each
  lr, cand, edge = din_table.select_base_lr(cells)
  assert (lr, cand, edge) == (pytest.approx(0.1 / 27, rel=1e-5), 'BaseModel lr=0.0037037',
                              'low')
  rows = din_table.rows_of(cells)
  assert '(lr 0.0037037, at the low edge)' in din_table.combined_table(
      {'synthetic': rows}, str(tmp_path))


def test_base_lr_extension_stops_when_the_choice_is_interior(tmp_path, monkeypatch):
  """Best at 0.0333 (one step below the grid): one extension finds it on the edge, the second
  (0.0111) scores lower, so it is interior and the grid grows no further."""
  import math
  records, cells, _ = _base_lr_selection(tmp_path, monkeypatch,
                                         lambda lr: -abs(math.log(lr / (0.1 / 3))))
  assert _labels(records) == ['BaseModel', 'BaseModel lr=0.0111111', 'BaseModel lr=0.0333333',
                              'BaseModel lr=0.1', 'BaseModel lr=0.3', din_table.NO_BN]
  assert din_table.select_base_lr(cells) == (pytest.approx(0.1 / 3, rel=1e-5),
                                             'BaseModel lr=0.0333333', '')
  rows = din_table.rows_of(cells)
  assert '(lr 0.0333333)' in din_table.combined_table({'synthetic': rows}, str(tmp_path))
  # High edge: lr 1.0 best extends to 3.33; that diverges, so 1.0 is interior.
  records, cells, _ = _base_lr_selection(tmp_path / 'high', monkeypatch, lambda lr: lr,
                                         bad={('base', 0, 1 / 0.3)})
  assert 'BaseModel lr=3.33333' in _labels(records)
  assert din_table.select_base_lr(cells) == (1.0, 'BaseModel', '')


def test_no_bn_row_is_compared_with_base_model(tmp_path, monkeypatch):
  records, cells, _ = _base_lr_selection(tmp_path, monkeypatch, lambda lr: -abs(lr - 0.3))
  fam = din_table.families(cells, 'synthetic')[0]
  assert (din_table.NO_BN, 'BaseModel') in fam.pairs
  assert (din_table.NO_BN, 'BaseModel lr=0.3') in fam.pairs
  assert ('BaseModel', 'BaseModel lr=0.3') in fam.pairs
  out = str(tmp_path / 'synthetic')
  study.study_main(din_table.STUDY, records, out, 'synthetic')
  table = open(os.path.join(out, 'table.md')).read()
  assert f'| {din_table.NO_BN} | 2 |' in table and 'input BN' in table
