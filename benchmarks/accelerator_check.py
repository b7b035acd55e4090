r"""Accelerator check: one prepared run on a bare GPU machine (or the CPU, as a smoke test).

  python3 -m benchmarks.accelerator_check --platform=gpu --outdir=$OUT    # lent GPU, < 8 min
  python -m benchmarks.accelerator_check --platform=cpu --smoke --outdir=/tmp/acc   # CI

docs/accelerator.md has the device-tool call (wheels fetched by benchmarks/fetch_wheels.sh and
carried in benchmarks/wheels/). Sections, in this order, each in its own process with its own
time box (one that overruns is killed and reported; the others still run):

  install   wheels from --wheels that the machine lacks -> a --target dir on PYTHONPATH; the
            project with `pip install --no-deps --no-build-isolation -e .` (GPU default)
  versions  python, jax, jaxlib, flax, optax, orbax, torch, CUDA devices; project dependencies
            (pyproject.toml) the interpreter lacks
  tests     the model/attention/packing/multi-run tests (pytest, on the chosen platform)
  train     DIN training examples/s at the benchmark reference config (benchmarks/data.py;
            L x batch, Dice, Adam) for seqrec_jax packed and padded, PyTorch eager and
            torch.compile, through benchmarks.din_throughput.Worker / benchmarks.worker (each
            system in its own process, interleaved timing windows), then serving latency of
            one user x 1000 candidates
  multirun  runs/hour of the din_table synthetic cell and the MMoE synthetic cell at
            S = config.train.runs in --runs (the whole train_and_evaluate, compile and evals
            included); 'multi-run engine not available' while config.train has no 'runs'

Results: <outdir>/accelerator_check.json and .md (rewritten after every section, so a run
killed from outside keeps what finished), accelerator_check.log (every child's output) and
pytest.txt. Goals, printed PASS / FAIL / n/a at the end (in --smoke the sizes are not the
reference ones, so the verdicts are only a check of the plumbing):
  train_vs_torch_compile  seqrec_jax (its platform default: packed or padded) >= 2x PyTorch
                          torch.compile examples/s at every L and batch
  multirun_s64_vs_s1      runs/hour at S = 64 >= 30x S = 1, din_table synthetic cell
  serving_p50             one user x 1000 candidates p50 < 2 ms at every L
"""
from __future__ import annotations

import argparse
import fnmatch
import functools
import glob
import importlib.metadata
import importlib.util
import json
import os
import platform as pyplatform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ('install', 'versions', 'tests', 'train', 'multirun')
TORCH_SYSTEMS = ('torch', 'torch_compile')
TEST_FILES = ('tests/test_attention.py', 'tests/test_din.py', 'tests/test_packing.py',
              'tests/test_ops.py', 'tests/test_activations.py', 'tests/test_models_registry.py',
              'tests/test_multitask.py', 'tests/test_serving.py')
TEST_GLOBS = ('tests/test_multirun*.py', 'tests/test_runs*.py')  # the multi-run engine's tests
GOALS = {'train_vs_torch_compile': 2.0, 'multirun_s64_vs_s1': 30.0, 'serving_p50_ms': 2.0}
DISTS = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy', 'ml_collections',
         'torch', 'triton', 'jax-cuda12-plugin', 'jax-cuda13-plugin', 'pytest')

# Per mode: sizes and time boxes (seconds). GPU: < 8 minutes in all.
PROFILES = {
    # L = 200 before 100: if the train box cuts the last length, the extremes are measured.
    'full': dict(seq_lens=(50, 200, 100), batches=(1024, 8192),
                 systems=('jax', 'jax_dense', 'torch', 'torch_compile'), reps=3, window=1.0,
                 serve_rounds=2, serve_window=1.0, serve_max_reps=300, candidates=1000,
                 runs=(1, 64, 8), cells=('din_synthetic', 'mmoe_synthetic'), multirun_steps=-1,
                 tests=TEST_FILES, test_globs=TEST_GLOBS, pytest_workers=12,
                 boxes=dict(install=30, versions=30, tests=70, train=240, multirun=100)),
    'smoke': dict(seq_lens=(20,), batches=(64,), systems=('jax_dense', 'torch'),
                  reps=1, window=0.2, serve_rounds=1, serve_window=0.2, serve_max_reps=5,
                  candidates=1000, runs=(2,), cells=('mmoe_synthetic',), multirun_steps=3,
                  tests=('tests/test_packing.py::test_capacity_takes_at_most_buckets_values',),
                  test_globs=(), pytest_workers=0,   # boxes: only against hangs (shared CPUs)
                  boxes=dict(install=60, versions=120, tests=120, train=300, multirun=300)),
}
# --smoke: small data for the multi-run cells (the reference cells stay as the studies pin them).
SMOKE_CELL_OVERRIDES = {
    'din_synthetic': {'data.synthetic.num_users': 200, 'data.synthetic.max_len': 10,
                      'data.eval_batch_size': 256},
    'mmoe_synthetic': {'data.mmoe_synthetic.num_train': 512,
                       'data.mmoe_synthetic.num_valid': 256, 'data.mmoe_synthetic.num_test': 256},
}


