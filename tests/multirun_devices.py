"""Tiny multi-run group configs shared by tests/test_multirun*.py, and (run as a script, a
subprocess so XLA_FLAGS can force N host devices before jax starts) the din group of CASES on
several `runs` x `data` meshes, printing one JSON line {layout: {specs, runs: [per run:
train losses, valid/test metrics]}}:

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/multirun_devices.py \
      --layouts=8x1,4x2 --workdir=/tmp/x

With --tolerance it instead prints, per CASES entry, the largest deviation of the compared run
from its single run (first 20 losses, relative; final valid/test metrics, absolute), the
figures of docs/multirun.md:  PYTHONPATH=. python tests/multirun_devices.py --tolerance
"""
from __future__ import annotations

import argparse
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOE = {'model.experts': 3, 'model.expert_hidden': (8,), 'model.bottom_hidden': (12,),
       'model.tower_hidden': (4,), 'model.shared_experts': 2, 'model.specific_experts': 1,
       'model.ple_levels': 2, 'model.activation': 'relu', 'data.mmoe_synthetic.dim': 10,
       'data.mmoe_synthetic.num_train': 1024, 'data.mmoe_synthetic.num_valid': 256,
       'data.mmoe_synthetic.num_test': 256, 'data.mmoe_synthetic.num_sin': 3,
       'data.batch_size': 32, 'data.eval_batch_size': 256, 'train.select_metric': 'mse',
       'train.progress': False, 'train.log_every': 1}

# The din, base and dcnv2 groups' models are a size below test.py's (one hidden layer; DIN's
# attention MLP one layer): the group tests are compile-bound (~25% faster), and the layers,
# Dice statistics and per-run hyper-parameters they check are the same.
SMALL_DIN = {'model.hidden': (8,), 'model.attention.hidden': (4,)}

# (model, group overrides, run index compared with a single run): together they vary every
# vectorisable key, each with a value unlike the one the group's module is built with.
CASES = {
    # 4 seeds x 2 learning rates = 8 runs (also the group of test_multirun.py's device and
    # SIGKILL tests).
    'din': ({'train.run_seeds': (3, 4, 5, 6),
             'train.vary': '{"optim.learning_rate": [1e-3, 3e-3]}', 'train.patience': 1,
             **SMALL_DIN}, 7),
    # The module is built with dropout 0.3 (the largest); run 0 calls it with 0.1. adam's
    # weight decay is an L2 step built only when the decay is nonzero: a varied decay builds it
    # for every run (0 adds 0 * theta); run 0 (decay 0) vs a single run without it.
    'base': ({'train.run_seeds': (5,), 'model.hidden': (8,),
              'train.vary': '{"model.dropout": [0.1, 0.3], "optim.weight_decay": [0.0, 0.01]}'},
             0),
    'mmoe': ({'train.runs': 2, 'train.vary': '{"train.loss_weights": [[1, 1], [1, 0.25]]}'}, 3),
    'ple': ({'train.run_seeds': (0, 1, 2)}, 2),    # --tolerance only (test_multirun.py: mmoe)
    # Built with mba_lambda 0.1; run 1 calls it with 0.03.
    'dcnv2': ({'optim.name': 'adamw', 'model.hidden': (8,),
               'train.vary': '{"optim.weight_decay": [0.0, 0.05], '
                             '"model.mba_lambda": [0.03, 0.1]}'}, 1),
}


def group_config(name, steps=20, **over):
  from seqrec_jax.configs import load_config  # pylint: disable=g-import-not-at-top
  if name in ('mmoe', 'ple'):
    c = load_config(os.path.join(ROOT, 'seqrec_jax/configs/multitask.py:mmoe_synthetic'),
                    {**MOE, 'model.name': name})
  else:
    c = load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py') + ':' + name)
  c.train.num_steps, c.train.eval_every, c.train.checkpoint_every = steps, 5, 10
  c.data.pack_history = False   # padded; packed groups: test_multirun.py test_packed_group_*
  for k, v in over.items():
    node = c
    *path, last = k.split('.')
    for p in path:
      node = node[p]
    node[last] = v
  return c


def run_results(workdir, summaries):
  """Per run: its train losses (metrics.jsonl) and final metrics / steps."""
  from seqrec_jax.metric_writers import read_metrics  # pylint: disable=g-import-not-at-top
  recs = read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  return [{'loss': [r['train/loss'] for r in recs if r.get('run') == s['run']
                    and 'train/loss' in r],
           **{k: v for k, v in s.items() if k.startswith('eval/') or k in ('best_step', 'steps')}}
          for s in summaries]


def tolerance():
  import tempfile  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from seqrec_jax import multirun, train  # pylint: disable=g-import-not-at-top
  for name, (over, s) in CASES.items():
    cfg = group_config(name, **over)
    with tempfile.TemporaryDirectory() as d, tempfile.TemporaryDirectory() as d1:
      got = run_results(d, train.train_and_evaluate(cfg, d)['runs'])[s]
      run = multirun.group_runs(cfg, 2 if name in ('mmoe', 'ple') else 1)[s]
      one = train.train_and_evaluate(multirun.run_config(cfg, run), d1)
      want = run_results(d1, [dict(one, run=None)])[0]
    a, b = np.asarray(got['loss'][:20]), np.asarray(want['loss'][:20])
    print(json.dumps({'case': name, 'run': s, 'seed': run.seed, 'hparams': run.hparams,
                      'max_rel_loss_diff': float(np.max(np.abs(a - b) / np.abs(b))),
                      'max_abs_metric_diff': max(abs(got[k] - want[k]) for k in want
                                                 if k.startswith('eval/'))}), flush=True)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--layouts', default='8x1,4x2', help='runs x data meshes, or pmapN')
  ap.add_argument('--workdir', default='')
  ap.add_argument('--tolerance', action='store_true')
  args = ap.parse_args()
  if args.tolerance:
    return tolerance()
  import jax  # pylint: disable=g-import-not-at-top
  from seqrec_jax import train  # pylint: disable=g-import-not-at-top
  out = {'devices': jax.device_count()}
  for layout in args.layouts.split(','):
    cfg = group_config('din', **CASES['din'][0])
    if layout.startswith('pmap'):    # pmapN: strategy=pmap over N data devices, runs vmapped
      cfg.parallel.strategy, cfg.parallel.data = 'pmap', int(layout[4:])
    else:
      runs, data = map(int, layout.split('x'))
      cfg.parallel.runs, cfg.parallel.data = runs, data
    workdir = os.path.join(args.workdir, layout)
    summary = train.train_and_evaluate(cfg, workdir)
    prog = train.build_program(cfg)    # where the stacked state lives: run axis on `runs`?
    specs = {tuple(sh.spec)[:1] for sh in jax.tree.leaves(prog.state_sh)}
    out[layout] = {'lead': sorted(str(s[0]) for s in specs),
                   'runs': run_results(workdir, summary['runs'])}
  print(json.dumps(out))


if __name__ == '__main__':
  main()
