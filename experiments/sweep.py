"""Resumable sweeps shared by every study in experiments/: the cell engine (cells, multi-run
jobs, records, staleness). Reports: experiments/report.py; a study spec: experiments/study.py.

A sweep is a list of `Cell`s (table-row labels + config overrides + seed). Each finished cell
writes `outdir/cells/<id>.json` holding its group, seed, exact overrides, the full config, the
command that reproduces it and the run summary; rerunning the sweep skips finished cells whose
stored config equals the one the cell resolves to now (a changed shared default or base
config file makes them stale: they are moved to `.stale` and rerun), and a cell killed
mid-training resumes from its own workdir's checkpoint if that run had the same config.

Records are checked before they are trusted (`read_record`): one that is not valid JSON, lacks
a key, fails its sha256 checksum or names a workdir that is not its cell's is moved to
`cells/corrupt/` and the cell reruns. A cell's workdir is always `outdir/work/<name>`, derived
from the outdir the sweep runs in (a copied outdir uses its own copies), and nothing outside
the outdir is ever deleted (`_remove_inside`). docs/reliability.md, "Sweep records".
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

from absl import app, flags
import numpy as np

from experiments import report
from seqrec_jax import workdir as workdir_lib
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


def define_runs_per_group_flag(default: int = 64):
  """--runs_per_group: the cap on S, the runs one compiled multi-run job trains at once."""
  return flags.DEFINE_integer(
      'runs_per_group', default, lower_bound=1,
      help='Cells that differ only in the seed and in vectorisable hyper-parameters (train.vary '
      'keys) train as one multi-run job of at most this many runs (memory grows with it); 1 = '
      'every cell alone, as before multi-run training.')


def define_study_flags(seeds: int, seeds_help: str, outdir_default: str, full_help: str,
                       steps_help: str) -> None:
  """The flags every study shares: --seeds, --outdir, --full, --num_steps, --docs,
  --runs_per_group. Call it only when the study runs as a script, so tests can import several
  studies (absl flags are global)."""
  flags.DEFINE_integer('seeds', seeds, seeds_help)
  flags.DEFINE_string('outdir', '', f'Output directory (default {outdir_default}).')
  flags.DEFINE_bool('full', False, full_help)
  flags.DEFINE_integer('num_steps', -1, f'> 0: train steps per cell (else {steps_help}).')
  flags.DEFINE_bool('docs', True, 'After a default run (no --outdir, --num_steps or --full) copy '
                    'its tables and plots to docs/results/ (experiments/publish.py).')
  define_runs_per_group_flag()


def publishes() -> bool:
  """Whether this study run is the default one whose results the docs show."""
  f = flags.FLAGS
  return f.docs and not f.outdir and f.num_steps <= 0 and not f.full


def run_study(config_spec: str, cells: Sequence[Cell], outdir: str, seeds: int,
              runs_per_group: int = 1) -> tuple[list[dict], float]:
  """A study's main loop: checks --seeds, persists compilations (cells that differ only in the
  seed compile to identical programs, the seed is a runtime input) and runs the sweep.
  Returns (records, wall seconds)."""
  if seeds < 1:
    raise app.UsageError(f'--seeds={seeds} must be >= 1 (>= 3 for mean ± std)')
  use_compilation_cache(outdir)
  t0 = time.time()
  records = run_sweep(config_spec, cells, outdir, runs_per_group=runs_per_group)
  return records, time.time() - t0


def vectorisable_keys() -> tuple[str, ...]:
  """Dotted config keys the engine varies per run inside one program (`train.vary`)."""
  from seqrec_jax import multirun  # pylint: disable=g-import-not-at-top
  return tuple(multirun.VARY_KEYS)


@dataclasses.dataclass
class Job:
  """Pending cells that train together: seeds x points (row-major, seeds outer), the order of
  the engine's runs. points: one {vary key: value} per point ([{}] when nothing varies)."""
  cells: list[int]                   # indices into the pending cells, in run order
  seeds: tuple[int, ...]
  points: list[dict[str, Any]]

  @property
  def runs(self) -> int:
    return len(self.seeds) * len(self.points)


def _get(d: dict, dotted: str) -> Any:
  for p in dotted.split('.'):
    if not isinstance(d, dict) or p not in d:
      return None
    d = d[p]
  return d