# ----------------------------------------------------------------------------- helpers


def _write_json(path: str, obj) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=1, default=str)
  os.replace(tmp, path)


def _dist_version(name: str) -> str | None:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def torch_available() -> bool:
  return importlib.util.find_spec('torch') is not None


def child_env(settings: dict) -> dict:
  """Environment of every child: the platform pinned, wheels and the repo on PYTHONPATH."""
  env = dict(os.environ)
  path = [ROOT] + ([settings['site']] if settings.get('site') else [])
  env['PYTHONPATH'] = os.pathsep.join(path + [p for p in [env.get('PYTHONPATH')] if p])
  env['JAX_PLATFORMS'] = 'cuda' if settings['platform'] == 'gpu' else 'cpu'
  env['XLA_PYTHON_CLIENT_PREALLOCATE'] = 'false'   # several JAX processes share the GPU
  env['PYTHONUNBUFFERED'] = '1'
  env['BENCH_VERBOSE'] = '1'                       # benchmark workers' stderr into the log
  if settings['platform'] == 'cpu':
    env['CUDA_VISIBLE_DEVICES'] = ''
  return env


def run_logged(cmd: list[str], timeout: float, log_path: str, env: dict,
               title: str) -> tuple[int | None, float]:
  """Runs cmd with stdout+stderr appended to the log; (returncode or None on timeout, s)."""
  t0 = time.time()
  with open(log_path, 'a') as log:
    log.write(f'\n===== {title}: {" ".join(cmd)}\n')
    log.flush()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
      rc = proc.wait(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, 9)                       # the child and its workers
      proc.wait()
      rc = None
      log.write(f'===== {title}: killed at its time box ({timeout:.0f}s)\n')
  return rc, time.time() - t0


# ----------------------------------------------------------------------------- install


def wheel_dist(path: str) -> str:
  """'ml_collections-1.1.0-py3-none-any.whl' -> 'ml_collections'."""
  return os.path.basename(path).split('-')[0]


def wheels_to_install(wheel_dir: str) -> tuple[list[str], list[str]]:
  """(wheels whose distribution this interpreter lacks, distributions already present)."""
  need, have = [], []
  for w in sorted(glob.glob(os.path.join(wheel_dir, '*.whl'))):
    (have if _dist_version(wheel_dist(w)) else need).append(w)
  return need, [wheel_dist(w) for w in have]


def section_install(settings: dict, log_path: str) -> dict:
  out = {'wheel_dir': settings['wheels'], 'site': settings['site']}
  need, have = wheels_to_install(settings['wheels'])
  out.update(installed=[os.path.basename(w) for w in need], already_present=have)
  pip = [sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps',
         '--no-cache-dir', '--disable-pip-version-check']
  if need:
    rc, sec = run_logged(pip + ['--no-compile', '--upgrade', '--target', settings['site'], *need],
                         settings['boxes']['install'] / 2, log_path, dict(os.environ), 'wheels')
    out['wheels_rc'], out['wheels_s'] = rc, round(sec, 1)
  if settings['editable']:
    rc, sec = run_logged(pip + ['--no-build-isolation', '-e', ROOT],
                         settings['boxes']['install'] / 2, log_path, dict(os.environ),
                         'editable install')
    out['editable_rc'], out['editable_s'] = rc, round(sec, 1)
    out['editable_note'] = ('the repository is on PYTHONPATH of every child either way'
                            if rc != 0 else '')
  return out


# ----------------------------------------------------------------------------- children


