"""experiments/study.py + recheck.py on a tiny fake study: published tables are recomputed from
cells.csv / bootstrap.csv (and from the saved predictions), and a changed number is found."""
import json
import os

import numpy as np

from experiments import recheck, report, study
from seqrec_jax import evaluate, metrics

METRICS = ('eval/test/auc', 'eval/test/gauc')


def _tables(cells, results, outdir, ctx):
  del results, ctx
  rows = report.aggregate_cells(cells, ['model'], METRICS, modal=METRICS)
  report.write_table(rows, [('model', 'model'), ('AUC', 'eval/test/auc'),
                            ('GAUC', 'eval/test/gauc'), ('seeds', 'n_seeds')], outdir)
  return ['table.md', 'table.csv']


SPEC = study.Study(
    name='fake', metrics=METRICS, tables=_tables,
    families=lambda cells, ds: [report.Family('resolved', 'b vs a', [('b', 'a')], METRICS,
                                              lambda c: c['model'])])


def _records(out):
  rng = np.random.default_rng(0)
  y = rng.integers(0, 2, 200).astype(float)
  users = rng.integers(0, 15, 200)
  recs = []
  for model, signal in (('a', 0.5), ('b', 0.8)):
    for s in range(3):
      p = 1 / (1 + np.exp(-rng.normal(signal * (2 * y - 1), 1)))
      rid = f'{model}_s{s}'
      evaluate.save_predictions(os.path.join(out, 'work', rid), 'test', p[:, None], y[:, None],
                                users)
      recs.append({'id': rid, 'group': {'model': model}, 'seed': s, 'wall_seconds': 1.0,
                   'summary': {'eval/test/auc': metrics.auc(y, p),
                               'eval/test/gauc': metrics.gauc(y, p, users)}})
      os.makedirs(os.path.join(out, 'cells'), exist_ok=True)
      with open(os.path.join(out, 'cells', f'{rid}.json'), 'w') as f:
        json.dump(recs[-1], f)
  return recs


def test_recheck_reproduces_then_catches_a_changed_number(tmp_path):
  out, docs = str(tmp_path / 'run'), tmp_path / 'docs'
  docs.mkdir()
  names = study.study_main(SPEC, _records(out), out, publish_to='fake', docs=str(docs))
  assert names[:2] == ['cells.csv', 'bootstrap.csv'] and 'resolved.md' in names
  pub = docs / 'results' / 'fake'
  text = (pub / 'resolved.md').read_text()
  assert 'Family: 2 test(s)' in text and 'users (15, 2000 draws)' in text
  assert len(report.read_csv(str(pub / 'cells.csv'))) == 6
  logs = []
  assert recheck.recheck('fake', str(docs), spec=SPEC, log=logs.append), logs
  assert recheck.recheck('fake', str(docs), runs=out, spec=SPEC, log=logs.append), logs

  table = (pub / 'table.md').read_text()
  (pub / 'table.md').write_text(table.replace('0.', '0.1', 1))
  logs = []
  assert not recheck.recheck('fake', str(docs), spec=SPEC, log=logs.append)
  assert any('table.md differs' in line for line in logs)
  (pub / 'table.md').write_text(table)

  cells = (pub / 'cells.csv').read_text().splitlines()
  first = cells[1].split(',')
  first[-1] = str(float(first[-1]) + 0.01)          # one seed's GAUC
  (pub / 'cells.csv').write_text('\n'.join([cells[0], ','.join(first), *cells[2:]]) + '\n')
  logs = []
  assert not recheck.recheck('fake', str(docs), spec=SPEC, log=logs.append)
  assert any('resolved.md differs' in line for line in logs)
  assert any('table.md differs' in line for line in logs)


def test_recheck_covers_dataset_folders_and_their_combined_table(tmp_path):
  def combined(per_ds, outdir):
    rows = [dict(r, dataset=d) for d, cells in per_ds.items()
            for r in report.aggregate_cells(cells, ['model'], METRICS)]
    report.write_table(rows, [('dataset', 'dataset'), ('model', 'model'),
                              ('GAUC', 'eval/test/gauc')], outdir, basename='all')
    return ['all.md', 'all.csv']
  spec = study.Study('fake', METRICS, _tables, SPEC.families, combined=combined)
  docs = tmp_path / 'docs'
  docs.mkdir()
  for ds in ('a', 'b'):
    out = str(tmp_path / 'run' / ds)
    study.study_main(spec, _records(out), out, ds, publish_to=f'fake/{ds}', docs=str(docs))
  assert recheck.folders('fake', str(docs)) == ['a', 'b']
  per_ds = {d: report.read_csv(str(docs / 'results/fake' / d / 'cells.csv')) for d in 'ab'}
  combined(per_ds, str(docs / 'results/fake'))
  logs = []
  assert recheck.recheck('fake', str(docs), spec=spec, log=logs.append), logs
  page = docs / 'results/fake/all.md'
  page.write_text(page.read_text().replace('| a |', '| c |', 1))
  logs = []
  assert not recheck.recheck('fake', str(docs), spec=spec, log=logs.append)
  assert any('fake/: all.md differs' in line for line in logs), logs


def test_close_forgives_only_last_digit_float_noise():
  a = '1.0,0.992423135334969,mmoe,0.7334\n'
  assert recheck._close(a, '1.0,0.9924231353349686,mmoe,0.7334\n')   # another CPU's numpy sum
  assert not recheck._close(a, '1.0,0.992423135334969,mmoe,0.7335\n')  # a changed number
  assert not recheck._close(a, '1.0,0.992423135334969,omoe,0.7334\n')  # changed text
  assert not recheck._close(a, '1.0,0.992423135334969,mmoe,0.7334,1\n')  # an added column
