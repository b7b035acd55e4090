"""The ablation's grid, paired RelaImpr, report files and resumability (no training: fake runs)."""
from __future__ import annotations

import json
import os

import pytest

from experiments import attention_ablation as abl
from experiments import study, sweep


def _fake_train(cfg, workdir):
  del workdir
  m = cfg.model
  auc = 0.6 if m.name == 'base' else 0.7 + 0.01 * (m.attention.normalizer == 'softmax')
  auc += 0.001 * cfg.seed + 0.002 * (m.activation == 'dice')
  return {'eval/test/auc': auc, 'eval/test/gauc': auc - 0.01, 'eval/test/logloss': 0.5,
          'params': 100, 'examples_per_sec': 1000.0, 'oracle/test/oracle_auc': 0.8}


def test_grid_covers_inputs_activations_normalisers_seeds_and_baseline():
  cells = abl.make_cells('synthetic', 3, full=False)
  groups = {tuple(c.group.values()) for c in cells}
  din = [c for c in cells if c.group['model'] == 'din']
  assert len(groups) == 2 + len(abl.INPUTS) * 2 * 2
  assert len(cells) == 3 * len(groups) and {c.seed for c in cells} == {0, 1, 2}
  assert {c.overrides['model.attention.inputs'] for c in din} == set(abl.INPUTS.values())
  assert {c.overrides['model.activation'] for c in cells} == {'dice', 'prelu'}
  base = [c for c in cells if c.group['model'] == abl.BASELINE]
  assert all(c.overrides['model.pooling'] == 'mean' for c in base) and len(base) == 6
  assert len({c.id for c in cells}) == len(cells)
  full = abl.make_cells('synthetic', 3, full=True)
  assert {c.overrides.get('model.attention.name', 'din') for c in full} >= set(abl.FULL_SCORERS)


def test_report_and_rerun_skips_finished_cells(tmp_path):
  cells = abl.make_cells('synthetic', 3, full=False)
  out = str(tmp_path)
  recs = sweep.run_sweep('din.py:synthetic', cells, out, train_fn=_fake_train, log=lambda _: None)
  study.study_main(abl.STUDY, recs, out, 'synthetic')
  text = open(os.path.join(out, 'table.md')).read()
  for f in ('table.md', 'table.csv', 'ablation_auc.png', 'cells.csv'):
    assert os.path.getsize(os.path.join(out, f)) > 0
  # Paired RelaImpr: din/dice/softmax seed s vs base/dice seed s.
  r = next(r for r in recs if r['group']['normalizer'] == 'softmax'
           and r['group']['activation'] == 'dice')
  b = 0.6 + 0.001 * r['seed'] + 0.002
  assert r['summary']['rela_impr'] == pytest.approx(((0.712 + 0.001 * r['seed'] - 0.5)
                                                     / (b - 0.5) - 1) * 100)
  assert '| base (mean pooling) |' in text and 'RelaImpr' in text
  rec = json.load(open(os.path.join(out, 'cells', f'{cells[0].id}.json')))
  assert rec['command'].startswith('python -m seqrec_jax.main --config=din.py:synthetic')
  assert rec['overrides']['model.pooling'] == 'mean'

  def boom(cfg, workdir):
    raise AssertionError('finished cells must not be re-run')
  again = sweep.run_sweep('din.py:synthetic', cells, out, train_fn=boom, log=lambda _: None)
  assert [r['id'] for r in again] == [r['id'] for r in recs]


def test_rerun_after_a_base_config_change_reruns_stale_cells(tmp_path, monkeypatch):
  cells = abl.make_cells('synthetic', 1, full=False)[:2]
  out = str(tmp_path)
  sweep.run_sweep('din.py:synthetic', cells, out, train_fn=_fake_train, log=lambda _: None)
  from seqrec_jax.configs import default  # pylint: disable=g-import-not-at-top
  orig = default.get_config

  def changed():
    c = orig()
    c.model.dice_eps = 1e-5              # a shared default changed between the two runs
    return c
  monkeypatch.setattr(default, 'get_config', changed)
  ran, logs = [], []

  def train(cfg, workdir):
    ran.append(workdir)
    return _fake_train(cfg, workdir)
  again = sweep.run_sweep('din.py:synthetic', cells, out, train_fn=train, log=logs.append)
  assert len(ran) == 2 and all(r['config']['model']['dice_eps'] == 1e-5 for r in again)
  assert any('model.dice_eps' in m and 'stale' in m for m in logs)
  assert os.path.exists(os.path.join(out, 'cells', f'{cells[0].id}.json.stale'))


def test_resolved_tables_pair_dice_with_prelu_and_softmax_with_none(tmp_path):
  cells = abl.make_cells('synthetic', 3, full=False)
  out = str(tmp_path)
  recs = sweep.run_sweep('din.py:synthetic', cells, out, train_fn=_fake_train, log=lambda _: None)
  study.study_main(abl.STUDY, recs, out, 'synthetic')
  assert 'Family: 36 test(s)' in (tmp_path / 'resolved.md').read_text()   # 12 rows x 3
  # _fake_train: dice +0.002 and softmax +0.01 in every seed: the seed intervals exclude 0 (*);
  # no predictions were saved, so no bootstrap and nothing is 'resolved'.
  lines = (tmp_path / 'resolved_dice_prelu.md').read_text().splitlines()
  dice = [l for l in lines if l.startswith(
      '| din / q,k / none / dice | din / q,k / none / prelu | test AUC | 3 |')]
  unresolved = ']* | n/a (no saved predictions) | no |'
  assert len(dice) == 1 and '+0.0020' in dice[0] and dice[0].endswith(unresolved)
  assert sum(' / prelu | test ' in l for l in lines) == 18          # 6 configs x 3 metrics
  lines = (tmp_path / 'resolved_softmax.md').read_text().splitlines()
  soft = [l for l in lines if l.startswith(
      '| din / q,k,outer / prelu / softmax | din / q,k,outer / prelu / none | test AUC | 3 |')]
  assert len(soft) == 1 and '+0.0100' in soft[0] and soft[0].endswith(unresolved)
  assert sum(' / none | test ' in l for l in lines) == 18


