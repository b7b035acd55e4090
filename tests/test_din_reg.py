"""experiments/din_reg.py without real training: rows, the choice on valid, tables, Fig. 4, the
power statement; the "without goods_ids" switch (data.item_top_k=-1) on a real dataset."""
import json
import math
import os

import numpy as np
import pytest

from experiments import din_reg, report, study, sweep
from seqrec_jax import evaluate
from seqrec_jax.configs import load_config
from seqrec_jax.data import load_dataset


def _get(cfg, key):
  a, b = key.split('.')
  return cfg[a][b]


def test_rows_are_valid_configs_with_their_overrides_and_equal_grids():
  for dataset in ('movielens', 'synthetic'):
    g = din_reg.GRIDS[dataset]
    assert set(g) == set(din_reg.TUNED) and len({len(v) for v in g.values()}) == 1
    assert len(g['MBA']) == 3          # every tuned row: the same budget as MBA's and L2's
    cells = din_reg.tuning_cells(dataset)
    per_model = len(din_reg.FIXED) + sum(len(v) for v in g.values())
    assert len(cells) == 2 * per_model and len({c.id for c in cells}) == len(cells)
    seen = set()
    for c in cells:
      cfg = load_config(f'seqrec_jax/configs/din.py:{dataset}', dict(c.overrides, seed=c.seed))
      reg, value = c.group['reg'], c.group['value']
      seen.add(reg)
      assert cfg.train.save_predictions and c.seed == 0
      assert cfg.model.frequency_reg == ('difacto' if reg == 'DiFacto' else 'mba')
      assert cfg.model.mba_lambda == (value if reg in ('MBA', 'DiFacto', 'MBA-paper') else 0)
      assert cfg.data.item_top_k == {'filter': value, 'no goods_ids': -1}.get(reg, 0)
      assert cfg.model.embed_dropout == (value if reg == 'dropout' else 0)
      assert cfg.optim.weight_decay == (value if reg == 'L2' else 0)
      if reg in din_reg.TUNED:
        assert value in g[reg]
      else:
        assert value == din_reg.FIXED[reg]
    assert seen == set(din_reg.REGS)
    assert din_reg.FIXED['MBA-paper'] == 0.01    # the lambda the paper states
    if dataset == 'synthetic':
      assert cfg.data.synthetic.num_items == 20000


def test_without_goods_ids_reads_every_item_as_oov_and_keeps_categories(tiny_config):
  """data.item_top_k=-1: the item ids of every split are 0, categories and masks unchanged;
  MBA's counts hold no item (nothing is left to count)."""
  before = load_dataset(tiny_config.data)
  tiny_config.data.item_top_k = -1
  ds = load_dataset(tiny_config.data)
  for name, split in ds.splits.items():
    a, b = before.splits[name].all(), split.all()
    assert not b['target_item'].any() and not b['hist_items'].any()
    assert a['target_item'].any()
    for k in ('target_cate', 'hist_cates', 'hist_mask', 'label'):
      np.testing.assert_array_equal(a[k], b[k])
  assert not ds.spec.id_counts.counts('item').any()
  assert ds.spec.id_counts.counts('cate').sum() == before.spec.id_counts.counts('cate').sum()
  assert ds.info['items_kept'] == 0 and ds.spec.num_items == before.spec.num_items


def _fake_train(cfg, workdir):
  """Scores that improve with MBA at 3 (not DiFacto); writes the files a real run leaves
  (curves, predictions)."""
  gain = 0.02 if (cfg.model.mba_lambda == 3.0 and cfg.model.frequency_reg == 'mba') else 0.0
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


def test_choice_on_valid_edge_extension_tables_power_and_fig4(tmp_path):
  out = str(tmp_path / 'synthetic')
  spec = 'seqrec_jax/configs/din.py:synthetic'
  quiet = dict(train_fn=_fake_train, log=lambda *_: None)
  run = lambda cells: sweep.run_sweep(spec, cells, out, **quiet)
  tuning = din_reg.tune('synthetic', run, 10)
  chosen = din_reg.choose(tuning)
  assert chosen[('DIN', 'MBA')] == 3.0 and chosen[('BaseModel', 'none')] is None
  assert chosen[('DIN', 'MBA-paper')] == 0.01 and chosen[('DIN', 'no goods_ids')] is None
  tried = lambda reg: sorted(r['group']['value'] for r in tuning
                             if r['group']['reg'] == reg and r['group']['model'] == 'DIN')
  # Ties everywhere but MBA 3: the smallest value, the low edge, is extended once: L2 and
  # DiFacto by the grid ratio, the filter's k too (an int), the dropout rate by its step,
  # which leaves [0, 0.9] below 0.1 (not run: the choice stays marked at the edge).
  assert tried('L2') == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3])
  assert tried('DiFacto') == pytest.approx([1e-3, 0.01, 0.1, 1.0])
  assert tried('filter') == [1250, 2500, 5000, 10000]
  assert tried('dropout') == pytest.approx([0.1, 0.3, 0.5])
  assert tried('MBA') == [0.3, 3.0, 30.0]
  edge = din_reg.edges(tuning)
  assert [edge[('DIN', r)] for r in ('L2', 'DiFacto', 'filter', 'dropout', 'MBA')] == [
      'low', 'low', 'low', 'low', '']
  cells = din_reg.final_cells('synthetic', chosen, 3, 10)
  records = sweep.run_sweep(spec, cells, out, **quiet)
  assert len(records) == 2 * len(din_reg.REGS) * 3
  # Seed 0 of each final row is its tuning cell: not trained twice.
  assert {r['id'] for r in records if r['seed'] == 0} <= {r['id'] for r in tuning}
  recs = list({r['id']: r for r in tuning + records}.values())
  names = study.study_main(din_reg.STUDY, recs, out, 'synthetic')
  text = open(os.path.join(out, 'table.md')).read()
  for row in ('BaseModel / MBA (3) | 3 |', 'DIN / L2 (1e-06) (edge: low) | 3 |',
              'DIN / filter (1250) (edge: low) | 3 |', 'DIN / no goods_ids | 3 |',
              'DIN / MBA-paper (0.01) | 3 |', 'DIN / DiFacto (0.001) (edge: low) | 3 |'):
    assert f'| {row}' in text, row
  mba = next(l for l in open(os.path.join(out, 'resolved_din.md'))
             if l.startswith('| DIN / MBA (3) | DIN / none | test GAUC |'))
  assert mba.rstrip().endswith('| yes |')     # resolved by both intervals
  assert 'users (200, ' in open(os.path.join(out, 'resolved_din.md')).read()
  vs_mba = open(os.path.join(out, 'resolved_vs_mba_din.md')).read()
  for row in ('dropout (0.1)', 'filter (1250)', 'L2 (1e-06)', 'DiFacto (0.001)',
              'MBA-paper (0.01)'):
    assert f'| DIN / {row} | DIN / MBA (3) | test GAUC |' in vs_mba
  grid = open(os.path.join(out, 'grid.md')).read()
  assert '| yes (at the low edge) |' in grid and '| fixed |' in grid
  power = report.read_csv(os.path.join(out, 'power.csv'))
  assert len(power) == 2 * 5 * 3      # 5 rows vs MBA per model, 3 metrics
  for name in ('table.md', 'grid.md', 'fig4.png', 'resolved_vs_mba_din.md', 'power.md',
               'resolved_din_vs_base.md', 'resolved_base.md', 'cells.csv', 'bootstrap.csv'):
    assert name in names and os.path.getsize(os.path.join(out, name)) > 0
  c = din_reg.curves(records[0], out)
  np.testing.assert_allclose(c['train'][:, 1], [0.665, 0.64, 0.615, 0.59])   # loss - reg_loss


