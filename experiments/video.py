"""Short-video ranking study on data with a known answer (data/video.py's oracle).

  bash launch.sh video                     # 5 seeds; writes runs/video, copies to docs/results
  python -m experiments.video --seeds=2 --num_steps=50 --outdir=/tmp/video   # smoke run
  python -m experiments.video --override=data.video.num_users=20000 --outdir=runs/video_20k

--dataset takes video only (FITS): the study scores click, like, watch time and completion
against data/video.py's oracle (expected labels, request groups, durations), which no other
dataset has. --override=key=value (repeatable) reaches every cell (recorded in its overrides,
config and command), e.g. data.video.* changes the generator, and the report's oracle with it.

Cells (experiments/sweep.py; cells differing only in the seed train as one multi-run group):
MMoE and PLE with click, like, watch-time (watch_time kind) and completion-rate heads, each
with and without SENet field gating (model.field_gate) and LHUC gates on the towers from the
user id (model.lhuc), MMoE with SENet's sigmoid excitation, and the three-tower pre-ranker
`prerank` on the same tasks. The data
(one dataset, data seed 0) is fixed; seeds are initialisations and batch orders, so every
comparison is paired by seed (holm_diffs: the study framework's seed intervals with Holm).

Reported (test split):
  models   click / like AUC, watch-time order AUC, Spearman and MAE, completion MAE, and the
           Spearman of the predicted watch time with the oracle's expected watch time; the
           oracle's own row (its expected labels as scores) is the ceiling.
  fusion   per request (20 candidates) the top-5 of each fusion of the baseline MMoE's
           predictions, scored by the oracle utility U = E[click] + 3 E[like] + E[watch] / 30 s
           of the picked items, as a fraction of the best possible top-5's utility.
  prerank  recall of the MMoE ranker's top-5 (weighted-sum fusion) by the pre-ranker's top-5,
           and its oracle utility; latency: benchmarks/prerank_latency.py.
"""
from __future__ import annotations

import os

from absl import app, flags
import numpy as np

from experiments import publish, sweep
from experiments import report as study_report
from seqrec_jax import evaluate, ranking, xla_cpu
from seqrec_jax import metrics as M
from seqrec_jax.configs import define_override_flag, load_config, study_overrides
from seqrec_jax.data import video

FLAGS = flags.FLAGS
CONFIG = 'seqrec_jax/configs/multitask.py:video,mmoe'
TASKS = ('click', 'like', 'watch', 'completion')
WATCH_HEADS = ('soft_label', 'weighted', 'regression')   # data.video.watch_head
K = 5
UTILITY_W = (1.0, 3.0, 1.0 / 30.0)     # click, like, watch seconds
FILES = ('table.md', 'table.csv', 'heads.md', 'heads.csv', 'fusion.md', 'fusion.csv',
         'prerank.md', 'prerank.csv', 'models.png', 'fusion.png')


FITS = {'video': 'data/video.py\'s generator: click, like, watch time, completion and the '
                  'oracle of each'}
NEEDS = ('the video generator\'s tasks (click, like, watch, completion) and its oracle '
         '(expected labels per impression, request groups, durations)')


def define_flags():
  flags.DEFINE_string('dataset', 'video', 'Dataset: ' + ', '.join(
      f'{k} ({v})' for k, v in FITS.items()) + f'; the study needs {NEEDS}.')
  define_override_flag(' data.video.* (the generator) also sets the oracle of the report.')
  sweep.define_study_flags(5, 'Seeds (initialisations) per cell.', 'runs/video',
                           'Unused (the default run is the whole study).', '2 epochs')
  flags.adopt_module_key_flags(sweep)


# Trained to convergence: up to MAX_EPOCHS, evaluated every epoch (218 steps of 512 rows),
# stopped after PATIENCE evaluations without a better valid click AUC; the best state is
# reported (before 2026-12-06: 2 epochs, models at click AUC 0.59 against the oracle's 0.785).
MAX_EPOCHS, PATIENCE, EPOCH_STEPS = 20.0, 2, 218


