"""The embedded default job: `base` (sum and mean pooling) vs `din` on the synthetic data.

  bash launch.sh demo            # = python -m experiments.demo
  python -m experiments.demo --outdir=runs/demo --seed=0

Trains each model with seqrec_jax/configs/din.py:synthetic (selection on valid), then prints
a Markdown table with valid/test AUC, GAUC, logloss and the Bayes-optimal (oracle) AUC the
generator knows, and writes it to <outdir>/table.md and table.csv.
"""
from __future__ import annotations

import os
import shutil
import time

from absl import app, flags

from experiments import sweep
from seqrec_jax import xla_cpu
from seqrec_jax.configs import load_config

_OUTDIR = flags.DEFINE_string('outdir', 'runs/demo', 'Where workdirs and the table go.')
_SEED = flags.DEFINE_integer('seed', 0, 'Training seed (the data seed is in the config).')
_FRESH = flags.DEFINE_bool('fresh', True, 'Delete earlier demo workdirs first (else resume).')

RUNS = (('base (sum pooling)', {'model.name': 'base', 'model.pooling': 'sum'}),
        ('base (mean pooling)', {'model.name': 'base', 'model.pooling': 'mean'}),
        ('din (Dice)', {'model.name': 'din', 'model.activation': 'dice'}))
SPEC = 'seqrec_jax/configs/din.py:synthetic'


def main(argv):
  del argv
  xla_cpu.apply_defaults()  # CPU runtime defaults, before any JAX computation
  from seqrec_jax.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
  t_start = time.time()
  rows = []
  for label, overrides in RUNS:
    overrides = dict(overrides, seed=_SEED.value)
    workdir = os.path.join(_OUTDIR.value, label.split()[0] + '_' + overrides['model.' + (
        'pooling' if overrides['model.name'] == 'base' else 'activation')])
    if _FRESH.value and os.path.exists(workdir):
      shutil.rmtree(workdir)
    print(f'== {label}: {sweep.command(SPEC, overrides, workdir)}', flush=True)
    t0 = time.time()
    s = train_and_evaluate(load_config(SPEC, overrides), workdir)
    rows.append({'model': label, 'valid AUC': s['eval/valid/auc'], 'test AUC': s['eval/test/auc'],
                 'test GAUC': s['eval/test/gauc'], 'test logloss': s['eval/test/logloss'],
                 'oracle test AUC': s['oracle/test/oracle_auc'],
                 'gap to oracle': s['oracle/test/oracle_auc'] - s['eval/test/auc'],
                 'params': s['params'], 'train ex/s': s['examples_per_sec'],
                 'seconds': round(time.time() - t0, 1)})
  cols = [(k, k) for k in rows[0]]
  wall = time.time() - t_start
  text = sweep.write_table(rows, cols, _OUTDIR.value, title='Demo: synthetic planted-interest data',
                           notes=f'Wall time {wall:.0f} s (training + evaluation, after setup).')
  print()
  print(text)


if __name__ == '__main__':
  app.run(main)
