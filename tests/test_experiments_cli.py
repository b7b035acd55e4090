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
