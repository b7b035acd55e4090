"""Resumable sweeps shared by every study in experiments/.

A sweep is a list of `Cell`s (table-row labels + config overrides + seed). Each finished cell
writes `outdir/cells/<id>.json` holding its group, seed, exact overrides, the full config, the
command that reproduces it and the run summary; rerunning the sweep skips finished cells whose
stored config equals the one the cell resolves to now (a changed shared default or base
config file makes them stale: they are moved to `.stale` and rerun), and a cell killed
mid-training resumes from its own workdir's checkpoint if that run had the same config.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import shlex
import shutil
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

from absl import app, flags
import numpy as np

from seqrec_jax.configs import load_config


@dataclasses.dataclass
class Cell:
  group: dict[str, Any]              # row labels, e.g. {'model': 'din', 'activation': 'dice'}
  overrides: dict[str, Any]          # dotted config paths -> values
  seed: int = 0

  @property
  def id(self) -> str:
    label = '_'.join(f'{v}' for v in self.group.values()).replace('/', '-').replace(' ', '')
    h = hashlib.sha1(json.dumps([self.group, self.overrides], sort_keys=True,
                                default=str).encode()).hexdigest()[:8]
    return f'{label[:60]}_s{self.seed}_{h}'


def _flag_value(v: Any) -> str:
  if isinstance(v, (tuple, list)):
    return '(' + ','.join(repr(x) if isinstance(x, str) else str(x) for x in v) + (
        ',)' if len(v) == 1 else ')')
  return str(v)


def command(config_spec: str, overrides: Mapping[str, Any], workdir: str) -> str:
  args = ['python', '-m', 'seqrec_jax.main', f'--config={config_spec}', f'--workdir={workdir}']
  args += [f'--config.{k}={_flag_value(v)}' for k, v in overrides.items()]
  return ' '.join(shlex.quote(a) for a in args)


def use_compilation_cache(outdir: str, min_compile_secs: float = 0.2) -> None:
  """Persists XLA compilations under outdir/jax_cache: cells that differ only in seed reuse
  them (a rerun or the next seed skips most compile time)."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_compilation_cache_dir', os.path.join(outdir, 'jax_cache'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', min_compile_secs)


def define_study_flags(seeds: int, seeds_help: str, outdir_default: str, full_help: str,
                       steps_help: str) -> None:
  """The flags every study shares: --seeds, --outdir, --full, --num_steps, --docs. Call it
  only when the study runs as a script, so tests can import several studies (absl flags are
  global)."""
  flags.DEFINE_integer('seeds', seeds, seeds_help)
  flags.DEFINE_string('outdir', '', f'Output directory (default {outdir_default}).')
  flags.DEFINE_bool('full', False, full_help)
  flags.DEFINE_integer('num_steps', -1, f'> 0: train steps per cell (else {steps_help}).')
  flags.DEFINE_bool('docs', True, 'After a default run (no --outdir, --num_steps or --full) copy '
                    'its tables and plots to docs/results/ (experiments/publish.py).')


def publishes() -> bool:
  """Whether this study run is the default one whose results the docs show."""
  f = flags.FLAGS
  return f.docs and not f.outdir and f.num_steps <= 0 and not f.full


def run_study(config_spec: str, cells: Sequence[Cell], outdir: str,
              seeds: int) -> tuple[list[dict], float]:
  """A study's main loop: checks --seeds, persists compilations (cells that differ only in the
  seed compile to identical programs, the seed is a runtime input) and runs the sweep.
  Returns (records, wall seconds)."""
  if seeds < 1:
    raise app.UsageError(f'--seeds={seeds} must be >= 1 (>= 3 for mean ± std)')
  use_compilation_cache(outdir)
  t0 = time.time()
  records = run_sweep(config_spec, cells, outdir)
  return records, time.time() - t0


def run_sweep(config_spec: str, cells: Sequence[Cell], outdir: str,
              train_fn: Callable | None = None, log: Callable = print) -> list[dict]:
  """Runs (or loads) every cell; returns their records in order."""
  if train_fn is None:
    from seqrec_jax.train import train_and_evaluate as train_fn  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.join(outdir, 'cells'), exist_ok=True)
  records = []
  for i, cell in enumerate(cells):
    path = os.path.join(outdir, 'cells', f'{cell.id}.json')
    overrides = dict(cell.overrides, seed=cell.seed)
    cfg = load_config(config_spec, overrides)
    want = _jsonable(cfg.to_dict())
    workdir = os.path.join(outdir, 'work', cell.id)
    if os.path.exists(path):
      with open(path) as f:
        rec = json.load(f)
      if rec.get('config') == want:
        records.append(rec)
        log(f'[{i + 1}/{len(cells)}] {cell.id}: done earlier, skipped')
        continue
      # The base config changed since (a shared default, a new key): the cell is stale.
      log(f'[{i + 1}/{len(cells)}] {cell.id}: finished with another config '
          f'({_first_difference(rec.get("config"), want)}); moved to {path}.stale, rerunning')
      os.replace(path, path + '.stale')
      shutil.rmtree(workdir, ignore_errors=True)
    _claim_workdir(workdir, want, log)
    t0 = time.time()
    summary = train_fn(cfg, workdir)
    rec = {'id': cell.id, 'group': cell.group, 'seed': cell.seed, 'overrides': overrides,
           'command': command(config_spec, overrides, workdir), 'config': cfg.to_dict(),
           'summary': summary, 'wall_seconds': round(time.time() - t0, 1)}
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(rec, f, indent=1, sort_keys=True, default=str)
    os.replace(tmp, path)     # atomic: a killed write never looks finished
    records.append(rec)
    log(f'[{i + 1}/{len(cells)}] {cell.id}: ' + ', '.join(
        f'{k.split("/")[-1]}={v:.4f}' for k, v in summary.items()
        if k.startswith('eval/test/') and isinstance(v, float)))
  return records