def base_overrides(num_steps: int = -1) -> dict:
  o = {'data.name': 'video', 'data.tasks': TASKS, 'model.input': 'pool',
       'model.pooling': 'mean', 'model.use_user_embedding': True, 'model.embed_dim': 8,
       'model.experts': 4, 'model.expert_hidden': (32,), 'model.tower_hidden': (16,),
       'model.shared_experts': 2, 'model.specific_experts': 1, 'model.lhuc_inputs': ('user',),
       'data.batch_size': 512, 'data.eval_batch_size': 4096, 'optim.learning_rate': 3e-3,
       'train.num_epochs': MAX_EPOCHS, 'train.eval_every': EPOCH_STEPS,
       'train.patience': PATIENCE, 'train.checkpoint_every': 10**9,
       'train.log_every': 50, 'train.select_task': 'click', 'train.select_metric': 'auc',
       'train.save_predictions': True, 'train.progress': False}
  if num_steps > 0:
    o.update({'train.num_steps': num_steps, 'train.eval_every': max(num_steps // 2, 1),
              'train.log_every': max(num_steps // 5, 1)})
  return o


def extra_overrides(dataset: str, override_flags) -> dict:
  """--override values (typed by CONFIG, data.<other dataset>.* dropped); fails on a dataset
  other than video."""
  return study_overrides('video', dataset, override_flags, CONFIG, FITS, NEEDS)


def make_cells(seeds: int, num_steps: int = -1, extra=None) -> list[sweep.Cell]:
  """extra: the --override values (extra_overrides), applied last in every cell."""
  base, cells = base_overrides(num_steps), []
  for s in range(seeds):
    # Ordered by what the docs read first (a cut-short run has the baselines, the watch heads
    # and SENet): groups train in the order their cells first appear.
    arch_cells = {}
    for arch in ('mmoe', 'ple'):
      for gate in ('none', 'senet'):
        for lhuc in ('none', 'all'):
          arch_cells[arch, gate, lhuc] = sweep.Cell(
              {'model': arch, 'senet': gate == 'senet', 'lhuc': lhuc == 'all'},
              {**base, 'model.name': arch, 'model.field_gate': gate, 'model.lhuc': lhuc}, s)
    cells.append(arch_cells['mmoe', 'none', 'none'])
    # The watch-time head (data/video.py WATCH_HEADS) on the baseline MMoE; soft_label (the
    # course notes' form) is the mmoe cell above.
    for head in WATCH_HEADS[1:]:
      cells.append(sweep.Cell({'model': 'mmoe', 'senet': False, 'lhuc': False, 'watch': head},
                              {**base, 'model.name': 'mmoe', 'data.video.watch_head': head}, s))
    cells += [arch_cells[k] for k in (('mmoe', 'senet', 'none'), ('ple', 'none', 'none'),
                                      ('ple', 'senet', 'none'))]
    # SENet with a sigmoid excitation (gates in (0, 1), never exactly 0), MMoE only.
    cells.append(sweep.Cell({'model': 'mmoe', 'senet': 'sigmoid', 'lhuc': False},
                            {**base, 'model.name': 'mmoe', 'model.field_gate': 'senet',
                             'model.senet_excitation': 'sigmoid', 'model.lhuc': 'none'}, s))
    cells.append(sweep.Cell({'model': 'prerank', 'senet': False, 'lhuc': False},
                            {**base, 'model.name': 'prerank'}, s))
    cells += [arch_cells[k] for k in (('mmoe', 'none', 'all'), ('ple', 'none', 'all'),
                                      ('mmoe', 'senet', 'all'), ('ple', 'senet', 'all'))]
  for c in cells:
    c.overrides.update(extra or {})
  return cells


def _label(g: dict) -> str:
  senet = {True: ' +SENet', 'sigmoid': ' +SENet(sigmoid)'}.get(g['senet'], '')
  watch = f' [watch: {g["watch"]}]' if g.get('watch', 'soft_label') != 'soft_label' else ''
  return g['model'] + senet + (' +LHUC' if g['lhuc'] else '') + watch


def video_config(extra=None):
  """The cells' data.video block (the generator's settings, --override included)."""
  return load_config(CONFIG, {k: v for k, v in (extra or {}).items()
                              if k.startswith('data.video.')}).data.video


def _oracle(vcfg=None):
  return video.oracles(vcfg or video_config())['test']


def model_metrics(preds, labels, orc) -> dict:
  """The models table's metrics of predictions [N, 4] (click, like, watch, completion)."""
  return {'click AUC': M.auc(labels[:, 0], preds[:, 0]),
          'like AUC': M.auc(labels[:, 1], preds[:, 1]),
          'watch order AUC': M.order_auc(labels[:, 2], preds[:, 2]),
          'watch Spearman': M.spearman(labels[:, 2], preds[:, 2]),
          'watch MAE (s)': M.mae(labels[:, 2], preds[:, 2]),
          'completion MAE': M.mae(labels[:, 3], preds[:, 3]),
          'watch Spearman vs oracle': M.spearman(orc['watch'], preds[:, 2])}


def _fusions(p, orc) -> dict[str, np.ndarray]:
  w = UTILITY_W
  watch_adj = ranking.duration_adjust(p[:, 2], orc['duration']) * np.log1p(30.0)
  return {
      'weighted sum': ranking.fuse_weighted_sum(p[:, :3], w),
      'product': ranking.fuse_product(p[:, 0], p[:, 1:3], w[1:]),
      'rank (alpha=1, beta=0)': ranking.fuse_rank(p[:, :3], (1.0, 1.0, 1.0),
                                                  groups=orc['request']),
      'rank (alpha=0.5, beta=1)': ranking.fuse_rank(p[:, :3], (1.0, 1.0, 1.0), 0.5, 1.0,
                                                    groups=orc['request']),
      'duration-adjusted sum': ranking.fuse_weighted_sum(
          np.stack([p[:, 0], p[:, 1], watch_adj], 1), w),
      'click only': p[:, 0],
  }


def utility(orc) -> np.ndarray:
  return UTILITY_W[0] * orc['click'] + UTILITY_W[1] * orc['like'] + UTILITY_W[2] * orc['watch']


def topk_utility(score, orc, k: int = K) -> float:
  """Mean over requests of U(top-k by score) / U(best top-k)."""
  u, req = utility(orc), orc['request']
  order = np.lexsort((-score, req))
  u_s, r_s = u[order], req[order]
  best = np.lexsort((-u, req))
  u_b = u[best]
  start = np.flatnonzero(np.concatenate([[True], r_s[1:] != r_s[:-1]]))
  pos = np.arange(len(u)) - np.repeat(start, np.diff(np.append(start, len(u))))
  top = pos < k
  got = np.add.reduceat(np.where(top, u_s, 0.0), start)
  ideal = np.add.reduceat(np.where(top, u_b, 0.0), start)
  return float(np.mean(got / ideal))


def topk_recall(score_a, score_b, req, k: int = K) -> float:
  """Mean over requests of |top-k(a) & top-k(b)| / k."""
  out = []
  for r in np.unique(req):
    rows = np.flatnonzero(req == r)
    a = set(rows[np.argsort(-score_a[rows], kind='stable')[:k]])
    b = set(rows[np.argsort(-score_b[rows], kind='stable')[:k]])
    out.append(len(a & b) / k)
  return float(np.mean(out))


def _ci(vals) -> str:
  m, lo, hi = M.mean_ci(vals)
  return f'{m:.4f} [{lo:.4f}, {hi:.4f}]'


def holm_diffs(tests) -> list[str]:
  """Paired differences row - baseline over seeds, one per test (row values {seed: v},
  baseline values {seed: v}, higher_is_better), Holm step-down over the whole list: the
  study framework's statistics (experiments/report.compare: seed t-intervals shown at their
  Holm level; runs in a collapsed mode, stats.modes, left out and counted). Returns
  '+d [lo, hi]' per test, ' *' where Holm rejects."""
  cells, pairs = [], []
  for i, (a, b, higher) in enumerate(tests):
    sign = 1.0 if higher else -1.0           # modes read 'v' as higher-is-better
    for side, vals in (('row', a), ('base', b)):
      cells += [{'label': f'{i}/{side}', 'seed': s, 'v': sign * v} for s, v in vals.items()]
    pairs.append((f'{i}/row', f'{i}/base'))
  fam = study_report.Family('diffs', '', pairs, ['v'], lambda c: c['label'])
  out = []
  for (_, _, higher), r in zip(tests, study_report.compare(cells, fam, [])):
    sign = 1.0 if higher else -1.0
    lo, hi = sorted(sign * x for x in r['seed_interval'])
    lost = r['collapsed']['row'] + r['collapsed']['baseline']
    out.append(f'{sign * r["seed"]["mean"]:+.4f} [{lo:+.4f}, {hi:+.4f}]'
               + (' *' if r['seed_resolved'] else '')
               + (f' (collapsed seeds left out: {lost})' if lost else ''))
  return out


HOLM_NOTE = ('Paired over seeds; Holm step-down at alpha 0.05 over every difference of the '
             'table, each interval shown at its Holm level (experiments/stats.py via '
             'report.compare), * = Holm rejects; runs in a collapsed mode (stats.modes) are '
             'left out and named. No test-set bootstrap (the seed intervals only).')


def report(records, outdir: str, wall: float, vcfg=None) -> str:
  """vcfg: the cells' data.video (video_config); default: the config's."""
  vcfg = vcfg or video_config()
  orc = _oracle(vcfg)
  per: dict[str, dict[int, dict]] = {}      # label -> seed -> metrics
  preds_of: dict[str, dict[int, np.ndarray]] = {}
  for r in records:
    wd, run = study_report.cell_workdir(r, outdir)
    got = evaluate.load_predictions(wd, 'test', run)
    if got is None:
      continue
    preds, labels, _ = got
    lab = _label(r['group'])
    per.setdefault(lab, {})[r['seed']] = model_metrics(preds, labels, orc)
    preds_of.setdefault(lab, {})[r['seed']] = preds
  ds = video.load(vcfg)
  y = ds.splits['test'].all()['labels']
  o = np.stack([orc['click'], orc['like'], orc['watch'], orc['completion']], 1)
  oracle_row = model_metrics(o, y[:, :4], orc)
  keys = list(oracle_row)
  lines = ['### Short-video study: models against the oracle (test; mean [95% CI] over seeds)',
           '', '| model | seeds | ' + ' | '.join(keys) + ' | click AUC gap to oracle |',
           '|' + '---|' * (len(keys) + 3)]
  csv = ['model,seeds,' + ','.join(keys) + ',click_auc_gap']
  heads = {lab: by_seed for lab, by_seed in per.items() if '[watch:' in lab}
  for lab, by_seed in per.items():
    if lab in heads:
      continue
    vals = [_ci([by_seed[s][k] for s in by_seed]) for k in keys]
    gap = _ci([oracle_row['click AUC'] - by_seed[s]['click AUC'] for s in by_seed])
    lines.append(f'| {lab} | {len(by_seed)} | ' + ' | '.join(vals) + f' | {gap} |')
    csv.append(f'{lab},{len(by_seed)},' + ','.join(
        f'{np.mean([by_seed[s][k] for s in by_seed]):.6f}' for k in keys) +
        f',{oracle_row["click AUC"] - np.mean([by_seed[s]["click AUC"] for s in by_seed]):.6f}')
  lines.append('| oracle (expected labels) | - | ' + ' | '.join(
      f'{oracle_row[k]:.4f}' for k in keys) + ' | 0 |')
  csv.append('oracle,0,' + ','.join(f'{oracle_row[k]:.6f}' for k in keys) + ',0')
  lines += ['', 'Paired differences against the same architecture without SENet / LHUC '
            '(mean [Holm CI] over seeds):', '',
            '| model | click AUC diff | watch order AUC diff | watch Spearman vs oracle diff |',
            '|---|---|---|---|']
  rows = [lab for lab in per if lab != lab.split(' ')[0] and lab.split(' ')[0] in per
          and lab not in heads]
  dkeys = ('click AUC', 'watch order AUC', 'watch Spearman vs oracle')
  diffs = iter(holm_diffs([({s: v[k] for s, v in per[lab].items()},
                            {s: v[k] for s, v in per[lab.split(' ')[0]].items()}, True)
                           for lab in rows for k in dkeys]))
  for lab in rows:
    lines.append(f'| {lab} vs {lab.split(" ")[0]} | ' + ' | '.join(
        next(diffs) for _ in dkeys) + ' |')
  lines += ['', HOLM_NOTE]
  cell_wall = sum(r.get('wall_seconds', 0.0) for r in records)
  epochs = [r['summary']['steps'] / EPOCH_STEPS for r in records]
  best = [r['summary']['best_step'] / EPOCH_STEPS for r in records]
  lines += ['', f'Cells: {len(records)}; each trained until {PATIENCE} epochs without a better '
            f'valid click AUC (at most {MAX_EPOCHS:g}): {min(epochs):.0f}-{max(epochs):.0f} '
            f'epochs, best state at epoch {min(best):.0f}-{max(best):.0f} (reported); summed '
            f'cell wall time {cell_wall / 60:.1f} min; this invocation {wall / 60:.1f} min. '
            f'Config and command of every cell: `{outdir}/cells/*.json`.']
  os.makedirs(outdir, exist_ok=True)
  with open(os.path.join(outdir, 'table.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(outdir, 'table.csv'), 'w') as f:
    f.write('\n'.join(csv) + '\n')
  text = '\n'.join(lines)
  text += '\n\n' + heads_report(per, preds_of, orc, outdir, vcfg)
  text += '\n\n' + fusion_report(preds_of, orc, outdir, vcfg.candidates)
  text += '\n\n' + prerank_report(preds_of, orc, outdir)
  plot(per, oracle_row, outdir)
  return text


def notes_optimum(orc, vcfg, draws: int = 4000, chunk: int = 2048) -> np.ndarray:
  """[N] what a perfect model of the notes' soft-label loss serves: exp(z*) = E[y] / E[1 - y],
  y = t / (1 + t), t = r D, r ~ Beta(kappa m, kappa (1 - m)) (data/video.py), by Monte Carlo
  with `draws` draws per impression (fixed seed)."""
  rng = np.random.default_rng(0)
  m, d, k = orc['completion'], orc['duration'], float(vcfg.kappa)
  out = np.empty(len(m))
  for lo in range(0, len(m), chunk):
    sl = slice(lo, lo + chunk)
    r = rng.beta(k * m[sl, None], k * (1 - m[sl, None]), (len(m[sl]), draws))
    y = (r * d[sl, None]) / (1 + r * d[sl, None])
    out[sl] = y.mean(1) / (1 - y).mean(1)
  return out


def head_metrics(served, orc) -> dict:
  """The served watch time [N] against the oracle's E[t] [N]: rank correlation and
  calibration."""
  e = orc['watch']
  ratio = served / e
  return {'Spearman vs E[t]': M.spearman(e, served), 'MAE vs E[t] (s)': M.mae(e, served),
          'mean served / mean E[t]': float(served.mean() / e.mean()),
          'median served / E[t]': float(np.median(ratio)),
          'served / E[t], 10th-90th pct': (float(np.quantile(ratio, 0.1)),
                                           float(np.quantile(ratio, 0.9)))}


def heads_report(per, preds_of, orc, outdir: str, vcfg) -> str:
  """The watch-time heads (data.video.watch_head) of the baseline MMoE against E[t]."""
  labs = {'soft_label': 'mmoe'} | {h: f'mmoe [watch: {h}]' for h in WATCH_HEADS[1:]}
  got = {h: {s: head_metrics(p[:, 2], orc) for s, p in preds_of[lab].items()}
         for h, lab in labs.items() if lab in preds_of}
  keys = ('Spearman vs E[t]', 'MAE vs E[t] (s)', 'mean served / mean E[t]',
          'median served / E[t]')
  lines = ['### Watch-time heads of the MMoE baseline: served value against the oracle E[t] '
           '(test; mean [95% CI] over seeds)', '',
           '| head (data.video.watch_head) | loss | served | ' + ' | '.join(keys) +
           ' | served / E[t], 10th-90th pct | click AUC |', '|' + '---|' * (len(keys) + 5)]
  csv = ['head,' + ','.join(keys).replace(' ', '_') + ',click_auc']
  form = {'soft_label': ('BCE(t / (1 + t))', 'exp(z)'),
          'weighted': ('(1 + t) BCE(t / (1 + t))', 'exp(z)'),
          'regression': ('MSE(t)', 'z')}
  for h, by_seed in got.items():
    pct = [np.mean([by_seed[s]['served / E[t], 10th-90th pct'][i] for s in by_seed])
           for i in (0, 1)]
    click = _ci([per[labs[h]][s]['click AUC'] for s in by_seed])
    lines.append(f'| {h} | {form[h][0]} | {form[h][1]} | ' + ' | '.join(
        _ci([by_seed[s][k] for s in by_seed]) for k in keys) +
        f' | {pct[0]:.3f}-{pct[1]:.3f} | {click} |')
    csv.append(f'{h},' + ','.join(f'{np.mean([by_seed[s][k] for s in by_seed]):.6f}'
                                  for k in keys) +
               f',{np.mean([per[labs[h]][s]["click AUC"] for s in by_seed]):.6f}')
  for name, served in (('perfect soft_label model: E[y] / E[1 - y]', notes_optimum(orc, vcfg)),
                       ('perfect weighted or regression model: E[t]', orc['watch'])):
    hm = head_metrics(served, orc)
    lines.append(f'| {name} | - | - | ' + ' | '.join(f'{hm[k]:.4f}' for k in keys) +
                 f' | {hm["served / E[t], 10th-90th pct"][0]:.3f}-'
                 f'{hm["served / E[t], 10th-90th pct"][1]:.3f} | - |')
    csv.append(f'{name.split(":")[0]},' + ','.join(f'{hm[k]:.6f}' for k in keys) + ',')
  base = got.get('soft_label', {})
  lines += ['', 'Paired differences against the soft_label head (mean [Holm CI] over seeds):',
            '', '| head | Spearman vs E[t] diff | MAE vs E[t] diff (s) | '
            'mean served / mean E[t] diff | click AUC diff |', '|---|---|---|---|---|']
  others = [h for h in got if h != 'soft_label'] if base else []
  tests = []
  for h in others:
    tests += [({s: v[k] for s, v in got[h].items()}, {s: v[k] for s, v in base.items()},
               k != 'MAE vs E[t] (s)')
              for k in ('Spearman vs E[t]', 'MAE vs E[t] (s)', 'mean served / mean E[t]')]
    tests.append(({s: per[labs[h]][s]['click AUC'] for s in got[h]},
                  {s: per['mmoe'][s]['click AUC'] for s in base}, True))
  diffs = iter(holm_diffs(tests))
  for h in others:
    lines.append(f'| {h} vs soft_label | ' + ' | '.join(next(diffs) for _ in range(4)) + ' |')
  lines += ['', HOLM_NOTE]
  with open(os.path.join(outdir, 'heads.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(outdir, 'heads.csv'), 'w') as f:
    f.write('\n'.join(csv) + '\n')
  return '\n'.join(lines)


def fusion_report(preds_of, orc, outdir: str, candidates: int | None = None) -> str:
  base = preds_of.get('mmoe', {})
  res: dict[str, dict[int, float]] = {}
  for s, p in base.items():
    for name, score in _fusions(p, orc).items():
      res.setdefault(name, {})[s] = topk_utility(score, orc)
  rng = np.random.default_rng(0)
  rand = topk_utility(rng.random(len(orc['request'])), orc)
  lines = [f'### Fusion of the MMoE baseline\'s predictions: oracle utility of the top-{K} '
           f'of {candidates or video_config().candidates} candidates (fraction of the best '
           'top-k; mean [95% CI] over seeds)', '',
           '| fusion | utility | diff vs weighted sum (paired, Holm CI) |', '|---|---|---|']
  csv = ['fusion,utility_mean']
  ws = res.get('weighted sum', {})
  diffs = iter(holm_diffs([(by_seed, ws, True) for name, by_seed in res.items()
                           if name != 'weighted sum']))
  for name, by_seed in res.items():
    d = '-' if name == 'weighted sum' else next(diffs)
    lines.append(f'| {name} | {_ci(list(by_seed.values()))} | {d} |')
    csv.append(f'{name},{np.mean(list(by_seed.values())):.6f}')
  lines.append(f'| random order | {rand:.4f} | - |')
  lines.append('| oracle utility | 1.0000 | - |')
  lines += ['', HOLM_NOTE]
  csv.append(f'random,{rand:.6f}')
  with open(os.path.join(outdir, 'fusion.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(outdir, 'fusion.csv'), 'w') as f:
    f.write('\n'.join(csv) + '\n')
  _bar(res, rand, outdir)
  return '\n'.join(lines)


def prerank_report(preds_of, orc, outdir: str) -> str:
  rank, pre = preds_of.get('mmoe', {}), preds_of.get('prerank', {})
  rec, util = {}, {}
  for s in sorted(set(rank) & set(pre)):
    a = ranking.fuse_weighted_sum(rank[s][:, :3], UTILITY_W)
    b = ranking.fuse_weighted_sum(pre[s][:, :3], UTILITY_W)
    rec[s], util[s] = topk_recall(b, a, orc['request']), topk_utility(b, orc)
  lines = [f'### Pre-ranker: recall of the MMoE ranker\'s top-{K} and oracle utility', '',
           '| quantity | mean [95% CI] over seeds |', '|---|---|']
  if rec:
    lines += [f'| recall@{K} of the ranker\'s top-{K} | {_ci(list(rec.values()))} |',
              f'| oracle utility of its top-{K} | {_ci(list(util.values()))} |']
  with open(os.path.join(outdir, 'prerank.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(outdir, 'prerank.csv'), 'w') as f:
    f.write('seed,recall,utility\n' + ''.join(f'{s},{rec[s]:.6f},{util[s]:.6f}\n' for s in rec))
  return '\n'.join(lines)


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def plot(per, oracle_row, outdir: str) -> None:
  plt = _plt()
  keys = ('click AUC', 'watch order AUC', 'watch Spearman vs oracle')
  fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6))
  labs = list(per)
  for ax, k in zip(axes, keys):
    ms = [M.mean_ci([per[lab][s][k] for s in per[lab]]) for lab in labs]
    ax.barh(range(len(labs)), [m[0] for m in ms],
            xerr=[[m[0] - m[1] for m in ms], [m[2] - m[0] for m in ms]], capsize=2)
    ax.axvline(oracle_row[k], color='k', ls='--', lw=1, label='oracle')
    ax.set_yticks(range(len(labs)), labs if ax is axes[0] else [''] * len(labs), fontsize=8)
    lo = min(m[1] for m in ms if np.isfinite(m[1])) if ms else 0.5
    ax.set_xlim(lo - 0.02, max(oracle_row[k], max(m[2] for m in ms)) + 0.01)
    ax.set_title(k, fontsize=9)
  axes[0].legend(fontsize=7)
  sweep.save_figure(fig, os.path.join(outdir, 'models.png'))


def _bar(res, rand, outdir: str) -> None:
  plt = _plt()
  names = list(res)
  ms = [M.mean_ci(list(res[n].values())) for n in names]
  fig, ax = plt.subplots(figsize=(6, 3.2))
  ax.barh(range(len(names)), [m[0] for m in ms],
          xerr=[[m[0] - m[1] for m in ms], [m[2] - m[0] for m in ms]], capsize=2)
  ax.axvline(rand, color='gray', ls=':', label='random order')
  ax.set_yticks(range(len(names)), names, fontsize=8)
  ax.set_xlabel(f'oracle utility of the top-{K} (fraction of the best)')
  ax.legend(fontsize=7)
  sweep.save_figure(fig, os.path.join(outdir, 'fusion.png'))


def main(argv):
  del argv
  xla_cpu.apply_defaults()
  extra = extra_overrides(FLAGS.dataset, FLAGS.override)
  outdir = FLAGS.outdir or os.path.join('runs', 'video')
  records, wall = sweep.run_study(CONFIG, make_cells(FLAGS.seeds, FLAGS.num_steps, extra),
                                  outdir, FLAGS.seeds, FLAGS.runs_per_group)
  print(report(records, outdir, wall, video_config(extra)))
  print(f'wrote {outdir}/' + ', '.join(FILES) + f' in {wall / 60:.1f} min')
  if sweep.publishes() and not extra:
    print('copied to', publish.publish(outdir, 'video', FILES))


if __name__ == '__main__':
  define_flags()
  app.run(main)
