"""census_multitask's resolved.md also carries the MMoE paper's own comparisons (fake runs)."""
from __future__ import annotations

from experiments import census_multitask, sweep


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
  census_multitask.report(recs, out, 1.0)
  text = (tmp_path / 'resolved.md').read_text()
  assert '#### census: mmoe vs omoe' in text
  line = next(l for l in text.splitlines() if l.startswith('| mmoe | omoe | 3 |'))
  assert '+0.0100' in line and line.endswith('income auc |')
  line = next(l for l in text.splitlines()
              if l.startswith('| mmoe + expert dropout 0.25 | mmoe | 3 |'))
  assert '-0.0200' in line and line.endswith('income auc |')