def _signature(config: dict, vary_keys: Sequence[str]) -> str:
  """What must be equal for cells to share one job: the config without seed and vary keys."""
  c = json.loads(json.dumps(config))
  c.pop('seed', None)
  for k in vary_keys:
    *head, last = k.split('.')
    node = c
    for p in head:
      node = node.get(p, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict) and last in node:
      node[last] = '<vary>'
  return json.dumps(c, sort_keys=True)


def _already_multi_run(config: dict) -> bool:
  t = config.get('train', {})
  return t.get('runs', 1) != 1 or bool(t.get('run_seeds')) or bool(t.get('vary'))


def plan_jobs(seeds: Sequence[int], configs: Sequence[dict], runs_per_group: int,
              vary_keys: Sequence[str] = ()) -> list[Job]:
  """Groups pending cells (their seeds and resolved configs) into multi-run jobs.

  Cells group when their configs are equal but for `seed` and `vary_keys`. Within such a
  class, points (the varied values) with the same seed list form one seeds x points
  rectangle (the engine trains cross products); where several keys vary, one job varies only
  the last of them (sorted), the others fixed, since the engine crosses keys and the points
  need not form a full grid. A rectangle larger than `runs_per_group` is cut into chunks of
  whole seed lists (or of seeds, when one point has more seeds than the cap). A cell that
  already asks for several runs, and a cell whose (seed, point) repeats another's, trains
  alone. Jobs come in the order of their first cell.
  """
  if runs_per_group <= 1 or not configs:
    return [Job([i], (seeds[i],), [{}]) for i in range(len(configs))]
  classes: dict[str, list[int]] = {}
  for i, cfg in enumerate(configs):
    sig = f'alone:{i}' if _already_multi_run(cfg) else _signature(cfg, vary_keys)
    classes.setdefault(sig, []).append(i)
  jobs = []
  for members in classes.values():
    varying = sorted(k for k in vary_keys
                     if len({json.dumps(_get(configs[i], k)) for i in members}) > 1)
    point_of = {i: tuple(json.dumps(_get(configs[i], k)) for k in varying) for i in members}
    by_point: dict[tuple, dict[int, int]] = {}    # point -> seed -> cell (first-seen order)
    for i in members:
      cells = by_point.setdefault(point_of[i], {})
      if seeds[i] in cells:                     # same seed and point twice: runs alone
        jobs.append(Job([i], (seeds[i],), [{}]))
      else:
        cells[seeds[i]] = i
    rects: dict[tuple, list[tuple]] = {}  # (seed list, fixed values) -> points varying last key
    for point, cells in by_point.items():
      rects.setdefault((tuple(cells), point[:-1]), []).append(point)
    for (seed_list, _), points in rects.items():
      if len(seed_list) >= runs_per_group:
        chunks = [(seed_list[j:j + runs_per_group], [p]) for p in points
                  for j in range(0, len(seed_list), runs_per_group)]
      else:
        per = runs_per_group // len(seed_list)
        chunks = [(seed_list, points[j:j + per]) for j in range(0, len(points), per)]
      for chunk_seeds, chunk_points in chunks:
        cell_ids = [by_point[p][s] for s in chunk_seeds for p in chunk_points]
        if len(cell_ids) == 1:
          jobs.append(Job(cell_ids, tuple(chunk_seeds), [{}]))
        else:
          jobs.append(Job(cell_ids, tuple(chunk_seeds), [
              {k: _get(configs[by_point[p][chunk_seeds[0]]], k) for k in varying[-1:]}
              for p in chunk_points] if len(chunk_points) > 1 else [{}]))
  return sorted(jobs, key=lambda j: min(j.cells))


def _same_config(old, want) -> bool:
  """A finished cell's recorded config equals the wanted one, up to keys added to the config
  since (missing from the record and at their defaults: workdir.added_at_old_value)."""
  if old == want:
    return True
  if not isinstance(old, dict):
    return False
  o, w = workdir_lib.flatten(old), workdir_lib.flatten(want)
  return all(workdir_lib.added_at_old_value(k, o, w)
             for k in set(o) | set(w) if o.get(k, _ABSENT) != w.get(k, _ABSENT))


_ABSENT = object()


class SweepError(RuntimeError):
  """A sweep file that cannot be trusted, or a deletion outside the outdir refused."""


RECORD_FIELDS = {'id': str, 'group': dict, 'seed': int, 'overrides': dict, 'config': dict,
                 'summary': dict}


def checksum(rec: dict) -> str:
  """sha256 of the canonical JSON of a record's body (every key but 'checksum')."""
  body = _jsonable({k: v for k, v in rec.items() if k != 'checksum'})
  text = json.dumps(body, sort_keys=True, separators=(',', ':'))
  return 'sha256:' + hashlib.sha256(text.encode()).hexdigest()