def child_versions(settings: dict) -> dict:
  out = {'python': pyplatform.python_version(), 'executable': sys.executable,
         'dists': {d: _dist_version(d) for d in DISTS}}
  try:
    import tomllib  # pylint: disable=g-import-not-at-top
    with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
      deps = tomllib.load(f)['project']['dependencies']
    names = [re.split(r'[<>=!~\[; ]', d, maxsplit=1)[0] for d in deps]
    out['missing_project_deps'] = [n for n in names if _dist_version(n) is None]
    from packaging.requirements import Requirement  # pylint: disable=g-import-not-at-top
    reqs = [Requirement(d) for d in deps]
    # Installed, but outside the pinned range (the machine's versions are used as they are).
    out['other_versions'] = {r.name: _dist_version(r.name) for r in reqs
                             if _dist_version(r.name) and not r.specifier.contains(
                                 _dist_version(r.name), prereleases=True)}
  except (OSError, KeyError, ImportError) as e:
    out['missing_project_deps'] = f'could not read pyproject.toml: {e}'
  try:
    import jax  # pylint: disable=g-import-not-at-top
    out['jax_backend'] = jax.default_backend()
    out['jax_devices'] = [str(d) for d in jax.devices()]
    out['jax_device_kind'] = jax.devices()[0].device_kind
  except Exception as e:  # pylint: disable=broad-except  (no usable backend: say so, go on)
    out['jax_error'] = f'{type(e).__name__}: {e} (JAX_PLATFORMS={os.environ.get("JAX_PLATFORMS")})'
  import seqrec_jax  # pylint: disable=g-import-not-at-top,unused-import
  out['seqrec_jax_file'] = seqrec_jax.__file__
  from seqrec_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  out['xla_cpu_platform'] = xla_cpu.cpu_platform()   # CPU runtime defaults apply only there
  out['xla_flags'] = os.environ.get('XLA_FLAGS', '')
  try:
    from seqrec_jax import platform_defaults  # pylint: disable=g-import-not-at-top
    out['platform_defaults'] = platform_defaults.table()
  except ImportError:
    pass
  if torch_available():
    try:
      import torch  # pylint: disable=g-import-not-at-top
      out['torch'] = {'version': torch.__version__, 'cuda': torch.version.cuda,
                      'cuda_available': torch.cuda.is_available(),
                      'devices': [torch.cuda.get_device_name(i)
                                  for i in range(torch.cuda.device_count())]}
    except Exception as e:  # pylint: disable=broad-except
      out['torch'] = {'error': f'{type(e).__name__}: {e}'}
  if shutil.which('nvidia-smi'):
    q = subprocess.run(['nvidia-smi', '--query-gpu=name,driver_version,memory.total,clocks.sm',
                        '--format=csv,noheader'], capture_output=True, text=True, timeout=30)
    out['nvidia_smi'] = q.stdout.strip() or q.stderr.strip()
  want = 'gpu' if settings['platform'] == 'gpu' else 'cpu'
  out['platform_ok'] = out.get('jax_backend') == want
  return out


def child_tests(settings: dict) -> dict:
  files = list(settings['tests'])
  for g in settings['test_globs']:
    files += sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, g)))
  files = [f for f in dict.fromkeys(files)
           if os.path.exists(os.path.join(ROOT, f.split('::')[0]))]
  junit = os.path.join(settings['tmp'], 'junit.xml')
  cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '--timeout=300',
         f'--junitxml={junit}', *files]
  if settings['pytest_workers'] and importlib.util.find_spec('xdist'):
    cmd[4:4] = ['-n', str(settings['pytest_workers'])]
  pytest_txt = os.path.join(settings['outdir'], 'pytest.txt')
  env = dict(os.environ)
  if settings['test_precision']:
    # Tests compare code paths at float32 tolerances; a GPU's default float32 matmuls may use
    # TF32. The train and serving sections keep the framework default.
    env['JAX_DEFAULT_MATMUL_PRECISION'] = settings['test_precision']
  t0 = time.time()
  with open(pytest_txt, 'w') as f:
    f.write(' '.join(cmd) + '\n')
    f.flush()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    try:
      rc = proc.wait(timeout=max(settings['boxes']['tests'] - 25, 5))
    except subprocess.TimeoutExpired:
      # SIGINT: pytest stops, prints its summary and still writes the JUnit report.
      proc.send_signal(signal.SIGINT)
      try:
        proc.wait(timeout=15)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
      rc = 'interrupted at the time box (the counts are of the tests that ran)'
  out = {'files': files, 'returncode': rc, 'seconds': round(time.time() - t0, 1),
         'matmul_precision': settings['test_precision'] or 'default',
         'multirun_tests': [f for f in files if any(
             fnmatch.fnmatch(f, g) for g in TEST_GLOBS)]}
  out.update(parse_junit(junit))
  return out


def parse_junit(path: str) -> dict:
  """Counts and failing test ids (with the first line of their message) from a JUnit XML."""
  if not os.path.exists(path):
    return {'error': f'no JUnit report at {path}'}
  root = ET.parse(path).getroot()
  suites = [root] if root.tag == 'testsuite' else list(root.iter('testsuite'))
  counts = {k: sum(int(s.get(k, 0)) for s in suites)
            for k in ('tests', 'failures', 'errors', 'skipped')}
  failed = []
  for case in root.iter('testcase'):
    for tag in ('failure', 'error'):
      el = case.find(tag)
      if el is not None:
        msg = (el.get('message') or '').strip().splitlines()
        failed.append(f'{case.get("classname")}::{case.get("name")}: '
                      f'{msg[0][:200] if msg else tag}')
  return {**counts, 'passed': counts['tests'] - counts['failures'] - counts['errors'] -
          counts['skipped'], 'failed': failed}


