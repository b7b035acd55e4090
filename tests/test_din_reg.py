"""experiments/din_reg.py without real training: cells, the choice on valid, tables, Fig. 4."""
import json
import os

import numpy as np
import pytest

from experiments import din_reg, study, sweep
from seqrec_jax import evaluate
from seqrec_jax.configs import load_config


def test_cells_are_valid_configs_and_tuning_covers_the_grid():
  for dataset in ('movielens', 'synthetic'):
    cells = din_reg.tuning_cells(dataset)
    per_model = 1 + sum(len(v) for v in din_reg.GRIDS[dataset].values())
    assert len(cells) == 2 * per_model and len({c.id for c in cells}) == len(cells)
    for c in cells:
      cfg = load_config(f'seqrec_jax/configs/din.py:{dataset}', dict(c.overrides, seed=c.seed))
      reg, value = c.group['reg'], c.group['value']
      if reg != 'none':
        assert cfg[din_reg.KEYS[reg].split('.')[0]][din_reg.KEYS[reg].split('.')[1]] == value
      assert cfg.train.save_predictions and c.seed == 0
    if dataset == 'synthetic':
      assert cfg.data.synthetic.num_items == 20000


def _fake_train(cfg, workdir):
  """Scores that improve with MBA; writes the files a real run leaves (curves, predictions)."""
  gain = 0.02 if cfg.model.mba_lambda == 3.0 else 0.0
  rng = np.random.default_rng(cfg.seed)
  users = np.repeat(np.arange(200), 4)
  labels = np.tile([1.0, 0.0], 400)
  preds = 1 / (1 + np.exp(-(labels * (0.5 + 5 * gain) + rng.normal(size=800))))
  evaluate.save_predictions(workdir, 'test', preds[:, None], labels[:, None], users)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    for step in (25, 50, 75, 100):
      f.write(json.dumps({'step': step, 'train/loss': 0.7 - step / 1000,
                          'train/reg_loss': 0.01}) + '\n')
      f.write(json.dumps({'step': step, 'eval/valid/logloss': 0.6 + step / 1000}) + '\n')
  g = 0.7 + gain + 0.002 * cfg.seed + 0.001 * rng.normal()
  return {'eval/test/gauc': g, 'eval/test/auc': g, 'eval/test/logloss': 0.6 - gain,
          'eval/valid/gauc': g, 'best_step': 100}


def test_choice_on_valid_edge_extension_tables_and_fig4(tmp_path):
  out = str(tmp_path / 'synthetic')
  spec = 'seqrec_jax/configs/din.py:synthetic'
  quiet = dict(train_fn=_fake_train, log=lambda *_: None)
  run = lambda cells: sweep.run_sweep(spec, cells, out, **quiet)
  tuning = din_reg.tune('synthetic', run, 10)
  chosen = din_reg.choose(tuning)
  assert chosen[('DIN', 'MBA')] == 3.0 and chosen[('BaseModel', 'none')] is None
  # L2 ties everywhere (no gain): the smallest value, the low edge, is extended once (1e-6).
  l2 = sorted(r['group']['value'] for r in tuning
              if r['group']['reg'] == 'L2' and r['group']['model'] == 'DIN')
  assert l2 == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3])
  assert din_reg.edges(tuning)[('DIN', 'L2')] == 'low'
  assert din_reg.edges(tuning)[('DIN', 'MBA')] == ''
  cells = din_reg.final_cells('synthetic', chosen, 3, 10)
  records = sweep.run_sweep(spec, cells, out, **quiet)
  assert len(records) == 2 * 5 * 3
  # Seed 0 of each final row is its tuning cell: not trained twice.
  assert {r['id'] for r in records if r['seed'] == 0} <= {r['id'] for r in tuning}
  recs = list({r['id']: r for r in tuning + records}.values())
  study.study_main(din_reg.STUDY, recs, out, 'synthetic')
  text = open(os.path.join(out, 'table.md')).read()
  assert '| BaseModel / MBA (3) | 3 |' in text and '| DIN / L2 (1e-06) (edge: low) | 3 |' in text
  mba = next(l for l in open(os.path.join(out, 'resolved.md'))
             if l.startswith('| DIN / MBA (3) | DIN / none | test GAUC |'))
  assert mba.rstrip().endswith('| yes |')     # resolved by both intervals
  assert 'users (200, ' in open(os.path.join(out, 'resolved.md')).read()
  assert '| yes (at the low edge) |' in open(os.path.join(out, 'grid.md')).read()
  for name in ('table.md', 'grid.md', 'fig4.png', 'resolved_vs_mba.md',
               'resolved_din_vs_base.md', 'cells.csv', 'bootstrap.csv'):
    assert os.path.getsize(os.path.join(out, name)) > 0
  c = din_reg.curves(records[0], out)
  np.testing.assert_allclose(c['train'][:, 1], [0.665, 0.64, 0.615, 0.59])   # loss - reg_loss


def test_dataset_and_override_reach_tuning_and_final_cells():
  import pytest
  from absl import app
  extra = din_reg.extra_overrides('movielens', ['data.movielens.path=/data/ml-20m.zip',
                                                'train.eval_every=2000'])
  tuning = din_reg.tuning_cells('movielens', extra=extra)
  final = din_reg.final_cells('movielens', {
      ('DIN', 'MBA'): 0.1, ('BaseModel', 'none'): None}, 2, extra=extra)
  assert len(final) == 4
  for c in tuning + final:
    cfg = load_config('seqrec_jax/configs/din.py:movielens', dict(c.overrides, seed=c.seed))
    assert (cfg.data.movielens.path, cfg.train.eval_every) == ('/data/ml-20m.zip', 2000)
  assert not {c.id for c in tuning} & {c.id for c in din_reg.tuning_cells('movielens')}
  # A DIN dataset without its own grid (amazon) takes movielens's; a non-DIN one fails.
  amazon = din_reg.tuning_cells('amazon', extra=din_reg.extra_overrides(
      'amazon', ['data.amazon.path=/data/amazon']))
  assert len(amazon) == len(tuning)
  assert all(c.overrides['data.amazon.path'] == '/data/amazon' for c in amazon)
  with pytest.raises(app.UsageError, match='amazon'):
    din_reg.extra_overrides('criteo', [])