def read_record(path: str, cell_id: str) -> tuple[dict | None, str]:
  """(record, '') for a record of cell `cell_id` that can be trusted, else (None, what is
  wrong). A record without a checksum (written before records had one) is trusted."""
  try:
    with open(path) as f:
      rec = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    return None, f'not valid JSON ({e})'
  if not isinstance(rec, dict):
    return None, f'a JSON {type(rec).__name__}, not an object'
  for key, kind in RECORD_FIELDS.items():
    if not isinstance(rec.get(key), kind) or isinstance(rec.get(key), bool):
      return None, (f'{key!r} is missing' if key not in rec else
                    f'{key!r} is {rec[key]!r}, not a {kind.__name__}')
  if 'checksum' in rec and rec['checksum'] != checksum(rec):
    return None, 'its checksum does not match its contents (edited after it was written?)'
  if rec['id'] != cell_id:
    return None, f'it is the record of cell {rec["id"]!r}, not of {cell_id!r}'
  run = rec.get('run')
  if run is not None and (not isinstance(run, int) or isinstance(run, bool)):
    return None, f"'run' is {run!r}, not a run index or null"
  name = _workdir_name(rec)
  if name in ('', '.', '..') or (run is None and name != cell_id):
    return None, (f"'workdir' {rec.get('workdir')!r} is not this cell's workdir "
                  f"(work/{cell_id})" if run is None else
                  f"'workdir' {rec.get('workdir')!r} names no workdir under work/")
  return rec, ''


def _workdir_name(rec: dict) -> str:
  """The folder under outdir/work/ that a record's workdir names (its last part)."""
  wd = rec.get('workdir')
  if wd is None:
    return rec['id']
  return os.path.basename(os.path.normpath(wd)) if isinstance(wd, str) and wd else ''


def _local(rec: dict, outdir: str, log: Callable, where: str) -> dict:
  """The record with its workdir in this outdir: a copied or moved outdir's records name the
  original's workdirs, which this sweep never reads or deletes."""
  local = os.path.join(outdir, 'work', _workdir_name(rec))
  named = rec.get('workdir') or local
  if os.path.realpath(named) != os.path.realpath(local):
    log(f'{where}: the record names workdir {named} (outdir copied or moved?); '
        f'using {local}')
  return dict(rec, workdir=local)


def _move_aside(path: str) -> str:
  """Moves an untrusted record to cells/corrupt/ (never over an earlier one); returns where."""
  folder = os.path.join(os.path.dirname(path), 'corrupt')
  os.makedirs(folder, exist_ok=True)
  dest, n = os.path.join(folder, os.path.basename(path)), 0
  while os.path.exists(dest):
    n += 1
    dest = os.path.join(folder, f'{os.path.basename(path)}.{n}')
  os.replace(path, dest)
  return dest


def _remove_inside(path: str, outdir: str) -> None:
  """Deletes `path` (a cell's or group's workdir) if it is inside the outdir once links are
  resolved; a link is removed itself, never followed. Anything else is refused."""
  if not os.path.lexists(path):
    return
  real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
  root = os.path.realpath(outdir)
  if os.path.commonpath([real, root]) != root or real == root:
    raise SweepError(f'refusing to delete {path}: it is {real}, outside the outdir {root} '
                     '(a linked work/ folder?); delete it yourself to rerun the cell')
  if os.path.islink(path):
    os.unlink(path)
  else:
    shutil.rmtree(path)


def _reusable(path: str, i: int, n: int, cell: Cell, want: dict, outdir: str, log: Callable,
              records: list) -> bool:
  """Whether cell i's record at `path` can stand (then records[i] is set); an untrusted record
  is moved to cells/corrupt/, a stale one to <path>.stale with its single-run workdir deleted."""
  where = f'[{i + 1}/{n}] {cell.id}'
  rec, problem = read_record(path, cell.id)
  if rec is None:
    log(f'{where}: record {path} cannot be trusted: {problem}; moved to {_move_aside(path)}, '
        'rerunning the cell')
    return False
  if 'checksum' not in rec:
    log(f'{where}: warning: record {path} has no checksum (written before records had one); '
        'reused, but an edit to it cannot be detected')
  if _same_config(rec['config'], want):
    records[i] = _local(rec, outdir, log, where)
    log(f'{where}: done earlier, skipped')
    return True
  # The base config changed since (a shared default, a new key): the cell is stale.
  log(f'{where}: finished with another config ({_first_difference(rec["config"], want)}); '
      f'moved to {path}.stale, rerunning')
  os.replace(path, path + '.stale')
  if rec.get('run') is None:     # a single run's own workdir (a group's may hold others)
    _remove_inside(os.path.join(outdir, 'work', cell.id), outdir)
  return False


