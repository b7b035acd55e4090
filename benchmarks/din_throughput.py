"""DIN training / serving speed: seqrec_jax vs PyTorch, DeepCTR-Torch, torch-rechub, DeepCTR (TF).

  bash launch.sh bench                # the docs/performance.md table (< ~10 min on 2 idle cores)
  python -m benchmarks.din_throughput --seq_lens=50 --systems=jax,torch --reps=2   # quick look

Reference configuration (issue 10): item + category embeddings 2 x 64 (vocab 1e5 / 1e3),
history length L in {50, 100, 200}, attention MLP 80-40, main MLP 200-80, batch 1024, Adam,
Dice (the default config's activation; --activation=prelu for the control).

Every system runs in its own worker process (benchmarks/worker.py; peak RSS is per process)
on the same random batches (benchmarks/data.py). Timing windows are interleaved: each
repetition times every system once, in a shuffled order, with the 1-minute load average
recorded next to it, so a busy machine slows all systems alike. Reported: median
examples/s over repetitions; serving p50/p99 latency of one user x N candidates; batch
scoring examples/s; FLOPs per example (analytic and XLA's cost analysis) and the achieved
fraction of this CPU's measured float32 matmul (sgemm) rate.
Writes <out>/din_throughput.{md,csv} and <out>/din_serving.csv.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks import data as bd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = {'jax': 'seqrec_jax (JAX/XLA)', 'jax_dense': 'seqrec_jax, padded (pack_history=False)',
          'torch': 'PyTorch eager', 'torch_compile':
          'PyTorch torch.compile', 'deepctr_torch': 'DeepCTR-Torch 0.3', 'torch_rechub':
          'torch-rechub 0.9', 'deepctr_tf': 'DeepCTR 0.9 (TF/Keras)'}
DEFAULT_SYSTEMS = 'jax,jax_dense,torch,torch_compile,deepctr_torch,torch_rechub,deepctr_tf'


def is_ours(system: str) -> bool:
  return system.startswith('jax')


class Worker:
  """A system's worker process; `call` sends one command and waits for its reply."""

  def __init__(self, system: str, seq_len: int, activation: str, candidates: str, python: str,
               lengths: str = 'uniform', extra_args: tuple[str, ...] = ()):
    self.system = system
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    self.proc = subprocess.Popen(
        [python, '-m', 'benchmarks.worker', f'--system={system}', f'--seq_len={seq_len}',
         f'--activation={activation}', f'--candidates={candidates}', f'--lengths={lengths}',
         *extra_args],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if not os.environ.get('BENCH_VERBOSE') else None, text=True)
    self.ready = None

  def read(self) -> dict:
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f'worker {self.system} exited (code {self.proc.poll()}); '
                         'rerun with BENCH_VERBOSE=1 to see its stderr')
    return json.loads(line)

  def call(self, **cmd) -> dict:
    self.proc.stdin.write(json.dumps(cmd) + '\n')
    self.proc.stdin.flush()
    return self.read()

  def close(self):
    if self.proc.poll() is None:
      try:
        self.proc.stdin.write('{"op": "quit"}\n')
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)
      except (BrokenPipeError, subprocess.TimeoutExpired):
        self.proc.kill()


def analytic_flops(seq_len: int, method: str, lengths: str = 'uniform') -> float:
  """Multiply-add FLOPs (x2) per training example: 3 x forward for the matmuls.

  method 'concat': the attention's first layer on the materialised [q, k, q-k, q*k] at all L
  positions (what the peers compute); 'kernel': seqrec_jax padded, the per-example kernel
  M(q) = W_k' + diag(q) W_p at all L positions; 'packed': seqrec_jax's default, two
  [d, H] matmuls per real behaviour only (mean length (L + 1) / 2 for uniform lengths).
  Elementwise work (Dice, Adam) is not counted.
  """
  d, (h1, h2), (m1, m2) = 2 * bd.EMBED_DIM, bd.ATT_HIDDEN, bd.HIDDEN
  first = {'concat': 4 * d * h1, 'kernel': d * h1, 'packed': 2 * d * h1}[method]
  per_pos = first + h1 * h2 + h2 + d                       # + weighted sum
  per_ex = (2 * d * h1 if method == 'kernel' else 0) + 2 * d * m1 + m1 * m2 + m2
  positions = (seq_len + 1) / 2 if method == 'packed' and lengths == 'uniform' else seq_len
  return 3 * 2 * (positions * per_pos + per_ex)


