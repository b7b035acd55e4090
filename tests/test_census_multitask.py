"""census_multitask's resolved.md also carries the MMoE paper's own comparisons (fake runs)."""
from __future__ import annotations

from experiments import census_multitask, study, sweep


def test_resolved_compares_mmoe_with_omoe_and_expert_dropout_with_mmoe(tmp_path):
  up = {'mmoe': 0.01, 'omoe': 0.0}

  def fake(cfg, workdir):
    del workdir
    auc = 0.90 + up.get(cfg.model.name, 0.0) + 0.001 * cfg.seed
    auc -= 0.02 * (cfg.model.get('expert_dropout', 0.0) > 0)
    return {'eval/test/income/auc': auc, 'eval/test/never_married/auc': 0.98 + 0.001 * cfg.seed,
            'eval/valid/income/auc': 0.9, 'eval/valid/never_married/auc': 0.98,
            'params': 10, 'steps': 5}
  cells = census_multitask.make_cells(3, False, 5)
  out = str(tmp_path)
  recs = sweep.run_sweep(census_multitask.CONFIG, cells, out, train_fn=fake, log=lambda *_: None)
  study.study_main(census_multitask.STUDY, recs, out)
  text = (tmp_path / 'resolved.md').read_text()
  assert 'MMoE vs OMoE, expert dropout vs MMoE' in text and 'Family: 14 test(s)' in text
  line = next(l for l in text.splitlines() if l.startswith('| mmoe | omoe | test income auc | 3 |'))
  assert '+0.0100' in line and line.endswith(']* | n/a (no saved predictions) | no |')
  line = next(l for l in text.splitlines()
              if l.startswith('| mmoe + expert dropout 0.25 | mmoe | test income auc | 3 |'))
  assert '-0.0200' in line and line.endswith(']* | n/a (no saved predictions) | no |')
  line = next(l for l in text.splitlines()
              if l.startswith('| omoe | shared_bottom | test never_married auc | 3 |'))
  assert '+0.0000' in line and line.endswith('| no |')
  table = (tmp_path / 'table.md').read_text()
  assert '| mmoe | 0.9110 ± 0.0010 | 0.9810 ± 0.0010 |' in table


def test_dataset_and_override_reach_every_cell_config():
  import pytest
  from absl import app
  from seqrec_jax.configs import load_config
  extra = census_multitask.extra_overrides('census', ['data.census.path=/data/adult.csv.gz',
                                                      'data.census.min_count=5'])
  assert extra == {'data.census.path': '/data/adult.csv.gz', 'data.census.min_count': 5}
  cells = census_multitask.make_cells(2, False, 10, extra)
  assert not {c.id for c in cells} & {c.id for c in census_multitask.make_cells(2, False, 10)}
  for c in cells:
    cfg = load_config(census_multitask.CONFIG, dict(c.overrides, seed=c.seed))
    assert (cfg.data.census.path, cfg.data.census.min_count) == ('/data/adult.csv.gz', 5)
  with pytest.raises(app.UsageError, match='income and never_married'):
    census_multitask.extra_overrides('mmoe_synthetic', [])
  with pytest.raises(app.UsageError, match='data.census.min_count is of type int'):
    census_multitask.extra_overrides('census', ['data.census.min_count=few'])


def test_census_kdd_cells_are_their_own():
  import pytest
  from absl import app
  from seqrec_jax.configs import dataset_blocks, load_config
  if 'census_kdd' not in dataset_blocks():
    pytest.skip('data/census_kdd.py not registered')
  extra = census_multitask.extra_overrides('census_kdd', ['data.census_kdd.path=/data/kdd'])
  assert extra == {'data.name': 'census_kdd', 'data.census_kdd.path': '/data/kdd'}
  cells = census_multitask.make_cells(1, False, 10, extra)
  ids = {c.id for c in census_multitask.make_cells(1, False, 10)}
  assert not {c.id for c in cells} & ids
  cfg = load_config(census_multitask.config_spec('census_kdd'),
                    dict(cells[0].overrides, seed=0))
  assert (cfg.data.name, cfg.data.census_kdd.path) == ('census_kdd', '/data/kdd')
  with pytest.raises(app.UsageError, match='task group 1'):
    census_multitask.extra_overrides('census_kdd', ['data.census_kdd.task_group=2'])