def child_train(settings: dict, out_path: str) -> dict:
  """DIN training and serving through the din_throughput workers; partial results are written
  to out_path after every history length."""
  from benchmarks import din_throughput as dt  # pylint: disable=g-import-not-at-top
  systems = [s for s in settings['systems'] if s not in TORCH_SYSTEMS or torch_available()]
  out = {'systems': systems, 'seq_lens': list(settings['seq_lens']),
         'batches': list(settings['batches']), 'rows': [], 'serve': [], 'errors': [],
         'skipped': [], 'machine': dt.machine()}
  if len(systems) < len(settings['systems']):
    out['skipped'].append('PyTorch systems: torch is not importable')
  device = 'cuda' if settings['platform'] == 'gpu' else 'cpu'
  rng = random.Random(0)
  deadline = time.time() + settings['boxes']['train'] - 5
  started = time.time()
  for i, seq_len in enumerate(settings['seq_lens']):
    left = deadline - time.time()
    per_len = (time.time() - started) / i if i else 0.0
    if left < per_len * 1.1:
      out['skipped'].append(f'L={seq_len}: time box ({left:.0f}s left, one length took '
                            f'{per_len:.0f}s)')
      continue
    workers = []
    for batch in settings['batches']:
      for system in systems:
        extra = (f'--batch={batch}',) + ((f'--device={device}',) if system in TORCH_SYSTEMS
                                         else ())
        w = dt.Worker(system, seq_len, 'dice', str(settings['candidates']), sys.executable,
                      extra_args=extra)
        w.batch, w.seq_len = batch, seq_len
        workers.append(w)
    try:
      ready = []
      for w in workers:
        try:
          w.ready = w.read()
          ready.append(w)
        except (RuntimeError, json.JSONDecodeError) as e:
          out['errors'].append(f'{w.system} L={seq_len} batch={w.batch}: {e}')
      steps = {id(w): max(1, round(settings['window'] / max(w.ready['step_s'], 1e-4)))
               for w in ready}
      runs = {id(w): [] for w in ready}
      failed: set[int] = set()
      call = functools.partial(_safe_call, failed=failed, errors=out['errors'])
      for _ in range(settings['reps']):
        for w in rng.sample(ready, len(ready)):
          r = call(w, op='train', steps=steps[id(w)])
          if r is not None:
            runs[id(w)].append(r)
      for w in ready:
        rs = runs[id(w)]
        if id(w) in failed or not rs:
          continue
        rates = [r['examples'] / r['seconds'] for r in rs]
        out['rows'].append({
            'system': w.system, 'L': seq_len, 'batch': w.batch,
            'examples_per_s': statistics.median(rates), 'min_examples_per_s': min(rates),
            'max_examples_per_s': max(rates), 'reps': len(rs), 'steps_per_window': steps[id(w)],
            'step_ms': 1000 * statistics.median(r['seconds'] / steps[id(w)] for r in rs),
            'first_step_s': w.ready['first_step_s'], 'warmup_s': w.ready['warmup_s'],
            'final_loss': rs[-1]['loss']})
      # jax_dense serves through the same CandidateScorer as jax: measured only without jax.
      servers = [w for w in ready if w.batch == min(settings['batches'])
                 and (w.system != 'jax_dense' or 'jax' not in systems)]
      lat = {id(w): [] for w in servers}
      paths = {}
      for _ in range(settings['serve_rounds']):
        for w in rng.sample(servers, len(servers)):
          r = call(w, op='serve', n=settings['candidates'], max_reps=settings['serve_max_reps'],
                   max_seconds=settings['serve_window'])
          lat[id(w)] += r['latencies_ms'] if r is not None else []
          if r is not None and 'path' in r:
            paths[id(w)] = r['path']
      for w in servers:
        a = sorted(lat[id(w)])
        if not a:
          continue
        out['serve'].append({'system': w.system, 'L': seq_len, 'N': settings['candidates'],
                             'p50_ms': statistics.median(a),
                             'p99_ms': a[min(len(a) - 1, int(0.99 * len(a)))],
                             'samples': len(a), 'path': paths.get(id(w), '-')})
    finally:
      for w in workers:
        w.close()
    _write_json(out_path, out)
  return out


def _safe_call(w, failed: set[int], errors: list[str], **cmd):
  """w.call(**cmd), or None once the worker has died (out of memory, say): it is dropped."""
  if id(w) in failed:
    return None
  try:
    return w.call(**cmd)
  except (RuntimeError, json.JSONDecodeError, BrokenPipeError) as e:
    failed.add(id(w))
    errors.append(f'{w.system} L={w.seq_len} batch={w.batch} {cmd["op"]}: {e}')
    return None


def multirun_available() -> bool:
  from seqrec_jax.configs import default  # pylint: disable=g-import-not-at-top
  return 'runs' in default.get_config().train