def load1() -> float:
  return os.getloadavg()[0]


def machine() -> dict:
  cpu = platform.processor() or ''
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
  except (OSError, StopIteration):
    pass
  return {'cpu': cpu, 'cores': os.cpu_count(), 'python': platform.python_version(),
          'date': datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}


def start_workers(systems, seq_len, args):
  workers = []
  for s in systems:
    py = args.tf_python if s == 'deepctr_tf' else sys.executable
    if s == 'deepctr_tf' and not os.path.exists(py):
      print(f'  skipping deepctr_tf: no interpreter at {py} (see launch.sh bench)', flush=True)
      continue
    workers.append(Worker(s, seq_len, args.activation, args.candidates, py, args.lengths))
  ok = []
  for w in workers:                   # they warm up concurrently; wait for each
    try:
      w.ready = w.read()
      ok.append(w)
      print(f'  {w.system:14s} ready: warm-up {w.ready["first_step_s"]:.1f}s, '
            f'step {w.ready["step_s"]:.2f}s', flush=True)
    except (RuntimeError, json.JSONDecodeError) as e:
      print(f'  {w.system} failed to start: {e}', flush=True)
      w.close()
  return ok


def bench_length(seq_len: int, args, rng: random.Random, out: dict):
  print(f'L={seq_len}: starting {args.systems}', flush=True)
  workers = start_workers(args.systems.split(','), seq_len, args)
  try:
    if 'sgemm' not in out:
      jw = next((w for w in workers if w.system == 'jax'), None)
      if jw is not None:
        out['sgemm'] = {**jw.call(op='sgemm'), 'load1': load1()}
    # Training: steps per window from the warm-up step time, interleaved repetitions.
    steps = {w.system: max(1, round(args.window / max(w.ready['step_s'], 1e-3)))
             for w in workers}
    runs = {w.system: [] for w in workers}
    for _ in range(args.reps):
      for w in rng.sample(workers, len(workers)):
        la = load1()
        r = w.call(op='train', steps=steps[w.system])
        runs[w.system].append({**r, 'load1': la})
    for w in workers:
      info = w.call(op='info')
      rs = runs[w.system]
      row = {'system': w.system, 'L': seq_len, 'activation': args.activation,
             'examples_per_s': statistics.median(r['examples'] / r['seconds'] for r in rs),
             'min_examples_per_s': min(r['examples'] / r['seconds'] for r in rs),
             'max_examples_per_s': max(r['examples'] / r['seconds'] for r in rs),
             'cpu_util': statistics.median(r['cpu_seconds'] / r['seconds'] for r in rs),
             'steps_per_window': steps[w.system], 'reps': len(rs),
             'load1': statistics.mean(r['load1'] for r in rs),
             'peak_rss_mb': info['rss_peak_mb'], 'first_step_s': w.ready['first_step_s'],
             'final_loss': rs[-1]['loss']}
      if 'xla' in info:
        row.update(xla_flops_per_ex=info['xla']['flops'] / bd.BATCH,
                   xla_bytes_per_ex=info['xla']['bytes'] / bd.BATCH,
                   compiles=info['compiles'])
      out['train'].append(row)
    # Serving: one user x N candidates, interleaved rounds; then batch scoring. (jax_dense
    # serves through the same CandidateScorer as jax: not repeated.)
    servers = [w for w in workers if w.system != 'jax_dense']
    for n in map(int, args.candidates.split(',')):
      lat = {w.system: [] for w in servers}
      loads = {w.system: [] for w in servers}
      for _ in range(args.serve_rounds):
        for w in rng.sample(servers, len(servers)):
          loads[w.system].append(load1())
          lat[w.system] += w.call(op='serve', n=n, max_reps=args.serve_max_reps,
                                  max_seconds=args.serve_window)['latencies_ms']
      for w in servers:
        a = np.asarray(lat[w.system])
        out['serve'].append({'system': w.system, 'L': seq_len, 'N': n,
                             'p50_ms': float(np.percentile(a, 50)),
                             'p99_ms': float(np.percentile(a, 99)), 'samples': len(a),
                             'load1': statistics.mean(loads[w.system])})
    for w in rng.sample(workers, len(workers)):
      nb = max(1, round(args.window / max(w.ready['step_s'] / 3, 1e-3)))
      la = load1()
      r = w.call(op='score', batches=nb)
      out['score'].append({'system': w.system, 'L': seq_len, 'batches': nb,
                           'examples_per_s': r['examples'] / r['seconds'], 'load1': la})
  finally:
    for w in workers:
      w.close()