def test_dataset_and_override_reach_every_cell_config():
  from absl import app
  from seqrec_jax.configs import load_config
  extra = abl.extra_overrides('movielens', ['data.movielens.path=/data/ml-20m.zip',
                                            'model.embed_dim=4', 'data.synthetic.num_users=9'])
  assert extra == {'data.movielens.path': '/data/ml-20m.zip', 'model.embed_dim': 4}
  cells = abl.make_cells('movielens', 2, False, 100, extra)
  assert not {c.id for c in cells} & {c.id for c in abl.make_cells('movielens', 2, False, 100)}
  for c in cells:
    cfg = load_config('seqrec_jax/configs/din.py:movielens', dict(c.overrides, seed=c.seed))
    assert (cfg.data.name, cfg.data.movielens.path, cfg.model.embed_dim) == (
        'movielens', '/data/ml-20m.zip', 4)
  with pytest.raises(app.UsageError, match='behaviour sequences'):
    abl.extra_overrides('census', [])


def test_intensity_generator_is_accepted_with_the_synthetic_size_preset():
  from seqrec_jax.configs import load_config
  assert 'synthetic_intensity' in abl.FITS
  assert abl.size_overrides('synthetic_intensity', False, -1) == abl.size_overrides(
      'synthetic', False, -1)
  # Both generators read config.data.synthetic: its overrides are kept, other blocks dropped.
  extra = abl.extra_overrides('synthetic_intensity', ['data.synthetic.num_users=900',
                                                      'data.movielens.path=/x'])
  assert extra == {'data.synthetic.num_users': 900}
  cells = abl.make_cells('synthetic_intensity', 1, False)
  cfg = load_config('seqrec_jax/configs/din.py:synthetic_intensity',
                    dict(cells[0].overrides, seed=0))
  assert (cfg.data.name, cfg.data.synthetic.num_users, cfg.data.synthetic.max_len,
          cfg.train.num_epochs, cfg.data.batch_size) == ('synthetic_intensity', 4000, 20, 3.0, 256)


def _comparison(row, metric, mean, lo, hi, resolved):
  return {'row': f'din / {row} / softmax', 'baseline': f'din / {row} / none', 'metric': metric,
          'seed_mean': mean, 'seed_lo': lo, 'seed_hi': hi, 'seed_resolved': resolved,
          'boot_mean': mean, 'boot_lo': lo, 'boot_hi': hi, 'boot_resolved': lo > 0 or hi < 0,
          'resolved': resolved}


def test_side_by_side_verdicts_come_from_the_resolved_flags(tmp_path):
  from experiments import report
  assert abl.side_by_side(str(tmp_path)) is None          # nothing published yet
  for ds, sign in (('synthetic', 1), ('synthetic_intensity', -1)):
    report.write_csv([{'oracle/test/oracle_auc': 0.8}], str(tmp_path / ds / 'cells.csv'))
    report.write_csv([
        _comparison('q,k / dice', 'eval/test/auc', sign * 0.03, *sorted((sign * 0.015,
                                                                          sign * 0.045)), True),
        _comparison('q,k / dice', 'eval/test/logloss', -sign * 0.02, -0.03, -0.01, sign > 0),
        _comparison('q,k / prelu', 'eval/test/auc', 0.01, -0.01, 0.03, False)],
        str(tmp_path / ds / 'resolved_softmax.csv'))
  text = abl.side_by_side(str(tmp_path))
  assert text == (tmp_path / abl.SIDE_BY_SIDE).read_text()
  rows = [l for l in text.splitlines() if l.startswith('| q,k')]
  assert len(rows) == 4
  assert rows[0].startswith('| q,k / dice | `synthetic` | +0.0300 [+0.0150, +0.0450]* |')
  assert rows[0].endswith('| **softmax** (AUC, logloss) |')
  assert rows[1].endswith('| **none** (AUC) |')          # resolved AUC, unresolved logloss
  assert rows[2].endswith('| unsettled |') and rows[3].endswith('| unsettled |')


def test_published_side_by_side_equals_its_recomputation(tmp_path):
  """docs/results/attention_ablation/softmax_vs_none.md is side_by_side of the published
  resolved_softmax.csv files (which experiments.recheck recomputes from cells and bootstrap)."""
  import shutil
  from experiments import publish
  root = os.path.join(publish.DOCS, 'results', 'attention_ablation')
  for ds in abl.GENERATORS:
    os.makedirs(tmp_path / ds)
    for f in ('cells.csv', 'resolved_softmax.csv'):
      shutil.copyfile(os.path.join(root, ds, f), tmp_path / ds / f)
  assert abl.side_by_side(str(tmp_path)) == open(os.path.join(root, abl.SIDE_BY_SIDE)).read()