def cell_config(cell: str, smoke: bool):
  """(config spec, overrides, test metric) of a multi-run cell, from benchmarks/multirun.py's
  cases: din_synthetic (din_table's synthetic "DIN with Dice" cell as that study pins it) and
  mmoe_synthetic (the MMoE study's mmoe cell at correlation 0.5)."""
  from benchmarks import multirun  # pylint: disable=g-import-not-at-top
  spec, overrides, _, metric = multirun.case_setup(cell)
  overrides = dict(overrides)
  if smoke:
    overrides.update(SMOKE_CELL_OVERRIDES[cell])
  return spec, overrides, metric


def child_multirun_job(settings: dict, cell: str, runs: int) -> dict:
  """One train_and_evaluate of `cell` with config.train.runs = runs, timed end to end."""
  from seqrec_jax import xla_cpu  # pylint: disable=g-import-not-at-top
  xla_cpu.apply_defaults()               # as the studies' mains do (CPU only)
  from seqrec_jax import train  # pylint: disable=g-import-not-at-top
  from seqrec_jax.configs import load_config  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data import load_dataset  # pylint: disable=g-import-not-at-top
  spec, overrides, metric = cell_config(cell, settings['smoke'])
  overrides.update({'seed': 0, 'train.runs': runs, 'train.progress': False,
                    'train.checkpoint_every': 10**9})
  if settings['multirun_steps'] > 0:
    n = settings['multirun_steps']
    overrides.update({'train.num_steps': n, 'train.eval_every': n, 'train.log_every': n})
  cfg = load_config(os.path.join(ROOT, spec), overrides)
  load_dataset(cfg.data)                  # generated once, outside the timed region
  workdir = tempfile.mkdtemp(prefix=f'mr_{cell}_{runs}_', dir=settings['tmp'])
  t0 = time.time()
  summary = train.train_and_evaluate(cfg, workdir)
  wall = time.time() - t0
  per_run = summary.get('runs', [summary]) if isinstance(summary, dict) else [summary]
  vals = [r[metric] for r in per_run if isinstance(r, dict) and metric in r]
  return {'cell': cell, 'runs': runs, 'wall_s': round(wall, 2),
          'runs_per_hour': runs * 3600 / wall, 'steps': per_run[0].get('steps'),
          'metric': metric, 'metric_mean': sum(vals) / len(vals) if vals else None,
          'n_summaries': len(per_run), 'overrides': overrides}


# ----------------------------------------------------------------------------- parent


