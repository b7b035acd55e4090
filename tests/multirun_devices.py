"""Helper for tests/test_multirun_devices.py (a subprocess, so XLA_FLAGS can force N host
devices before jax is imported): trains one group of 8 tiny DIN (Dice) runs with the given
`runs` x `data` mesh and prints one JSON line {per run: train losses, valid/test metrics}.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/multirun_devices.py \
      --runs=8 --data=1 --workdir=/tmp/x
"""
from __future__ import annotations

import argparse
import json
import os

import jax

from seqrec_jax import train
from seqrec_jax.configs import load_config
from seqrec_jax.metric_writers import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--runs', type=int, default=1)
  ap.add_argument('--data', type=int, default=1)
  ap.add_argument('--workdir', required=True)
  args = ap.parse_args()
  cfg = load_config(os.path.join(ROOT, 'seqrec_jax/configs/test.py'))
  cfg.data.pack_history = False
  cfg.train.num_steps, cfg.train.eval_every, cfg.train.checkpoint_every = 10, 5, 5
  cfg.train.runs = 4
  cfg.train.vary = '{"optim.learning_rate": [1e-3, 1e-2]}'
  cfg.parallel.runs, cfg.parallel.data = args.runs, args.data
  out = train.train_and_evaluate(cfg, args.workdir)
  recs = read_metrics(os.path.join(args.workdir, 'metrics.jsonl'))
  prog = train.build_program(cfg)    # where the stacked state lives: the run axis on `runs`
  specs = {tuple(sh.spec)[:2] for sh in jax.tree.leaves(prog.state_sh)}
  res = {'devices': jax.device_count(), 'specs': sorted(map(list, specs)), 'runs': []}
  for s in out['runs']:
    res['runs'].append({
        'loss': [r['train/loss'] for r in recs if r.get('run') == s['run'] and 'train/loss' in r],
        **{k: v for k, v in s.items() if k.startswith('eval/') or k in ('best_step', 'steps')}})
  print(json.dumps(res))


if __name__ == '__main__':
  main()