def run_sweep(config_spec: str, cells: Sequence[Cell], outdir: str,
              train_fn: Callable | None = None, log: Callable = print,
              runs_per_group: int = 1) -> list[dict]:
  """Runs (or loads) every cell; returns their records in order.

  runs_per_group > 1: pending cells that differ only in the seed and in vectorisable keys
  train as multi-run jobs (`plan_jobs`): one `train_fn` call with `train.run_seeds` and
  `train.vary` set, in the workdir `work/<group id>` named by a hash of the group's config.
  Each cell still gets its own `cells/<id>.json` (same format, plus `workdir`, `run` and the
  group's command), so skipping, staleness and the tables are per cell. Only pending cells
  are grouped: a group killed mid-training resumes from its workdir's checkpoint when the same
  cells are pending again; if some of its cells finished meanwhile, the rest form a new group
  that starts afresh.
  """
  if train_fn is None:
    from seqrec_jax.train import train_and_evaluate as train_fn  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.join(outdir, 'cells'), exist_ok=True)
  records: list[dict | None] = [None] * len(cells)
  pending = []                               # (index, cell, overrides, config, json config)
  for i, cell in enumerate(cells):
    path = os.path.join(outdir, 'cells', f'{cell.id}.json')
    overrides = dict(cell.overrides, seed=cell.seed)
    cfg = load_config(config_spec, overrides)
    want = _jsonable(cfg.to_dict())
    if os.path.exists(path) and _reusable(path, i, len(cells), cell, want, outdir, log,
                                          records):
      continue
    pending.append((i, cell, overrides, cfg, want))
  jobs = plan_jobs([p[1].seed for p in pending], [p[4] for p in pending], runs_per_group,
                   vectorisable_keys() if runs_per_group > 1 else ())
  for k, job in enumerate(jobs):
    members = [pending[j] for j in job.cells]
    if job.runs == 1:
      i, cell, overrides, cfg, want = members[0]
      workdir = os.path.join(outdir, 'work', cell.id)
      _claim_workdir(workdir, want, outdir, log)
      t0 = time.time()
      summaries = [train_fn(cfg, workdir)]
      runs, group_command = [None], None
    else:
      i, cell, overrides, _, _ = members[0]
      group_overrides = dict(overrides, seed=job.seeds[0], **{'train.run_seeds': job.seeds})
      if job.points[0]:
        group_overrides['train.vary'] = _vary_value(
            config_spec, {key: [p[key] for p in job.points] for key in job.points[0]})
      gcfg = load_config(config_spec, group_overrides)
      gwant = _jsonable(gcfg.to_dict())
      gid = (f'{cell.id.rsplit("_s", 1)[0][:50]}_x{job.runs}_'
             f'{hashlib.sha1(json.dumps(gwant, sort_keys=True).encode()).hexdigest()[:8]}')
      workdir = os.path.join(outdir, 'work', gid)
      log(f'[job {k + 1}/{len(jobs)}] {gid}: {job.runs} runs as one program '
          f'(seeds {list(job.seeds)}' + (f', {group_overrides["train.vary"]}'
                                          if job.points[0] else '') + ')')
      _claim_workdir(workdir, gwant, outdir, log)
      t0 = time.time()
      result = train_fn(gcfg, workdir)
      summaries = _match_runs(result, job, [m[1] for m in members], workdir)
      runs, group_command = list(range(job.runs)), command(config_spec, group_overrides, workdir)
    wall = time.time() - t0
    for (i, cell, overrides, cfg, _), run, summary in zip(members, runs, summaries):
      path = os.path.join(outdir, 'cells', f'{cell.id}.json')
      rec = {'id': cell.id, 'group': cell.group, 'seed': cell.seed, 'overrides': overrides,
             'command': command(config_spec, overrides, os.path.join(outdir, 'work', cell.id)),
             'config': cfg.to_dict(), 'summary': summary,
             'wall_seconds': round(wall / len(members), 1), 'workdir': workdir, 'run': run}
      if run is not None:            # the command that trained it, and the whole job's time
        rec.update(group_command=group_command, group_wall_seconds=round(wall, 1))
      rec['checksum'] = checksum(rec)
      tmp = path + '.tmp'
      with open(tmp, 'w') as f:
        json.dump(rec, f, indent=1, sort_keys=True, default=str)
      os.replace(tmp, path)     # atomic: a killed write never looks finished
      records[i] = rec
      log(f'[{i + 1}/{len(cells)}] {cell.id}' + (f' (run {run})' if run is not None else '')
          + ': ' + ', '.join(f'{k.split("/")[-1]}={v:.4f}' for k, v in summary.items()
                             if k.startswith('eval/test/') and isinstance(v, float)))
  return records


