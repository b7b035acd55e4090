"""dcn_table's resolved.md: every row vs DNN and the DCN-V2 paper's pairs (hand-made records)."""
from __future__ import annotations

from experiments import dcn_table, report


def _records():
  shift = {'DNN': 0.0, 'DCN (parallel)': 0.001, 'DCN-V2 full (stacked)': 0.004,
           'DCN-V2 r=d/4 (stacked)': 0.004}
  return [{'group': {'model': m}, 'seed': s, 'id': f'{m}_{s}',
           'summary': {'eval/test/auc': 0.9 + d + 0.002 * s + 0.0001 * (s % 2) * (d > 0),
                       'eval/test/logloss': 0.3 - d}}
          for m, d in shift.items() for s in range(4)]


def test_resolved_compares_dcnv2_with_dcn_and_low_rank_with_full(tmp_path):
  cells = report.cell_rows(_records(), dcn_table.METRICS)
  [fam] = dcn_table.families(cells, 'census')
  text = report.write_comparisons(report.compare(cells, fam, []), fam, str(tmp_path))
  assert (tmp_path / 'resolved.md').read_text() == text
  assert "### census: each row vs DNN, then the DCN-V2 paper's comparisons" in text
  assert 'Family: 10 test(s)' in text                 # 5 pairs with cells x 2 metrics
  lines = text.splitlines()
  v2 = next(l for l in lines
            if l.startswith('| DCN-V2 full (stacked) | DCN (parallel) | test AUC | 4 |'))
  # Seed interval resolved (*), but no predictions: no bootstrap, so never 'resolved'.
  assert '+0.0030' in v2 and ']* | n/a (no saved predictions) | no |' in v2
  low = next(l for l in lines
             if l.startswith('| DCN-V2 r=d/4 (stacked) | DCN-V2 full (stacked) | test AUC |'))
  assert '+0.0000' in low and low.endswith('| no |')     # the same in every seed: no difference
  assert not any(l.startswith('| DCN-Mix') for l in lines)   # rows without records are skipped


def test_dataset_and_override_reach_every_cell_config():
  import pytest
  from absl import app
  from seqrec_jax.configs import load_config
  extra = dcn_table.extra_overrides('criteo', ['data.criteo.path=/data/dac/train.txt',
                                               'data.criteo.max_rows=2000000',
                                               'data.movielens.path=/x'])
  assert extra == {'data.criteo.path': '/data/dac/train.txt', 'data.criteo.max_rows': 2000000}
  assert dcn_table.extra_overrides('criteo', [], '/old/flag')['data.criteo.path'] == '/old/flag'
  cells = dcn_table.make_cells('criteo', 2, 0.5, ['DNN', 'DCN (parallel)'], extra)
  assert len(cells) == 4
  for c in cells:
    cfg = load_config('seqrec_jax/configs/dcn.py:criteo', dict(c.overrides, seed=c.seed))
    assert (cfg.data.name, cfg.data.criteo.path, cfg.data.criteo.max_rows) == (
        'criteo', '/data/dac/train.txt', 2000000)
    assert cfg.train.num_epochs == 0.5
  with pytest.raises(app.UsageError, match='census'):
    dcn_table.extra_overrides('video', [])
  with pytest.raises(ValueError, match='unknown'):
    dcn_table.make_cells('census', 1, rows=['nope'])