def test_power_against_hand_computed_cases():
  """Paired t-test power (two-sided): no true difference -> power = alpha; the textbook sample
  sizes for 80% power at alpha = 0.05 (Cohen's d = 0.5 -> 34 pairs, d = 1 -> 10; G*Power gives
  the same); the detectable difference at n pairs ~ (t_{1-a/2} + t_{0.8}) sd / sqrt(n)."""
  assert din_reg.paired_power(0.0, 1.0, 8, 0.05) == pytest.approx(0.05, abs=1e-9)
  assert din_reg.seeds_needed(0.5, 1.0, 0.05) == 34
  assert din_reg.seeds_needed(-1.0, 1.0, 0.05) == 10
  assert din_reg.paired_power(0.5, 1.0, 33, 0.05) < 0.8 < din_reg.paired_power(0.5, 1.0, 34, 0.05)
  assert din_reg.seeds_needed(0.5, 1.0, 0.005) > 34               # a stricter Holm level
  d = din_reg.detectable(0.02, 8, 0.05)
  assert din_reg.paired_power(d, 0.02, 8, 0.05) == pytest.approx(0.8, abs=1e-6)
  assert d == pytest.approx((2.3646 + 0.8960) * 0.02 / math.sqrt(8), rel=0.01)
  assert din_reg.seeds_needed(0.0, 1.0, 0.05) == math.inf


def test_power_rows_from_a_comparison():
  """power_rows on a hand-made vs-MBA result: per-seed differences 1, 2, 3, 4 (mean 2.5, sd
  sqrt(5/3)), tested at Holm level 0.99 (alpha 0.01) in a family of 10."""
  d = np.array([1.0, 2.0, 3.0, 4.0])
  sd = math.sqrt(5 / 3)
  res = {'resolved_vs_mba_din': [{
      'row': 'DIN / filter (5000)', 'baseline': 'DIN / MBA (3)', 'metric': 'eval/test/gauc',
      'seed': {'mean': d.mean(), 'se': d.std(ddof=1) / 2, 'n': 4}, 'seed_level': 0.99,
      'family_size': 10, 'resolved': False}], 'resolved_din': []}
  (r,) = din_reg.power_rows(res)
  assert r['sd'] == pytest.approx(sd) and r['alpha'] == pytest.approx(0.01)
  assert r['needed'] == din_reg.seeds_needed(2.5, sd, 0.01)
  assert r['needed_bonf'] == din_reg.seeds_needed(2.5, sd, 0.005) >= r['needed']
  assert r['power'] == pytest.approx(din_reg.paired_power(2.5, sd, 4, 0.01))
  assert din_reg.paired_power(r['detectable'], sd, 4, 0.01) == pytest.approx(0.8, abs=1e-6)


def test_dataset_and_override_reach_tuning_and_final_cells():
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


def test_a_run_restricted_to_din_and_some_rows_tunes_only_those(tmp_path):
  out = str(tmp_path / 'synthetic')
  run = lambda cells: sweep.run_sweep('seqrec_jax/configs/din.py:synthetic', cells, out,
                                      train_fn=_fake_train, log=lambda *_: None)
  tuning = din_reg.tune('synthetic', run, 10, ('none', 'MBA', 'filter'), models=['DIN'])
  assert {(r['group']['model'], r['group']['reg']) for r in tuning} == {
      ('DIN', 'none'), ('DIN', 'MBA'), ('DIN', 'filter')}
  final = din_reg.final_cells('synthetic', din_reg.choose(tuning), 2, 10, ('none', 'MBA'))
  assert {(c.group['reg'], c.group['value']) for c in final} == {('none', None), ('MBA', 3.0)}