def _jsonable(d):
  """The config as its cell record stores it (tuples -> lists, unknown types -> str)."""
  return json.loads(json.dumps(d, sort_keys=True, default=str))


def _first_difference(a, b, prefix: str = '') -> str:
  """'key: old -> new' for the first differing leaf of two nested dicts."""
  if isinstance(a, dict) and isinstance(b, dict):
    for k in sorted(set(a) | set(b)):
      if a.get(k, '<missing>') != b.get(k, '<missing>'):
        return _first_difference(a.get(k, '<missing>'), b.get(k, '<missing>'),
                                 f'{prefix}{k}.')
    return 'no difference'
  return f'{prefix[:-1]}: {a!r} -> {b!r}'


def _claim_workdir(workdir: str, config: dict, log: Callable) -> None:
  """A killed cell resumes from its workdir's checkpoint only if that run had this config."""
  stamp = os.path.join(workdir, 'sweep_config.json')
  if os.path.exists(stamp):
    with open(stamp) as f:
      if json.load(f) == config:
        return
    log(f'{workdir}: checkpoints from another config; starting the cell afresh')
    shutil.rmtree(workdir)
  os.makedirs(workdir, exist_ok=True)
  with open(stamp, 'w') as f:
    json.dump(config, f, sort_keys=True)


def group_key(rec) -> tuple:
  return tuple(rec['group'].items())


def aggregate(records: Iterable[dict], metrics: Sequence[str]) -> list[dict]:
  """Groups records by `group`; returns rows with mean/std/n of each metric, in first-seen order."""
  groups: dict[tuple, list[dict]] = {}
  for r in records:
    groups.setdefault(group_key(r), []).append(r)
  rows = []
  for key, recs in groups.items():
    row = dict(key)
    row['n_seeds'] = len(recs)
    for m in metrics:
      vals = np.array([r['summary'].get(m, float('nan')) for r in recs], dtype=np.float64)
      vals = vals[np.isfinite(vals)] if np.isfinite(vals).any() else vals
      row[m] = float(vals.mean()) if len(vals) else float('nan')
      row[m + '_std'] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    row['ids'] = [r['id'] for r in recs]
    rows.append(row)
  return rows


def fmt(mean: float, std: float, digits: int = 4) -> str:
  if mean is None or (isinstance(mean, float) and math.isnan(mean)):
    return 'n/a'
  return f'{mean:.{digits}f} ± {std:.{digits}f}'


def write_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]], outdir: str,
                title: str = '', notes: str = '', basename: str = 'table') -> str:
  """columns: (header, key) pairs; a key with a '_std' sibling is shown as mean ± std.

  Writes <basename>.md and <basename>.csv (mean and std in separate CSV columns); returns the
  Markdown.
  """
  md = [f'### {title}', ''] if title else []
  md.append('| ' + ' | '.join(h for h, _ in columns) + ' |')
  md.append('|' + '|'.join('---' for _ in columns) + '|')
  for r in rows:
    cells = []
    for _, k in columns:
      v = r.get(k)
      if k + '_std' in r:
        cells.append(fmt(v, r[k + '_std']))
      elif isinstance(v, float):
        cells.append(f'{v:,.0f}' if abs(v) >= 1000 else f'{v:.1f}' if abs(v) >= 10
                     else f'{v:.4f}')
      else:
        cells.append(str(v))
    md.append('| ' + ' | '.join(cells) + ' |')
  if notes:
    md += ['', notes]
  text = '\n'.join(md) + '\n'
  os.makedirs(outdir, exist_ok=True)
  with open(os.path.join(outdir, f'{basename}.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(outdir, f'{basename}.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    header = []
    for h, k in columns:
      header += [h, h + ' std'] if rows and k + '_std' in rows[0] else [h]
    w.writerow(header)
    for r in rows:
      line = []
      for _, k in columns:
        line += [r.get(k), r.get(k + '_std')] if k + '_std' in r else [r.get(k)]
      w.writerow(line)
  return text


def plot_bars(rows: Sequence[dict], label_keys: Sequence[str], metric: str, path: str,
              title: str = '', reference: dict[str, float] | None = None) -> None:
  """Horizontal bar chart of mean ± std of `metric` per row; dashed lines for references."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  labels = [' / '.join(str(r[k]) for k in label_keys) for r in rows]
  means = [r[metric] for r in rows]
  stds = [r.get(metric + '_std', 0.0) for r in rows]
  fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
  ax.barh(range(len(rows)), means, xerr=stds, color='tab:blue', alpha=0.8, capsize=3)
  ax.set_yticks(range(len(rows)), labels, fontsize=8)
  ax.invert_yaxis()
  finite = [m for m in means if np.isfinite(m)]
  lo = min(finite + list((reference or {}).values())) if finite else 0
  hi = max(finite + list((reference or {}).values())) if finite else 1
  pad = max((hi - lo) * 0.15, 0.005)
  ax.set_xlim(lo - pad, hi + pad)
  for name, v in (reference or {}).items():
    ax.axvline(v, ls='--', color='tab:red')
    ax.text(v, -0.6, name, color='tab:red', fontsize=8, ha='center')
  ax.set_xlabel(metric)
  ax.set_title(title, fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
