"""One benchmarked system in its own process (so peak RSS is its own), driven over stdin/stdout.

  python -m benchmarks.worker --system=jax --seq_len=50 --activation=dice

Protocol: one JSON command per line on stdin, one JSON reply per line on stdout (library
output is sent to stderr). Commands: {"op": "train", "steps": n}, {"op": "serve", "n": N,
"max_reps": r, "max_seconds": s}, {"op": "score", "batches": k}, {"op": "info"},
{"op": "sgemm"}, {"op": "quit"}. The first reply ({"ready": ...}) comes after warm-up
(compilation, one request of each candidate count, one scoring batch).
--batch sets the training/scoring batch size (default bd.BATCH); --device=cuda runs the
PyTorch systems 'torch' and 'torch_compile' on the GPU (JAX uses its default backend).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

from benchmarks import data as bd


def make_system(name: str, seq_len: int, activation: str, device: str = 'cpu'):
  if name in ('jax', 'jax_dense', 'jax_bf16'):
    from seqrec_jax import xla_cpu  # pylint: disable=g-import-not-at-top
    xla_cpu.apply_defaults()          # as seqrec_jax.main does; the peers run without them
    from benchmarks.jax_din import JaxDin  # pylint: disable=g-import-not-at-top
    if name == 'jax_bf16':            # the platform's packing default, bfloat16 compute
      return JaxDin(seq_len, activation, compute_dtype='bfloat16')
    return JaxDin(seq_len, activation, pack=name == 'jax')
  if name == 'deepctr_tf':
    from benchmarks.peers.deepctr_tf import DeepCtrTf  # pylint: disable=g-import-not-at-top
    return DeepCtrTf(seq_len, activation)
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count() or 2)
  from benchmarks.peers.runner import SYSTEMS  # pylint: disable=g-import-not-at-top
  if device != 'cpu':
    if name not in ('torch', 'torch_compile'):
      raise ValueError(f'--device={device}: only torch and torch_compile run off the CPU')
    return SYSTEMS[name](seq_len, activation, device=device)
  return SYSTEMS[name](seq_len, activation)


def rss_mb() -> tuple[float, float]:
  """(peak, current) resident set size in MB."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  with open('/proc/self/statm') as f:
    cur = int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
  return peak, cur


def sgemm_gflops(n: int = 2048, reps: int = 5) -> dict:
  """Best-of-reps float32 matmul rate of numpy (its BLAS) and, in the jax worker, of XLA."""
  a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
  out = {}
  best = min(_timed(lambda: a @ a) for _ in range(reps))
  out['numpy'] = 2 * n**3 / best / 1e9
  if 'jax' in sys.modules:
    import jax  # pylint: disable=g-import-not-at-top
    aj = jax.numpy.asarray(a)
    f = jax.jit(lambda x: x @ x)
    f(aj).block_until_ready()
    out['jax'] = 2 * n**3 / min(_timed(lambda: f(aj).block_until_ready())
                                for _ in range(reps)) / 1e9
  return out


def _timed(fn) -> float:
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--system', required=True)
  p.add_argument('--seq_len', type=int, required=True)
  p.add_argument('--activation', default='dice')
  p.add_argument('--candidates', default='100,1000')
  p.add_argument('--lengths', default='uniform', choices=['uniform', 'full'])
  p.add_argument('--batch', type=int, default=bd.BATCH)
  p.add_argument('--device', default='cpu', help='PyTorch device: cpu | cuda')
  args = p.parse_args()
  bd.LENGTHS = args.lengths
  bd.BATCH = args.batch
  proto = os.fdopen(os.dup(1), 'w', buffering=1)
  os.dup2(2, 1)                       # anything the libraries print goes to stderr
  sys.stdout = sys.stderr
  reply = lambda d: proto.write(json.dumps(d) + '\n')

  t0 = time.perf_counter()
  system = make_system(args.system, args.seq_len, args.activation, args.device)
  t1 = time.perf_counter()
  system.train(4)                     # compile / trace (every batch: packed shapes differ)
  t2 = time.perf_counter()
  step = _timed(lambda: system.train(1))
  requests = {n: bd.make_requests(args.seq_len, n) for n in map(int, args.candidates.split(','))}
  for reqs in requests.values():
    system.serve(reqs[0])
  scoring = bd.make_batches(args.seq_len, count=2, seed=7)
  for b in scoring:
    system.score(b)
  reply({'ready': True, 'build_s': t1 - t0, 'first_step_s': t2 - t1, 'step_s': step,
         'warmup_s': time.perf_counter() - t0})

  for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd['op']
    if op == 'quit':
      break
    if op == 'train':
      c0, w0 = time.process_time(), time.perf_counter()
      loss = system.train(cmd['steps'])
      reply({'seconds': time.perf_counter() - w0, 'cpu_seconds': time.process_time() - c0,
             'examples': cmd['steps'] * bd.BATCH, 'loss': loss})
    elif op == 'serve':
      reqs, lat, t_end = requests[cmd['n']], [], time.perf_counter() + cmd['max_seconds']
      while len(lat) < cmd['max_reps'] and (len(lat) < 3 or time.perf_counter() < t_end):
        r = reqs[len(lat) % len(reqs)]
        lat.append(_timed(lambda r=r: system.serve(r)) * 1000)
      path = getattr(system, 'serving_path', None)
      reply({'latencies_ms': lat, **({'path': path(reqs[0])} if path else {})})
    elif op == 'score':
      w0 = time.perf_counter()
      for i in range(cmd['batches']):
        system.score(scoring[i % len(scoring)])
      reply({'seconds': time.perf_counter() - w0, 'examples': cmd['batches'] * bd.BATCH})
    elif op == 'info':
      peak, cur = rss_mb()
      info = {'rss_peak_mb': peak, 'rss_mb': cur}
      if hasattr(system, 'cost_analysis'):
        info.update(xla=system.cost_analysis(), compiles=system.compile_count())
      reply(info)
    elif op == 'sgemm':
      reply(sgemm_gflops())
    else:
      reply({'error': f'unknown op {op!r}'})


if __name__ == '__main__':
  main()
