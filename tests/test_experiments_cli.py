"""The studies import together (their absl flags are defined only when run as scripts) and
each script's --help lists its flags."""
import importlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDIES = ('attention_ablation', 'din_table', 'mmoe_synthetic', 'census_multitask',
           'dcn_table')


def test_studies_import_together_without_flag_clashes():
  for name in STUDIES:
    importlib.import_module(f'experiments.{name}')


@pytest.mark.parametrize('name', ['attention_ablation', 'mmoe_synthetic', 'census_multitask'])
def test_study_help_lists_its_flags(name):
  out = subprocess.run([sys.executable, '-m', f'experiments.{name}', '--help'], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  # absl prints the usage and exits with status 1 on --help.
  assert '--seeds' in out.stdout and '--num_steps' in out.stdout, out.stderr[-2000:]
  assert '--[no]docs' in out.stdout and 'docs/results/' in out.stdout, out.stdout[-2000:]


# Every study that takes a dataset: --dataset and --override in its --help (issue 25 item 5).
DATASET_STUDIES = ('experiments.din_table', 'experiments.din_reg', 'experiments.attention_ablation',
                   'experiments.dcn_table', 'experiments.census_multitask',
                   'experiments.funnel', 'experiments.incremental', 'experiments.video',
                   'seqrec_jax.retrieval.two_tower_study')


@pytest.mark.parametrize('module', DATASET_STUDIES)
def test_study_help_describes_dataset_and_override(module):
  out = subprocess.run([sys.executable, '-m', module, '--help'], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  text = out.stdout
  assert '--dataset' in text and '--override' in text, (text + out.stderr)[-3000:]
  assert 'data.movielens.path' in text or 'data.census.path' in text or 'data.video' in text


def test_one_override_parser_types_values_by_the_config():
  from seqrec_jax.configs import for_dataset, load_config, parse_overrides
  cfg = load_config('seqrec_jax/configs/din.py:movielens')
  got = parse_overrides(['data.movielens.path=/data/ml-20m.zip', 'train.eval_every=5_000',
                         'optim.learning_rate=1', 'data.pack_history=false',
                         'model.hidden=64,32', 'data.tasks=click', 'data.movielens.path=123',
                         'train.progress=True'], cfg)
  # The last of a repeated key wins; a path stays text even when it reads as a number.
  assert got == {'data.movielens.path': '123', 'train.eval_every': 5000,
                 'optim.learning_rate': 1.0, 'data.pack_history': False,
                 'model.hidden': (64, 32), 'data.tasks': ('click',), 'train.progress': True}
  assert isinstance(got['optim.learning_rate'], float)
  for bad, match in (('train.eval_every=1.5', 'int'), ('data.pack_history=maybe', 'bool'),
                     ('data.movielens=x', 'block'), ('model.pooling', 'key=value')):
    with pytest.raises(ValueError, match=match):
      parse_overrides([bad], cfg)
  with pytest.raises(KeyError, match='data.nope'):
    parse_overrides(['data.nope=1'], cfg)
  # Without a config: Python literals, else text (what din_table's parser did).
  assert parse_overrides(['a=(64, 32)', 'b=/x/y.zip', 'c=0.5']) == {
      'a': (64, 32), 'b': '/x/y.zip', 'c': 0.5}
  ov = {'data.movielens.path': '/x', 'data.synthetic.num_users': 7, 'train.eval_every': 5,
        'data.batch_size': 64}
  assert for_dataset(ov, 'synthetic') == {'data.synthetic.num_users': 7, 'train.eval_every': 5,
                                          'data.batch_size': 64}


def test_check_dataset_names_what_fits_and_why():
  from absl import app
  from seqrec_jax.configs import check_dataset
  with pytest.raises(app.UsageError, match=r'--dataset=criteo: does not fit for s, which '
                     r'needs timestamps\. Datasets that fit: movielens \(ratings\)'):
    check_dataset('s', 'criteo', {'movielens': 'ratings'}, 'timestamps')
  with pytest.raises(app.UsageError, match='not a registered dataset'):
    check_dataset('s', 'movielenz', {'movielens': 'ratings'}, 'timestamps')


def test_incremental_dataset_and_override_reach_every_update():
  from absl import app
  from experiments import incremental as inc
  with pytest.raises(app.UsageError, match='time-stamped'):
    inc.extra_overrides('synthetic', [])
  assert inc.extra_overrides('movielens', []) == {}
  assert inc.stream_source({}) == inc.DEFAULT_SOURCE
  assert inc.dataset_name(0, 4, 8) == 'ml_stream_0_4_8'            # default: names as before
  extra = inc.extra_overrides('movielens', ['data.movielens.path=/data/ml-20m.zip',
                                            'data.movielens.positive_rating=5',
                                            'model.embed_dim=4', 'data.criteo.max_rows=9'])
  assert extra == {'data.movielens.path': '/data/ml-20m.zip',
                   'data.movielens.positive_rating': 5.0, 'model.embed_dim': 4}
  src = inc.stream_source(extra)
  assert src == ('/data/ml-20m.zip', 5.0, 'first')
  name = inc.dataset_name(0, 4, 8, src)
  assert name.startswith('ml_stream_0_4_8_') and name != inc.dataset_name(0, 4, 8)
  assert inc._tag(extra) and inc._tag({}) == ''   # pylint: disable=protected-access


def test_two_tower_study_dataset_and_override():
  from absl import app
  from seqrec_jax.retrieval import two_tower_study as S
  logs, tt, rec = S.split_overrides(
      'movielens', ['data.movielens.path=/data/ml-20m.zip', 'model.use_user_embedding=true',
                    'data.synthetic.num_users=9'],
      '{"model.two_tower.history": "attention", "model.use_user_embedding": false}')
  assert logs == {'path': '/data/ml-20m.zip'}
  assert tt == {'model.two_tower.history': 'attention',
                'model.use_user_embedding': True}                # --override wins over JSON
  assert rec == {'data.movielens.path': '/data/ml-20m.zip',
                 'model.two_tower.history': 'attention', 'model.use_user_embedding': True}
  assert S.split_overrides('synthetic', ['data.synthetic.num_users=500'])[0] == {
      'num_users': 500}
  with pytest.raises(app.UsageError, match='interaction logs'):
    S.split_overrides('census')
  with pytest.raises(app.UsageError, match="config key 'nope' does not exist"):
    S.split_overrides('movielens', ['nope=1'])
  with pytest.raises(app.UsageError, match='reads only data.movielens'):
    S.split_overrides('movielens', ['data.batch_size=3'])


def test_multirun_benchmark_override_and_its_old_name_are_checked_before_training():
  for flag in ('--override', '--set'):
    out = subprocess.run([sys.executable, '-m', 'benchmarks.multirun', '--cases=din_synthetic',
                          f'{flag}=train.nope=1'], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "config key 'train.nope' does not exist" in out.stderr, (
        out.stderr[-2000:])
