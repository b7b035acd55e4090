"""experiments/mmoe_synthetic.py as a study spec, with a fake trainer that saves predictions:
tables, the Holm family, a collapsed run counted, recheck of the published files."""
import os
import zlib

import numpy as np

from experiments import mmoe_synthetic as ms
from experiments import recheck, study, sweep
from seqrec_jax import evaluate

NOISE = {'shared_bottom': 0.5, 'omoe': 0.3, 'mmoe': 0.29, 'ple': 0.2}


def _fake_train(cfg, workdir):
  data_seed = cfg.data.mmoe_synthetic.seed
  y = np.random.default_rng(data_seed).normal(size=(120, 2))
  rng = np.random.default_rng([cfg.seed, zlib.crc32(cfg.model.name.encode())])
  pred = y + rng.normal(0, NOISE[cfg.model.name], y.shape)
  if cfg.model.name == 'ple' and cfg.seed == 3 and cfg.data.mmoe_synthetic.correlation == 0.5:
    pred = np.zeros_like(y)                                  # a collapsed run
  evaluate.save_predictions(workdir, 'test', pred, y, np.arange(len(y)))
  mse = ((pred - y) ** 2).mean(0)
  return {'eval/test/mean/mse': float(mse.mean()), 'eval/test/y1/mse': float(mse[0]),
          'eval/test/y2/mse': float(mse[1]), 'params': 1000.0, 'steps': 8}


def test_spec_reports_publishes_and_rechecks(tmp_path, monkeypatch):
  monkeypatch.setattr(ms, 'label_stats', lambda corr, seeds: (corr * 0.7, 1.3))
  out, docs = str(tmp_path / 'run'), tmp_path / 'docs'
  docs.mkdir()
  cells = ms.make_cells(4, False, 8)
  assert all(c.overrides['train.save_predictions'] for c in cells)
  recs = sweep.run_sweep(ms.CONFIG, cells, out, train_fn=_fake_train, log=lambda *_: None)
  names = study.study_main(ms.STUDY, recs, out, publish_to='mmoe_synthetic', docs=str(docs))
  assert {'cells.csv', 'bootstrap.csv', 'resolved.md', 'table.md', 'table.csv',
          'mse_vs_correlation.png'} <= set(names)
  res = open(os.path.join(out, 'resolved.md')).read()
  assert 'Family: 12 test(s)' in res and 'rows (120, 2000 draws)' in res
  line = next(l for l in res.splitlines() if l.startswith('| ple @ 0.5 | shared_bottom @ 0.5'))
  assert '| 1 of 4, 0 of 4 |' in line and '| 3 |' in line     # collapsed seed left out
  assert '(1 of 4 collapsed)' in open(os.path.join(out, 'table.md')).read()
  logs = []
  assert recheck.recheck('mmoe_synthetic', str(docs), spec=ms.STUDY, log=logs.append), logs
