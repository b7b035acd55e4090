"""Cached stage results keyed by settings hash, and the records a staged study reports.

The funnel and cold-start studies are not sweeps of cells: each dataset runs a chain of stages
(channel lists, trained groups, candidate scores) whose results are cached under
<outdir>/<dataset>_<key>/, key = `key` of the settings and of the data, so a rerun or a killed
run resumes where it stopped (`cached`). Their rows become study records (`record`): one per
(row x seed), the metric means in 'summary' (cells.csv) and the per-request values in an npz
of the stage cache (`save_values`), which the test-set bootstrap reads back (`mean_inputs`:
stats kind 'mean', test users resampled).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import subprocess
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from experiments import publish, study


def key(obj) -> str:
  """10 hex digits of the SHA-1 of obj as sorted JSON (non-JSON values by str)."""
  return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def cached(path: str, fn: Callable[[], dict] | None) -> dict:
  """npz cache: loads path if it exists, else saves fn()'s dict of arrays there (atomically:
  a killed run leaves no partial file)."""
  if os.path.exists(path):
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  if fn is None:
    raise FileNotFoundError(f'stage cache {path} is missing and nothing computes it')
  out = fn()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez(path + '.tmp.npz', **out)
  os.replace(path + '.tmp.npz', path)
  return out


def slug(text: str) -> str:
  """'MMR lambda=0.9' -> 'mmr_lambda_0_9' (record ids, file names)."""
  return re.sub(r'[^a-z0-9]+', '_', text.lower()).strip('_')


def save_values(path: str, users: np.ndarray, values: Mapping[str, np.ndarray],
                **extra: np.ndarray) -> None:
  """Per-request values of one row and seed: users [E] (each request's user), every
  values[metric] [E], extra arrays [E] (e.g. a request's cold-start cell)."""
  users = np.asarray(users)
  for name, v in {**values, **extra}.items():
    if np.shape(v) != users.shape:
      raise ValueError(f'save_values({path}): {name!r} has shape {np.shape(v)}, users '
                       f'{users.shape} (one value per request)')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez(path + '.tmp.npz', users=users, **{f'm:{k}': np.asarray(v, np.float64)
                                              for k, v in values.items()}, **extra)
  os.replace(path + '.tmp.npz', path)


def load_values(path: str) -> dict:
  """{'users': [E], 'metrics': {metric: [E]}, <extra>: [E]} as `save_values` wrote them."""
  with np.load(path, allow_pickle=False) as f:
    out = {k: f[k] for k in f.files if not k.startswith('m:')}
    out['metrics'] = {k[2:]: f[k] for k in f.files if k.startswith('m:')}
  return out


def record(group: Mapping[str, str], seed: int, values: Mapping[str, np.ndarray],
           values_path: str, report_dir: str, summary: Mapping[str, float] | None = None,
           wall_seconds: float = 0.0) -> dict:
  """A study record of one row and seed (report.cell_rows): id from the group and the seed,
  summary (default: the mean of each per-request metric over requests, NaN for none),
  'values' = the npz of its per-request values, relative to report_dir (the folder
  study_main reports to)."""
  rid = '_'.join(slug(str(v)) for v in group.values()) + f'_s{seed}'
  if summary is None:
    summary = {m: mean(v) for m, v in values.items()}
  return {'id': rid, 'seed': seed, 'group': dict(group), 'summary': dict(summary),
          'wall_seconds': float(wall_seconds), 'diverged': False,
          'values': os.path.relpath(values_path, report_dir)}


def mean(v) -> float:
  """The mean of per-request values, NaN for none (no warning)."""
  return float(np.mean(v)) if np.size(v) else math.nan


def check_ids(records: Sequence[dict]) -> None:
  """Record ids must be unique (they name cells.csv lines and cells/<id>.json)."""
  seen: dict[str, dict] = {}
  for r in records:
    if r['id'] in seen:
      raise ValueError(f'two records share the id {r["id"]!r}: groups {seen[r["id"]]["group"]} '
                       f'and {r["group"]} (seed {r["seed"]})')
    seen[r['id']] = r


def write_records(records: Sequence[dict], report_dir: str) -> None:
  """<report_dir>/cells/<id>.json per record, what `python -m experiments.recheck <study>
  --runs=<outdir>` reads to recompute bootstrap.csv."""
  check_ids(records)
  os.makedirs(os.path.join(report_dir, 'cells'), exist_ok=True)
  for r in records:
    with open(os.path.join(report_dir, 'cells', f'{r["id"]}.json'), 'w') as f:
      json.dump(r, f, indent=1, sort_keys=True)


def mean_inputs(rec: dict, metric: str, outdir: str,
                select: Callable[[dict], np.ndarray] | None = None) -> tuple:
  """report.Family.inputs for one record's metric (stats kind 'mean'): ('mean', None, users
  [E], values [E], 'users') from the record's per-request values (outdir: the folder the
  record was reported to); a user's requests are resampled together. select(saved) -> a
  boolean [E] keeps some requests (saved: what `load_values` returns)."""
  path = os.path.join(outdir, rec['values'])
  if not os.path.exists(path):
    raise FileNotFoundError(f'record {rec["id"]}: its per-request values {path} are missing '
                            '(the stage cache of that run)')
  got = load_values(path)
  if metric not in got['metrics']:
    raise KeyError(f'record {rec["id"]}: no per-request {metric!r} in {path} (has '
                   f'{sorted(got["metrics"])})')
  v, users = got['metrics'][metric], got['users']
  if select is not None:
    keep = select(got)
    v, users = v[keep], users[keep]
  return 'mean', None, users, v, 'users'


def report_dataset(spec, records_fn: Callable, meta_fn: Callable, res: dict, outdir: str,
                   seeds, wall: float, load: str = '', publish_to: str | None = None,
                   docs: str | None = None) -> list[str]:
  """Reports one dataset's staged result to <outdir>/<dataset>/ through study.study_main
  (cells.csv, meta.json, bootstrap.csv, the tables and figures; cells/<id>.json for recheck
  --runs). records_fn(res, report_dir) -> records; meta_fn(res, seeds, wall, load) -> meta.json;
  publish_to: a docs/results/ folder (e.g. 'funnel/synthetic') to copy them to."""
  report_dir = os.path.join(outdir, res['dataset'])
  os.makedirs(report_dir, exist_ok=True)
  records = records_fn(res, report_dir)
  write_records(records, report_dir)
  facts = meta_fn(res, seeds, wall, load)
  spec = dataclasses.replace(spec, meta=lambda recs, ds: facts)
  return study.study_main(spec, records, report_dir, res['dataset'], publish_to,
                          docs or publish.DOCS)


def load_average() -> str:
  """The 1, 5 and 15 minute load averages as `uptime` prints them (the reports' footers)."""
  out = subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()
  return out.split('load average:')[-1].strip()


def run_datasets(name: str, datasets: Sequence[str], seeds: int, outdir: str,
                 settings: Mapping[str, object], run_dataset: Callable,
                 report_dataset: Callable, publishes: bool) -> None:
  """The main loop of a staged study (funnel, cold_start): for each dataset,
  run_dataset(ds, seeds, outdir, log, settings[ds]) -> res, then report_dataset(res, outdir,
  seeds, wall, load, publish_to=f'{name}/{ds}' when publishes). Prints the total wall time."""
  if seeds < 1:
    raise ValueError(f'--seeds={seeds} must be >= 1 (>= 3 for seed intervals)')
  t0, seeds = time.time(), list(range(seeds))
  os.makedirs(outdir, exist_ok=True)

  def log(msg):
    print(f'[{time.time() - t0:6.0f} s] {msg}', flush=True)
  for ds in datasets:
    res = run_dataset(ds, seeds, outdir, log, settings[ds])
    report_dataset(res, outdir, seeds, res['seconds'], load_average(),
                   publish_to=f'{name}/{ds}' if publishes else None)
  print(f'{name}: {(time.time() - t0) / 60:.1f} min (load {load_average()})')