def section_multirun(settings: dict, log_path: str) -> dict:
  env = child_env(settings)
  probe = subprocess.run([sys.executable, '-c', 'from benchmarks.accelerator_check import '
                          'multirun_available as m; print(m())'], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
  if probe.stdout.strip() != 'True':
    return {'available': False, 'reason': 'multi-run engine not available (config.train has '
            'no "runs" key)' + (f'; probe failed: {probe.stderr[-300:]}'
                                if probe.returncode else '')}
  out = {'available': True, 'jobs': [], 'skipped': []}
  deadline = time.time() + settings['boxes']['multirun']
  for cell in settings['cells']:
    for runs in settings['runs']:
      left = deadline - time.time()
      if left < 10:
        out['skipped'].append(f'{cell} S={runs}: time box')
        continue
      path = os.path.join(settings['tmp'], f'multirun_{cell}_{runs}.json')
      rc, sec = run_logged(_child_cmd(settings, 'multirun_job', path, cell=cell, runs=runs),
                           left, log_path, env, f'multirun {cell} S={runs}')
      if rc == 0 and os.path.exists(path):
        with open(path) as f:
          out['jobs'].append(json.load(f))
      else:
        out['jobs'].append({'cell': cell, 'runs': runs, 'error': 'killed at the time box'
                            if rc is None else f'exit code {rc} (see accelerator_check.log)',
                            'seconds': round(sec, 1)})
  return out


def _child_cmd(settings: dict, name: str, out_path: str, **kw) -> list[str]:
  cmd = [sys.executable, '-m', 'benchmarks.accelerator_check', f'--child={name}',
         f'--settings={settings["settings_path"]}', f'--child_out={out_path}']
  return cmd + [f'--{k}={v}' for k, v in kw.items()]


def run_child_section(settings: dict, name: str, log_path: str) -> dict:
  path = os.path.join(settings['tmp'], f'{name}.json')
  rc, sec = run_logged(_child_cmd(settings, name, path), settings['boxes'][name], log_path,
                       child_env(settings), name)
  res = {}
  if os.path.exists(path):
    with open(path) as f:
      res = json.load(f)
  if rc != 0:
    res['error'] = ('killed at the time box' if rc is None else
                    f'exit code {rc} (see accelerator_check.log)')
  res['seconds'] = round(sec, 1)
  return res


def _ratio(a, b):
  return a / b if a and b else None


def evaluate_goals(results: dict, settings: dict) -> dict:
  goals = {}
  train = results.get('train', {})
  default_sys = 'jax'
  pd = results.get('versions', {}).get('platform_defaults', {})
  if pd and pd.get(settings['platform'], {}).get('data.pack_history') is False:
    default_sys = 'jax_dense'
  rate = {(r['system'], r['L'], r['batch']): r['examples_per_s'] for r in train.get('rows', [])}
  cells, ok = [], True
  for seq_len in settings['seq_lens']:
    for batch in settings['batches']:
      ratio = _ratio(rate.get((default_sys, seq_len, batch)),
                     rate.get(('torch_compile', seq_len, batch)))
      cells.append({'L': seq_len, 'batch': batch, 'ratio': ratio})
      ok = ok and ratio is not None and ratio >= GOALS['train_vs_torch_compile']
  measured = any(c['ratio'] is not None for c in cells)
  goals['train_vs_torch_compile'] = {
      'target': f'>= {GOALS["train_vs_torch_compile"]}x at every L and batch',
      'seqrec_jax_system': default_sys, 'cells': cells,
      'status': ('pass' if ok else 'fail') if measured else 'n/a'}
  mr = results.get('multirun', {})
  rph = {j['runs']: j.get('runs_per_hour') for j in mr.get('jobs', [])
         if j.get('cell') == 'din_synthetic'}
  hi = max(settings['runs'])
  ratio = _ratio(rph.get(hi), rph.get(1))
  goals['multirun_s64_vs_s1'] = {
      'target': f'runs/hour at S={hi} >= {GOALS["multirun_s64_vs_s1"]}x S=1 (din_synthetic)',
      'ratio': ratio, 'status': 'n/a' if ratio is None else
      ('pass' if ratio >= GOALS['multirun_s64_vs_s1'] else 'fail')}
  if not mr.get('available', True):
    goals['multirun_s64_vs_s1']['note'] = mr.get('reason')
  p50 = {r['L']: r['p50_ms'] for r in train.get('serve', []) if r['system'] in ('jax',
                                                                               'jax_dense')}
  goals['serving_p50_ms'] = {
      'target': f'p50 < {GOALS["serving_p50_ms"]} ms, one user x {settings["candidates"]} '
                'candidates, every L', 'p50_ms': p50,
      'status': 'n/a' if not p50 else
      ('pass' if all(v < GOALS['serving_p50_ms'] for v in p50.values())
       and len(p50) == len(settings['seq_lens']) else 'fail')}
  return goals


def _fmt(x, spec='.2f'):
  return '-' if x is None else format(x, spec)


def render(results: dict, settings: dict) -> str:
  v = results.get('versions', {})
  smoke = ' (smoke: tiny sizes, verdicts check the plumbing only)' if settings['smoke'] else ''
  lines = ['# Accelerator check', '',
           f'Command: `{results["command"]}`; platform {settings["platform"]}{smoke}'
           f'; started {results["started"]} UTC; {results.get("wall_s", 0):.0f} s.', '']
  if v:
    d = v.get('dists', {})
    lines += [f'Device: {v.get("jax_device_kind", "?")} ({", ".join(v.get("jax_devices", []))})'
              f'; nvidia-smi: {v.get("nvidia_smi", "-")}; JAX backend {v.get("jax_backend")}'
              + (f' (**{v["jax_error"][:300]}**)' if v.get('jax_error') else '') + '.',
              'Versions: python ' + v.get('python', '?') + ', ' +
              ', '.join(f'{k} {x}' for k, x in d.items() if x) +
              (f"; torch CUDA {v['torch'].get('cuda')}" if v.get('torch') else '') + '.',
              f'Project dependencies missing: {v.get("missing_project_deps") or "none"}; '
              f'outside the pinned range: {v.get("other_versions") or "none"}.', '']
  for name in SECTIONS:
    err = results.get(name, {}).get('error')
    if err:
      lines.append(f'- section {name}: **{err}**')
  t = results.get('tests', {})
  if t:
    lines += ['', '## Tests', '', f'{t.get("passed", "?")} passed, {t.get("failures", "?")} '
              f'failed, {t.get("errors", "?")} errors, {t.get("skipped", "?")} skipped in '
              f'{t.get("seconds", "?")} s ({len(t.get("files", []))} files; multi-run tests: '
              f'{", ".join(t.get("multirun_tests", [])) or "none found"}; float32 matmul '
              f'precision {t.get("matmul_precision", "?")}).']
    lines += [f'- {f}' for f in t.get('failed', [])[:30]]
  tr = results.get('train', {})
  if tr.get('rows'):
    lines += ['', '## DIN training (examples/s; Dice, Adam, uniform history lengths)', '',
              '| L | batch | system | examples/s | range | step ms | vs torch.compile |',
              '|---:|---:|---|---:|---:|---:|---:|']
    tc = {(r['L'], r['batch']): r['examples_per_s'] for r in tr['rows']
          if r['system'] == 'torch_compile'}
    for r in sorted(tr['rows'], key=lambda r: (r['L'], r['batch'], r['system'])):
      lines.append(f'| {r["L"]} | {r["batch"]} | {r["system"]} | {r["examples_per_s"]:,.0f} | '
                   f'{r["min_examples_per_s"]:,.0f}-{r["max_examples_per_s"]:,.0f} | '
                   f'{r["step_ms"]:.2f} | '
                   f'{_fmt(_ratio(r["examples_per_s"], tc.get((r["L"], r["batch"]))))} |')
  if tr.get('serve'):
    lines += ['', f'## Serving (one user x {settings["candidates"]} candidates, ms)', '',
              '| L | system | p50 | p99 | samples | history path |',
              '|---:|---|---:|---:|---:|---|']
    for r in tr['serve']:
      lines.append(f'| {r["L"]} | {r["system"]} | {r["p50_ms"]:.3f} | {r["p99_ms"]:.3f} | '
                   f'{r["samples"]} | {r.get("path", "-")} |')
  for key, label in (('errors', 'error'), ('skipped', 'skipped')):
    lines += [f'- train {label}: {x}' for x in tr.get(key, [])]
  mr = results.get('multirun', {})
  if mr:
    lines += ['', '## Multi-run throughput', '']
    if not mr.get('available', True):
      lines.append(mr.get('reason', 'multi-run engine not available'))
    else:
      lines += ['| cell | S | wall s | runs/hour | vs S=1 | steps | metric (mean over runs) |',
                '|---|---:|---:|---:|---:|---:|---|']
      one = {j['cell']: j.get('runs_per_hour') for j in mr.get('jobs', []) if j['runs'] == 1}
      for j in sorted(mr.get('jobs', []), key=lambda j: (j['cell'], j['runs'])):
        if 'error' in j:
          lines.append(f'| {j["cell"]} | {j["runs"]} | - | - | - | - | {j["error"]} |')
          continue
        lines.append(f'| {j["cell"]} | {j["runs"]} | {j["wall_s"]:.1f} | '
                     f'{j["runs_per_hour"]:,.0f} | '
                     f'{_fmt(_ratio(j["runs_per_hour"], one.get(j["cell"])), ".1f")} | '
                     f'{j["steps"]} | {j["metric"]} {_fmt(j["metric_mean"], ".4f")} |')
      lines += [f'- skipped: {x}' for x in mr.get('skipped', [])]
  lines += ['', '## Goals', '', '| goal | target | measured | status |', '|---|---|---|---|']
  for name, g in results.get('goals', {}).items():
    if name == 'train_vs_torch_compile':
      meas = '; '.join(f'L={c["L"]} B={c["batch"]}: {_fmt(c["ratio"])}x' for c in g['cells'])
      meas += f' ({g["seqrec_jax_system"]})'
    elif name == 'serving_p50_ms':
      meas = '; '.join(f'L={k}: {x:.3f} ms' for k, x in g['p50_ms'].items()) or '-'
    else:
      meas = f'{_fmt(g["ratio"], ".1f")}x' + (f' ({g["note"]})' if g.get('note') else '')
    lines.append(f'| {name} | {g["target"]} | {meas} | {g["status"].upper()} |')
  return '\n'.join(lines) + '\n'


def settings_from_args(args) -> dict:
  prof = dict(PROFILES['smoke' if args.smoke else 'full'])
  prof['boxes'] = dict(prof['boxes'])
  for key in ('seq_lens', 'batches', 'runs'):
    val = getattr(args, key)
    if val:
      prof[key] = tuple(int(x) for x in val.split(','))
  if args.systems:
    prof['systems'] = tuple(args.systems.split(','))
  if args.cells:
    prof['cells'] = tuple(args.cells.split(','))
  if args.multirun_steps is not None:
    prof['multirun_steps'] = args.multirun_steps
  for item in args.time_box:
    name, _, sec = item.partition('=')
    if name not in prof['boxes'] or not sec:
      raise SystemExit(f'--time_box={item!r}: expected <section>=<seconds>, section one of '
                       f'{sorted(prof["boxes"])}')
    prof['boxes'][name] = float(sec)
  sections = args.sections.split(',') if args.sections else list(SECTIONS)
  unknown = sorted(set(sections) - set(SECTIONS))
  if unknown:
    raise SystemExit(f'--sections: unknown {unknown}; choose from {list(SECTIONS)}')
  install = args.install if args.install != 'auto' else (
      'yes' if args.platform == 'gpu' else 'no')
  if install == 'no' and 'install' in sections:
    sections.remove('install')
  if not sections:
    raise SystemExit('--sections: nothing left to run')
  outdir = args.outdir or os.environ.get('OUT') or os.path.join(
      ROOT, 'benchmarks', 'results', f'accelerator_{args.platform}')
  precision = args.test_precision if args.test_precision is not None else (
      'highest' if args.platform == 'gpu' else '')
  return {**prof, 'platform': args.platform, 'smoke': args.smoke, 'sections': sections,
          'test_precision': precision,
          'wheels': os.path.join(ROOT, args.wheels) if not os.path.isabs(args.wheels)
          else args.wheels, 'editable': install == 'yes', 'outdir': os.path.abspath(outdir)}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument('--platform', choices=['cpu', 'gpu'], help='required')
  p.add_argument('--smoke', action='store_true', help='tiny sizes (CI smoke test)')
  p.add_argument('--outdir', default='', help='default: $OUT, else '
                 'benchmarks/results/accelerator_<platform>')
  p.add_argument('--sections', default='', help=f'subset of {",".join(SECTIONS)}')
  p.add_argument('--install', choices=['auto', 'yes', 'wheels', 'no'], default='auto',
                 help='yes: missing wheels + editable install of the project; wheels: only the '
                 'wheels (into a temporary --target); auto = yes on gpu, no on cpu')
  p.add_argument('--wheels', default='benchmarks/wheels', help='folder of carried wheels')
  p.add_argument('--seq_lens', default='')
  p.add_argument('--batches', default='')
  p.add_argument('--systems', default='')
  p.add_argument('--runs', default='', help='multi-run group sizes S, e.g. 1,64,8')
  p.add_argument('--cells', default='', help='multi-run cells: din_synthetic,mmoe_synthetic')
  p.add_argument('--multirun_steps', type=int, default=None,
                 help='> 0: train steps per multi-run job (default: the whole cell; smoke 3)')
  p.add_argument('--test_precision', default=None,
                 help="JAX_DEFAULT_MATMUL_PRECISION for the tests section ('' = the framework "
                 "default); default: highest on gpu, '' on cpu")
  p.add_argument('--time_box', action='append', default=[],
                 help='<section>=<seconds>, e.g. --time_box=train=300 (repeatable)')
  p.add_argument('--child', default='', help=argparse.SUPPRESS)
  p.add_argument('--settings', default='', help=argparse.SUPPRESS)
  p.add_argument('--child_out', default='', help=argparse.SUPPRESS)
  p.add_argument('--cell', default='', help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child:
    return _run_child(args)
  if not args.platform:
    p.error('--platform=cpu|gpu is required')
  settings = settings_from_args(args)
  os.makedirs(settings['outdir'], exist_ok=True)
  settings['tmp'] = tempfile.mkdtemp(prefix='accelerator_check_')
  settings['site'] = os.path.join(settings['tmp'], 'site')
  settings['settings_path'] = os.path.join(settings['tmp'], 'settings.json')
  _write_json(settings['settings_path'], settings)
  log_path = os.path.join(settings['outdir'], 'accelerator_check.log')
  open(log_path, 'w').close()
  t0 = time.time()
  results = {'command': ' '.join(['python -m benchmarks.accelerator_check',
                                  *(sys.argv[1:] if argv is None else argv)]),
             'started': time.strftime('%Y-%m-%d %H:%M', time.gmtime()),
             'settings': {k: v for k, v in settings.items() if k not in ('tmp', 'settings_path')},
             'goals_targets': GOALS}
  json_path = os.path.join(settings['outdir'], 'accelerator_check.json')
  md_path = os.path.join(settings['outdir'], 'accelerator_check.md')

  def save():
    results['wall_s'] = round(time.time() - t0, 1)
    results['goals'] = evaluate_goals(results, settings)
    _write_json(json_path, results)
    with open(md_path, 'w') as f:
      f.write(render(results, settings))

  for name in settings['sections']:
    print(f'[accelerator_check] {name} (time box {settings["boxes"][name]:.0f}s)', flush=True)
    ts = time.time()
    try:
      if name == 'install':
        results[name] = section_install(settings, log_path)
      elif name == 'multirun':
        results[name] = section_multirun(settings, log_path)
      else:
        results[name] = run_child_section(settings, name, log_path)
    except Exception as e:  # pylint: disable=broad-except
      results[name] = {'error': f'{type(e).__name__}: {e}'}
    results[name].setdefault('seconds', round(time.time() - ts, 1))
    save()
  md = render(results, settings)
  print(md[md.index('## Goals'):] if '## Goals' in md else md, flush=True)
  print(f'[accelerator_check] wrote {json_path}, {md_path} in {time.time() - t0:.0f}s',
        flush=True)
  shutil.rmtree(settings['tmp'], ignore_errors=True)
  return 0


def _run_child(args) -> int:
  with open(args.settings) as f:
    settings = json.load(f)
  if args.child == 'versions':
    res = child_versions(settings)
  elif args.child == 'tests':
    res = child_tests(settings)
  elif args.child == 'train':
    res = child_train(settings, args.child_out)
  elif args.child == 'multirun_job':
    res = child_multirun_job(settings, args.cell, int(args.runs))
  else:
    raise SystemExit(f'unknown child section {args.child!r}')
  _write_json(args.child_out, res)
  return 0


if __name__ == '__main__':
  sys.exit(main())
