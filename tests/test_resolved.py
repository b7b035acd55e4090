"""experiments/resolved.py: paired-by-seed intervals and the test-user bootstrap per study row."""
import numpy as np
import pytest

from experiments import resolved
from seqrec_jax import evaluate, metrics


def _records(tmp_path, shift, seeds=4, save=True):
  """Rows 'base' and 'better' on one test set; 'better' ranks by the label plus less noise."""
  rng = np.random.default_rng(0)
  users = np.repeat(np.arange(300), 4)
  labels = np.tile([1, 0, 1, 0], 300).astype(float)
  recs = []
  for row, noise in (('base', 1.0), ('better', 1.0 - shift)):
    for s in range(seeds):
      p = labels + noise * rng.normal(size=len(labels)) * 1.5
      rid = f'{row}_s{s}'
      if save:
        evaluate.save_predictions(str(tmp_path / 'work' / rid), 'test', p[:, None],
                                  labels[:, None], users)
      recs.append({'id': rid, 'seed': s, 'group': {'model': row},
                   'summary': {'eval/test/gauc': metrics.gauc(labels, p, users),
                               'eval/test/auc': metrics.auc(labels, p)}})
  return recs


def test_clear_difference_is_resolved_by_both_intervals(tmp_path):
  (tmp_path / 'work').mkdir()
  recs = _records(tmp_path, shift=0.5)
  [c] = resolved.compare(recs, lambda r: r['group']['model'], 'base', str(tmp_path),
                         ('eval/test/gauc', 'eval/test/auc'))
  assert c['row'] == 'better' and c['n'] == 4
  assert c['eval/test/gauc']['lo'] > 0 and c['boot']['lo'] > 0
  assert c['resolved'] == {'eval/test/gauc': True, 'eval/test/auc': True}
  # The bootstrap's point estimate is the seed-averaged GAUC difference on the test set.
  gain = np.mean([r['summary']['eval/test/gauc'] for r in recs if r['seed'] < 4
                  and r['group']['model'] == 'better']) - np.mean(
                      [r['summary']['eval/test/gauc'] for r in recs
                       if r['group']['model'] == 'base'])
  assert c['boot']['mean'] == pytest.approx(gain)
  text = resolved.markdown([c], ('eval/test/gauc', 'eval/test/auc'))
  assert '| better | base | 4 |' in text and 'GAUC, AUC |' in text


def test_no_difference_is_not_resolved_and_missing_predictions_say_so(tmp_path):
  (tmp_path / 'work').mkdir()
  recs = _records(tmp_path, shift=0.0)
  [c] = resolved.compare(recs, lambda r: r['group']['model'], 'base', str(tmp_path))
  assert c['boot'] is not None and not c['resolved']['eval/test/gauc']
  recs = _records(tmp_path / 'none', shift=0.5, save=False)
  [c] = resolved.compare(recs, lambda r: r['group']['model'], 'base', str(tmp_path / 'none'))
  assert c['boot'] is None and 'no saved predictions' in resolved.markdown([c])