def ratio(x, y):
  return x / y if x and y else float('nan')


def fmt_ratio(x, y) -> str:
  return f'{x / y:.2f}x' if x and y else '-'


def render(out: dict, args) -> str:
  m, sg = out['machine'], out.get('sgemm', {})
  peak = max(sg.get('jax', 0), sg.get('numpy', 0)) or float('nan')
  lines = [f'Machine: {m["cpu"]}, {m["cores"]} cores, Python {m["python"]}, {m["date"]}; '
           f'load average (1 min) over the run {out["load_range"]}. '
           f'Measured sgemm peak (2048^3 float32): numpy {sg.get("numpy", float("nan")):.0f}, '
           f'XLA {sg.get("jax", float("nan")):.0f} GFLOP/s (measured in the same run, so under the '
           'same load). Peak RSS: each system in its own process, framework runtime included.',
           f'Command: `{out["command"]}` (activation: {args.activation}; history lengths: '
           f'{"uniform in [1, L]" if args.lengths == "uniform" else "all L (no padding)"}; '
           f'{args.reps} interleaved repetitions, median).', '',
           '**Training** (batch 1024, Adam; examples/s; ratio = system / seqrec_jax)', '',
           '| system | L | examples/s | range | ratio | peak RSS (MB) | load |',
           '|---|---:|---:|---:|---:|---:|---:|']
  jax_rate = {r['L']: r['examples_per_s'] for r in out['train'] if r['system'] == 'jax'}
  for r in out['train']:
    lines.append(f'| {LABELS.get(r["system"], r["system"])} | {r["L"]} | '
                 f'{r["examples_per_s"]:,.0f} | {r["min_examples_per_s"]:,.0f}-'
                 f'{r["max_examples_per_s"]:,.0f} | '
                 f'{ratio(r["examples_per_s"], jax_rate.get(r["L"])):.2f} '
                 f'| {r["peak_rss_mb"]:,.0f} | {r["load1"]:.1f} |')
  lines += ['', '**seqrec_jax vs the fastest peer**', '',
            '| L | training speed-up | padded (pack_history=False) | '
            'serving p50 speed-up (N=' + args.candidates + ') |', '|---:|---:|---:|---:|']
  dense_rate = {r['L']: r['examples_per_s'] for r in out['train'] if r['system'] == 'jax_dense'}
  for L in sorted(jax_rate):
    peers = [r for r in out['train'] if r['L'] == L and not is_ours(r['system'])]
    best = max(peers, key=lambda r: r['examples_per_s'], default=None)
    sv = []
    for n in map(int, args.candidates.split(',')):
      rows = [r for r in out['serve'] if r['L'] == L and r['N'] == n]
      j = next((r['p50_ms'] for r in rows if r['system'] == 'jax'), None)
      p = min((r['p50_ms'] for r in rows if not is_ours(r['system'])), default=None)
      sv.append(f'{ratio(p, j):.1f}x')
    best_rate = best and best['examples_per_s']
    lines.append(f'| {L} | {ratio(jax_rate[L], best_rate):.2f}x '
                 f'(vs {LABELS.get(best["system"]) if best else "-"}) | '
                 f'{fmt_ratio(dense_rate.get(L), best_rate)} | {" / ".join(sv)} |')
  lines += ['', '**Serving** (one user x N candidates; latency ms)', '',
            '| system | L | N | p50 | p99 | samples | load |',
            '|---|---:|---:|---:|---:|---:|---:|']
  for r in out['serve']:
    lines.append(f'| {LABELS.get(r["system"], r["system"])} | {r["L"]} | {r["N"]} | '
                 f'{r["p50_ms"]:.1f} | {r["p99_ms"]:.1f} | {r["samples"]} | {r["load1"]:.1f} |')
  lines += ['', '**Batch scoring** (inference, batches of 1024 independent users; '
            'ratio = system / seqrec_jax)', '',
            '| system | L | examples/s | ratio | load |', '|---|---:|---:|---:|---:|']
  order = list(LABELS)
  jax_score = {r['L']: r['examples_per_s'] for r in out['score'] if r['system'] == 'jax'}
  for r in sorted(out['score'], key=lambda r: (r['L'], order.index(r['system'])
                                               if r['system'] in order else 99)):
    lines.append(f'| {LABELS.get(r["system"], r["system"])} | {r["L"]} | '
                 f'{r["examples_per_s"]:,.0f} | '
                 f'{ratio(r["examples_per_s"], jax_score.get(r["L"])):.2f} '
                 f'| {r["load1"]:.1f} |')
  lines += ['', '**FLOPs per training example and achieved rate (seqrec_jax)**', '',
            'Analytic matmul FLOPs: peers compute the concatenation at all L positions; '
            'seqrec_jax padded the per-example kernel at all L positions; seqrec_jax (packed) '
            'two [d, H] matmuls at real positions only. XLA\'s count is of the compiled step '
            '(packed: at the capacity of the first batch).', '',
            '| system | L | analytic, peers | analytic, this system | XLA cost analysis '
            '| achieved GFLOP/s (XLA count) | of sgemm peak |',
            '|---|---:|---:|---:|---:|---:|---:|']
  for r in out['train']:
    if not is_ours(r['system']) or 'xla_flops_per_ex' not in r:
      continue
    gf = r['xla_flops_per_ex'] * r['examples_per_s'] / 1e9
    method = 'packed' if r['system'] == 'jax' else 'kernel'
    lines.append(f'| {LABELS[r["system"]]} | {r["L"]} | '
                 f'{analytic_flops(r["L"], "concat", args.lengths) / 1e6:.1f} M | '
                 f'{analytic_flops(r["L"], method, args.lengths) / 1e6:.1f} M | '
                 f'{r["xla_flops_per_ex"] / 1e6:.1f} M | {gf:.1f} | {100 * gf / peak:.0f}% |')
  return '\n'.join(lines) + '\n'


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument('--seq_lens', default='50,100,200')
  p.add_argument('--systems', default=DEFAULT_SYSTEMS)
  p.add_argument('--activation', default='dice', choices=['dice', 'prelu'])
  p.add_argument('--lengths', default='uniform', choices=['uniform', 'full'],
                 help='history lengths: uniform in [1, L] or all L (no padding)')
  p.add_argument('--candidates', default='100,1000')
  p.add_argument('--reps', type=int, default=3, help='interleaved training repetitions')
  p.add_argument('--window', type=float, default=2.5, help='target seconds per timing window')
  p.add_argument('--serve_rounds', type=int, default=2)
  p.add_argument('--serve_window', type=float, default=1.5)
  p.add_argument('--serve_max_reps', type=int, default=200)
  p.add_argument('--tf_python', default=os.path.join(ROOT, '.venv-tf', 'bin', 'python'))
  p.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results'))
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--render', metavar='JSON', help='only re-render the Markdown of a saved run')
  args = p.parse_args(argv)
  if args.render:
    with open(args.render) as f:
      saved = json.load(f)
    md = render(saved, argparse.Namespace(**saved['args']))
    with open(os.path.splitext(args.render)[0] + '.md', 'w') as f:
      f.write(md)
    print(md)
    return
  rng = random.Random(args.seed)
  t0 = time.time()
  out = {'machine': machine(), 'train': [], 'serve': [], 'score': [],
         'command': ' '.join(['python -m benchmarks.din_throughput',
                              *(sys.argv[1:] if argv is None else argv)])}
  loads = [load1()]
  for L in map(int, args.seq_lens.split(',')):
    bench_length(L, args, rng, out)
    loads.append(load1())
  out['load_range'] = f'{min(loads):.1f}-{max(loads):.1f}'
  md = render(out, args)
  print('\n' + md)
  os.makedirs(args.out, exist_ok=True)
  suffix = ('' if args.activation == 'dice' else f'_{args.activation}') + (
      '' if args.lengths == 'uniform' else f'_{args.lengths}')
  with open(os.path.join(args.out, f'din_throughput{suffix}.md'), 'w') as f:
    f.write(md)
  with open(os.path.join(args.out, f'din_throughput{suffix}.json'), 'w') as f:
    json.dump({**out, 'args': vars(args)}, f, indent=1)
  for kind in ('train', 'serve', 'score'):
    rows = out[kind]
    if rows:
      keys = sorted({k for r in rows for k in r})
      with open(os.path.join(args.out, f'din_{kind}{suffix}.csv'), 'w', newline='') as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
  print(f'wrote {args.out}/din_throughput{suffix}.md (+ .json, din_*.csv) in '
        f'{time.time() - t0:.0f}s', flush=True)


if __name__ == '__main__':
  main()