def _match_runs(result: dict, job: Job, cells: Sequence[Cell], workdir: str) -> list[dict]:
  """The per-run summaries of a group, checked against the runs the job asked for."""
  runs = result.get('runs') if isinstance(result, dict) else None
  if not isinstance(runs, list) or len(runs) != job.runs:
    raise ValueError(f'{workdir}: a group of {job.runs} runs returned '
                     f'{len(runs) if isinstance(runs, list) else "no"} per-run summaries '
                     f'(expected {{"runs": [summary_0, ...]}})')
  out = []
  for r, (summary, cell) in enumerate(zip(runs, cells)):
    point = job.points[r % len(job.points)]
    hp = summary.get('hparams', {})
    if summary.get('seed') != cell.seed or any(not _close(hp.get(k), v)
                                               for k, v in point.items()):
      raise ValueError(f'{workdir}: run {r} has seed {summary.get("seed")} and hparams {hp}; '
                       f'the job expected seed {cell.seed} and {point} (cell {cell.id})')
    out.append({k: v for k, v in summary.items() if k not in ('run', 'hparams')})
  return out


def _vary_value(config_spec: str, vary: dict[str, list]) -> Any:
  """train.vary as the config holds it: a JSON string where the field is a string (so that
  --config.train.vary='{...}' works on the command line), else the mapping."""
  return json.dumps(vary) if isinstance(load_config(config_spec).train.vary, str) else vary


def _close(a, b) -> bool:
  """Equal varied values (numbers or tuples of them, as float32 may have rounded them)."""
  try:
    return bool(np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-6))
  except (TypeError, ValueError):
    return a == b


def cell_metrics(rec: dict, outdir: str) -> Iterator[dict]:
  """The cell's lines of its workdir's metrics.jsonl: those of its run in a group (records
  carry 'run'), or every line of a single run."""
  path = os.path.join(rec.get('workdir') or os.path.join(outdir, 'work', rec['id']),
                      'metrics.jsonl')
  if not os.path.exists(path):
    return
  with open(path) as f:
    for n, line in enumerate(f, 1):
      if line.strip():
        try:
          m = json.loads(line)
        except ValueError as e:
          raise SweepError(f'{path} line {n} is not valid JSON ({e})') from e
        if m.get('run') == rec.get('run'):
          yield m


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


def _claim_workdir(workdir: str, config: dict, outdir: str, log: Callable) -> None:
  """A killed cell resumes from its workdir's checkpoint only if that run had this config. A
  stamp that cannot be read is an error: the checkpoints' config is unknown (written
  atomically, a stamp is never torn by a kill)."""
  stamp = os.path.join(workdir, 'sweep_config.json')
  if os.path.exists(stamp):
    if _same_config(_read_stamp(stamp), config):
      return
    log(f'{workdir}: checkpoints from another config; starting the cell afresh')
    _remove_inside(workdir, outdir)
  os.makedirs(workdir, exist_ok=True)
  with open(stamp + '.tmp', 'w') as f:
    json.dump(config, f, sort_keys=True)
  os.replace(stamp + '.tmp', stamp)


def _read_stamp(stamp: str) -> dict:
  """The config a workdir's sweep_config.json records; an error naming it if unreadable."""
  try:
    with open(stamp) as f:
      config = json.load(f)
    why = '' if isinstance(config, dict) else f'a JSON {type(config).__name__}, not a config'
  except (ValueError, UnicodeDecodeError) as e:
    why = f'not valid JSON ({e})'
  if why:
    raise SweepError(f'{stamp} is {why}: the config of the checkpoints beside it is unknown. '
                     f'Delete {os.path.dirname(stamp)} to rerun the cell afresh, or restore '
                     'the file')
  return config


# The report layer (tables, figures) lives in experiments/report.py; these names stay here for
# the studies not yet ported to experiments/study.py.
aggregate, fmt, write_table = report.aggregate, report.fmt, report.write_table
plot_bars, save_figure = report.plot_bars, report.save_figure
