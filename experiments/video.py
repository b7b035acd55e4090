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
comparison is paired by seed.

A study spec (experiments/study.py; `python -m experiments.recheck video` recomputes the
published tables). Every per-cell value is computed from the cell's saved test predictions
and the oracle (enrich) into cells.csv; the oracle's own rows go to meta.json. Written to
--outdir (a default run copies them to docs/results/video/), all on the test split:
  table     click / like AUC, watch-time order AUC, Spearman and MAE, completion MAE, and the
            Spearman of the predicted watch time with the oracle's expected watch time; the
            oracle's own row (its expected labels as scores) is the ceiling.
  heads     the watch-time heads (data.video.watch_head) of the MMoE against E[t], beside
            what a perfect model of each loss serves.
  fusion    per request (20 candidates) the top-5 of each fusion of the baseline MMoE's
            predictions, scored by the oracle utility U = E[click] + 3 E[like] + E[watch] / 30 s
            of the picked items, as a fraction of the best possible top-5's utility.
  prerank   recall of the MMoE ranker's top-5 (weighted-sum fusion) by the pre-ranker's top-5,
            and its oracle utility; latency: benchmarks/prerank_latency.py (its page,
            prerank_latency.md, sits in the same folder and is not the study's).
  resolved  each SENet / LHUC variant vs its architecture (click and like AUC),
  resolved_heads  each watch head vs soft_label (watch MSE against the observed watch time,
            minimised by E[t]; click AUC),
  resolved_heads_et  the same pairs on Spearman and MAE against the oracle E[t] (stats kinds
            'spearman' and 'mean' over test rows), and
  resolved_fusion  each fusion vs the weighted sum on the top-5 utility (kind 'mean' over
            test requests; one pseudo-row per fusion of each mmoe cell): paired seed
            intervals and the test-set bootstrap, Holm within each table. The models table's
            watch order AUC, Spearman and MAE and the pre-ranker's recall and utility have no
            comparison: mean ± std only.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os

from absl import app, flags
import ml_collections
import numpy as np

from experiments import publish, study, sweep
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


def video_config(extra=None):
  """The cells' data.video block (the generator's settings, --override included)."""
  return load_config(CONFIG, {k: v for k, v in (extra or {}).items()
                              if k.startswith('data.video.')}).data.video


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
  """{fusion: scores [N]} of predictions p [N, 4], every one of FUSIONS."""
  return {f: _fusion(f, p, orc) for f in FUSIONS}


def _fusion(name: str, p, orc) -> np.ndarray:
  """The scores [N] of one fusion of predictions p [N, 4]."""
  w = UTILITY_W
  if name == 'weighted sum':
    return ranking.fuse_weighted_sum(p[:, :3], w)
  if name == 'product':
    return ranking.fuse_product(p[:, 0], p[:, 1:3], w[1:])
  if name == 'rank (alpha=1, beta=0)':
    return ranking.fuse_rank(p[:, :3], (1.0, 1.0, 1.0), groups=orc['request'])
  if name == 'rank (alpha=0.5, beta=1)':
    return ranking.fuse_rank(p[:, :3], (1.0, 1.0, 1.0), 0.5, 1.0, groups=orc['request'])
  if name == 'duration-adjusted sum':
    watch_adj = ranking.duration_adjust(p[:, 2], orc['duration']) * np.log1p(30.0)
    return ranking.fuse_weighted_sum(np.stack([p[:, 0], p[:, 1], watch_adj], 1), w)
  if name == 'click only':
    return p[:, 0]
  raise ValueError(f'video: unknown fusion {name!r} (one of {FUSIONS})')


def utility(orc) -> np.ndarray:
  return UTILITY_W[0] * orc['click'] + UTILITY_W[1] * orc['like'] + UTILITY_W[2] * orc['watch']


def topk_utility(score, orc, k: int = K) -> float:
  """Mean over requests of U(top-k by score) / U(best top-k)."""
  return float(np.mean(topk_utility_per_request(score, orc, k)[1]))


def topk_utility_per_request(score, orc, k: int = K) -> tuple[np.ndarray, np.ndarray]:
  """(request ids [R], ascending; U(top-k by score) / U(best top-k) of each [R])."""
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
  return r_s[start], got / ideal


def topk_recall(score_a, score_b, req, k: int = K) -> float:
  """Mean over requests of |top-k(a) & top-k(b)| / k."""
  out = []
  for r in np.unique(req):
    rows = np.flatnonzero(req == r)
    a = set(rows[np.argsort(-score_a[rows], kind='stable')[:k]])
    b = set(rows[np.argsort(-score_b[rows], kind='stable')[:k]])
    out.append(len(a & b) / k)
  return float(np.mean(out))


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


# ---- The study spec (experiments/study.py): cells.csv columns, families, tables. ----

# Table header -> cells.csv column; every cell's values come from its saved test predictions
# and the oracle (enrich), so render needs cells.csv, meta.json and bootstrap.csv only.
MODEL_COLS = {'click AUC': 'eval/test/click/auc', 'like AUC': 'eval/test/like/auc',
              'watch order AUC': 'eval/test/watch/order_auc',
              'watch Spearman': 'eval/test/watch/spearman',
              'watch MAE (s)': 'eval/test/watch/mae', 'completion MAE': 'eval/test/completion/mae',
              'watch Spearman vs oracle': 'watch/spearman_vs_oracle'}
HEAD_COLS = {'Spearman vs E[t]': 'head/spearman_vs_et', 'MAE vs E[t] (s)': 'head/mae_vs_et',
             'mean served / mean E[t]': 'head/mean_ratio',
             'median served / E[t]': 'head/median_ratio'}
RATIO_PCT = ('head/ratio_p10', 'head/ratio_p90')
FUSIONS = ('weighted sum', 'product', 'rank (alpha=1, beta=0)', 'rank (alpha=0.5, beta=1)',
           'duration-adjusted sum', 'click only')
PRERANK_COLS = {f'recall@{K} of the ranker\'s top-{K}': 'prerank/recall',
                f'oracle utility of its top-{K}': 'prerank/utility'}
# The comparisons' metrics. watch MSE against the observed watch time is minimised by E[t],
# so it scores a served watch time's ranking and calibration together; the heads' Spearman
# and MAE against E[t] and the fusions' top-K utility are bootstrapped through Family.inputs
# (stats kinds 'spearman' and 'mean'), the fusions as pseudo-rows of the mmoe cells
# (Family.expand: FUSION_UTILITY holds each fusion's 'fusion/<name>' value).
WATCH_MSE = 'eval/test/watch/mse'
HEAD_VS_ET = ('head/spearman_vs_et', 'head/mae_vs_et')
FUSION_UTILITY = f'fusion/utility@{K}'
METRICS = (tuple(MODEL_COLS.values()) + (WATCH_MSE,) + tuple(HEAD_COLS.values()) + RATIO_PCT
           + tuple(f'fusion/{f}' for f in FUSIONS) + tuple(PRERANK_COLS.values())
           + ('steps', 'best_step'))
HEAD_FORM = {'soft_label': ('BCE(t / (1 + t))', 'exp(z)'),
             'weighted': ('(1 + t) BCE(t / (1 + t))', 'exp(z)'), 'regression': ('MSE(t)', 'z')}
FROM_OTHERS = ('prerank_latency.md',)   # benchmarks/prerank_latency.py writes it, not the study


def label(c: dict) -> str:
  """A cell's row label from its group (a cells.csv row or a record's group)."""
  watch = c.get('watch')
  watch = watch if isinstance(watch, str) else 'soft_label'
  senet = {True: ' +SENet', 'sigmoid': ' +SENet(sigmoid)'}.get(c['senet'], '')
  return (c['model'] + senet + (' +LHUC' if c['lhuc'] else '')
          + (f' [watch: {watch}]' if watch != 'soft_label' else ''))


def _record_oracle(rec: dict):
  """(test oracle, data.video config) of the generator a record trained on."""
  vcfg = ml_collections.ConfigDict(rec['config']['data']['video'])
  return _oracle_of(json.dumps({k: vcfg[k] for k in video.GENERATOR_KEYS}, sort_keys=True)), vcfg


@functools.lru_cache(maxsize=2)
def _oracle_of(generator: str):
  return video.oracles(json.loads(generator))['test']


def enrich(records, outdir: str) -> None:
  """summary[METRICS] of every cell from its saved test predictions and the oracle: the model
  metrics and the served watch time against E[t] (every cell), the fusions' top-K utility (the
  MMoE baseline), the pre-ranker's recall of the same seed's MMoE top-K and its utility."""
  preds = {}
  for r in records:
    wd, run = study_report.cell_workdir(r, outdir)
    got = evaluate.load_predictions(wd, 'test', run)
    if got is None:
      raise FileNotFoundError(f'video: cell {r["id"]} saved no test predictions in {wd}')
    p, y, _ = got
    orc, _ = _record_oracle(r)
    preds[label(r['group']), r['seed']] = p
    s = r['summary']
    s.update({MODEL_COLS[k]: v for k, v in model_metrics(p, y, orc).items()})
    s[WATCH_MSE] = M.mse(y[:, 2], p[:, 2])
    hm = head_metrics(p[:, 2], orc)
    s.update({HEAD_COLS[k]: hm[k] for k in HEAD_COLS})
    s.update(zip(RATIO_PCT, hm['served / E[t], 10th-90th pct']))
    if label(r['group']) == 'mmoe':
      s.update({f'fusion/{f}': topk_utility(v, orc) for f, v in _fusions(p, orc).items()})
  for r in records:
    ranker = preds.get(('mmoe', r['seed']))
    if label(r['group']) == 'prerank' and ranker is not None:
      orc, _ = _record_oracle(r)
      a = ranking.fuse_weighted_sum(ranker[:, :3], UTILITY_W)
      b = ranking.fuse_weighted_sum(preds['prerank', r['seed']][:, :3], UTILITY_W)
      r['summary'].update({'prerank/recall': topk_recall(b, a, orc['request']),
                           'prerank/utility': topk_utility(b, orc)})


def oracle_facts(records) -> dict:
  """meta.json: the oracle's own rows (its expected labels as scores, the perfect heads, a
  random order), which no cell holds."""
  orc, vcfg = _record_oracle(records[0])
  y = video.load(vcfg).splits['test'].all()['labels']
  o = np.stack([orc['click'], orc['like'], orc['watch'], orc['completion']], 1)
  heads = {}
  for name, served in (('perfect soft_label model: E[y] / E[1 - y]', notes_optimum(orc, vcfg)),
                       ('perfect weighted or regression model: E[t]', orc['watch'])):
    hm = head_metrics(served, orc)
    heads[name] = {HEAD_COLS.get(k, k): v for k, v in hm.items()
                   if k in HEAD_COLS} | dict(zip(RATIO_PCT, hm['served / E[t], 10th-90th pct']))
  rng = np.random.default_rng(0)
  return {'oracle': {MODEL_COLS[k]: v for k, v in model_metrics(o, y[:, :4], orc).items()},
          'perfect_heads': heads, 'candidates': int(vcfg.candidates),
          'random_utility': topk_utility(rng.random(len(orc['request'])), orc)}


def _variants(labels) -> list[tuple[str, str]]:
  """(variant, its architecture) pairs: SENet / LHUC rows against the plain MMoE / PLE."""
  return [(lab, lab.split(' ')[0]) for lab in labels
          if lab != lab.split(' ')[0] and lab.split(' ')[0] in labels and '[watch:' not in lab]


def _test_preds(rec: dict, outdir: str):
  """A record's saved test predictions [N, 4] (None when it saved none)."""
  wd, run = study_report.cell_workdir(rec, outdir)
  got = evaluate.load_predictions(wd, 'test', run)
  return None if got is None else got[0]


def head_inputs(row, rec, metric: str, outdir: str):
  """Family.inputs of resolved_heads_et: the served watch time p[:, 2] against the oracle
  E[t] of the record's generator; Spearman (kind 'spearman', rows) or MAE (kind 'mean' of
  |served - E[t]| per row)."""
  del row
  p = _test_preds(rec, outdir)
  if p is None:
    return None
  e = _record_oracle(rec)[0]['watch']
  if len(p) != len(e):
    raise ValueError(f'video: cell {rec["id"]} saved {len(p)} test predictions, its '
                     f'generator\'s oracle has {len(e)} test rows')
  if metric == 'head/spearman_vs_et':
    return 'spearman', e, np.arange(len(e)), p[:, 2]
  if metric == 'head/mae_vs_et':
    return 'mean', None, np.arange(len(e)), np.abs(p[:, 2] - e), 'rows'
  raise ValueError(f'video: no bootstrap inputs for heads metric {metric!r} (one of '
                   f'{HEAD_VS_ET})')


def fusion_rows(cells) -> list[dict]:
  """Family.expand of resolved_fusion: one row per fusion of each mmoe cell (its id and
  seed), labelled by the fusion, its top-K utility under FUSION_UTILITY."""
  return [dict(c, fusion=f, **{FUSION_UTILITY: c[f'fusion/{f}']})
          for c in cells if label(c) == 'mmoe' for f in FUSIONS]


def fusion_inputs(row, rec, metric: str, outdir: str):
  """Family.inputs of resolved_fusion: U(top-K) / U(best top-K) per test request of the
  row's fusion of the cell's predictions (kind 'mean', requests resampled)."""
  del metric
  p = _test_preds(rec, outdir)
  if p is None:
    return None
  orc, _ = _record_oracle(rec)
  req, u = topk_utility_per_request(_fusion(row['fusion'], p, orc), orc)
  return 'mean', None, req, u, 'requests'


def families(cells, dataset: str = '') -> list[study_report.Family]:
  """resolved: each SENet / LHUC variant vs its architecture on click and like AUC;
  resolved_heads: each watch head vs soft_label on watch MSE and click AUC;
  resolved_heads_et: the same pairs on Spearman and MAE against the oracle E[t];
  resolved_fusion: each fusion of the MMoE baseline vs the weighted sum on the top-K
  utility. One Holm family per table."""
  del dataset
  labels = list(dict.fromkeys(label(c) for c in cells))
  heads = [(f'mmoe [watch: {h}]', 'mmoe') for h in WATCH_HEADS[1:]
           if f'mmoe [watch: {h}]' in labels and 'mmoe' in labels]
  fusions = [(f, FUSIONS[0]) for f in FUSIONS[1:]] if 'mmoe' in labels else []
  return [study_report.Family('resolved', 'Short-video study: SENet / LHUC against the same '
                              'architecture without them', _variants(labels),
                              ('eval/test/click/auc', 'eval/test/like/auc'), label),
          study_report.Family('resolved_heads', 'Watch-time heads of the MMoE baseline against '
                              'soft_label (watch MSE against the observed watch time: lower is '
                              'better, E[t] minimises it)', heads,
                              (WATCH_MSE, 'eval/test/click/auc'), label),
          study_report.Family('resolved_heads_et', 'Watch-time heads of the MMoE baseline '
                              'against soft_label: served watch time against the oracle E[t] '
                              '(Spearman: higher is better; MAE in seconds: lower is better)',
                              heads, HEAD_VS_ET, label, inputs=head_inputs),
          study_report.Family('resolved_fusion', f'Fusions of the MMoE baseline\'s predictions '
                              f'against the weighted sum: oracle utility of the top-{K} '
                              '(fraction of the best, per request)', fusions,
                              (FUSION_UTILITY,), lambda c: c['fusion'], expand=fusion_rows,
                              inputs=fusion_inputs)]


NO_BOOT = ('Mean ± std over seeds. {what} are compared by no family of this study, so no '
           'difference in them is claimed here; the paired comparisons with both intervals '
           '(seeds and the test-set bootstrap, Holm within each table) are {where}.')


def _rows(cells, keep, cols, modal=()) -> list[dict]:
  """Mean ± std rows (report.aggregate_cells) of the cells whose label passes keep."""
  picked = [dict(c, label=label(c)) for c in cells if keep(label(c))]
  return study_report.aggregate_cells(picked, ('label',), cols, modal)


def tables(cells, results, outdir: str, ctx: dict) -> list[str]:
  del results
  cols = list(MODEL_COLS.values())
  rows = _rows(cells, lambda lab: '[watch:' not in lab, cols + ['click_gap'], modal=cols[:1])
  oracle = ctx['oracle']
  for r in rows:
    r['click_gap'] = oracle[MODEL_COLS['click AUC']] - r[MODEL_COLS['click AUC']]
    r['click_gap_std'] = r[MODEL_COLS['click AUC'] + '_std']
  rows.append({'label': 'oracle (expected labels)', 'n_seeds': '-', **oracle, 'click_gap': 0.0,
               **{c + '_std': 0.0 for c in cols + ['click_gap']}})
  epochs = [c['steps'] / EPOCH_STEPS for c in cells]
  best = [c['best_step'] / EPOCH_STEPS for c in cells]
  study_report.write_table(
      rows, [('model', 'label'), ('seeds', 'n_seeds')] + list(MODEL_COLS.items())
      + [('click AUC gap to oracle', 'click_gap')], outdir,
      title='Short-video study: models against the oracle (test)', notes=NO_BOOT.format(
          what='Watch order AUC, Spearman and MAE', where='resolved.md (click and like AUC)')
      + f' The oracle row scores its expected labels (± 0: no seeds). Cells: {len(cells)}; each '
      f'trained until {PATIENCE} epochs without a better valid click AUC (at most '
      f'{MAX_EPOCHS:g}): {min(epochs):.0f}-{max(epochs):.0f} epochs, best state at epoch '
      f'{min(best):.0f}-{max(best):.0f} (reported); summed cell wall time '
      f'{sum(c["wall_seconds"] for c in cells) / 60:.1f} min; this invocation '
      f'{ctx["wall_seconds"] / 60:.1f} min. Per-cell values: cells.csv.')
  return (['table.md', 'table.csv'] + heads_table(cells, outdir, ctx)
          + fusion_table(cells, outdir, ctx) + prerank_table(cells, outdir))


def heads_table(cells, outdir: str, ctx: dict) -> list[str]:
  """The watch-time heads (data.video.watch_head) of the baseline MMoE against E[t]."""
  cols = list(HEAD_COLS.values()) + list(RATIO_PCT) + ['eval/test/click/auc']
  rows = _rows(cells, lambda lab: lab == 'mmoe' or lab.startswith('mmoe [watch:'), cols)
  for r in rows:
    head = r['label'].removeprefix('mmoe [watch: ').rstrip(']')
    r['head'] = 'soft_label' if head == 'mmoe' else head
    r['loss'], r['served'] = HEAD_FORM[r['head']]
  for name, hm in ctx['perfect_heads'].items():
    rows.append({'head': name, 'loss': '-', 'served': '-', 'n_seeds': '-', **hm,
                 **{c + '_std': 0.0 for c in hm}, 'eval/test/click/auc': math.nan,
                 'eval/test/click/auc_std': math.nan})
  for r in rows:
    r['pct'] = f'{r.pop(RATIO_PCT[0]):.3f}-{r.pop(RATIO_PCT[1]):.3f}'
    for c in RATIO_PCT:
      r.pop(c + '_std', None)
  study_report.write_table(
      rows, [('head (data.video.watch_head)', 'head'), ('loss', 'loss'), ('served', 'served')]
      + [(k, v) for k, v in HEAD_COLS.items()]
      + [('served / E[t], 10th-90th pct (mean over seeds)', 'pct'),
         ('click AUC', 'eval/test/click/auc'), ('seeds', 'n_seeds')], outdir, basename='heads',
      title='Watch-time heads of the MMoE baseline: served value against the oracle E[t] (test)',
      notes=NO_BOOT.format(what='The calibration ratios (mean, median, percentiles)',
                           where='resolved_heads_et.md (Spearman and MAE against E[t], test '
                           'rows resampled) and resolved_heads.md (watch MSE and click AUC)')
      + ' The perfect rows: what an exact model of each loss would serve (notes_optimum: '
      'E[y] / E[1 - y] by Monte Carlo; E[t]).')
  return ['heads.md', 'heads.csv']


def fusion_table(cells, outdir: str, ctx: dict) -> list[str]:
  base = [c for c in cells if label(c) == 'mmoe']
  cols = [f'fusion/{f}' for f in FUSIONS]
  rows = []
  for f, col in zip(FUSIONS, cols):
    row = study_report.aggregate_cells([dict(c, fusion=f) for c in base], ('fusion',), [col])[0]
    rows.append(dict(row, utility=row[col], utility_std=row[col + '_std']))
  rows += [{'fusion': 'random order', 'utility': ctx['random_utility'], 'utility_std': 0.0,
            'n_seeds': '-'},
           {'fusion': 'oracle utility', 'utility': 1.0, 'utility_std': 0.0, 'n_seeds': '-'}]
  study_report.write_table(
      rows, [('fusion', 'fusion'), ('utility', 'utility'), ('seeds', 'n_seeds')], outdir,
      basename='fusion', title=f'Fusion of the MMoE baseline\'s predictions: oracle utility of '
      f'the top-{K} of {ctx["candidates"]} candidates (fraction of the best top-{K})',
      notes='Mean ± std over seeds. Each fusion against the weighted sum, paired by seed '
      '(the seed interval) and on resampled test requests (the bootstrap of the per-request '
      'utility), Holm within the table: resolved_fusion.md. The random order: one draw, '
      'no seeds.')
  return ['fusion.md', 'fusion.csv']


def prerank_table(cells, outdir: str) -> list[str]:
  pre = [c for c in cells if label(c) == 'prerank']
  rows = []
  for q, col in (PRERANK_COLS.items() if pre else ()):
    r = study_report.aggregate_cells([dict(c, q=q) for c in pre], ('q',), [col])[0]
    rows.append({'q': q, 'value': r[col], 'value_std': r[col + '_std'],
                 'n_seeds': r['n_seeds']})
  study_report.write_table(rows, [('quantity', 'q'), ('mean ± std over seeds', 'value'),
                                  ('seeds', 'n_seeds')], outdir, basename='prerank',
                           title=f'Pre-ranker: recall of the MMoE ranker\'s top-{K} and oracle '
                           'utility', notes='The same seed\'s MMoE and pre-ranker, each fused '
                           'by the weighted sum. ' + NO_BOOT.format(
                               what='Recall and utility (no baseline pre-ranker)',
                               where='in the other tables'))
  return ['prerank.md', 'prerank.csv']


def figures(cells, records, outdir: str) -> list[str]:
  """models.png (three model metrics, oracle dashed) and fusion.png, mean ± std over seeds."""
  del records
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  keys = ('click AUC', 'watch order AUC', 'watch Spearman vs oracle')
  rows = _rows(cells, lambda lab: True, [MODEL_COLS[k] for k in keys])
  with open(os.path.join(outdir, 'meta.json')) as f:
    oracle = json.load(f)['oracle']
  fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6))
  for ax, k in zip(axes, keys):
    col = MODEL_COLS[k]
    ax.barh(range(len(rows)), [r[col] for r in rows], xerr=[r[col + '_std'] for r in rows],
            capsize=2)
    ax.axvline(oracle[col], color='k', ls='--', lw=1, label='oracle')
    ax.set_yticks(range(len(rows)), [r['label'] for r in rows] if ax is axes[0]
                  else [''] * len(rows), fontsize=8)
    ax.set_title(k, fontsize=9)
  axes[0].legend(fontsize=7)
  study_report.save_figure(fig, os.path.join(outdir, 'models.png'))
  fus = study_report.read_csv(os.path.join(outdir, 'fusion.csv'))
  fig, ax = plt.subplots(figsize=(6, 3.2))
  fus = [r for r in fus if r['fusion'] in FUSIONS]
  ax.barh(range(len(fus)), [r['utility'] for r in fus], xerr=[r['utility std'] for r in fus],
          capsize=2)
  ax.set_yticks(range(len(fus)), [r['fusion'] for r in fus], fontsize=8)
  ax.set_xlabel(f'oracle utility of the top-{K} (fraction of the best)')
  study_report.save_figure(fig, os.path.join(outdir, 'fusion.png'))
  return ['models.png', 'fusion.png']


STUDY = study.Study('video', METRICS, tables, families, TASKS, figures, enrich,
                    from_records=FROM_OTHERS)


def report_study(records, outdir: str, wall: float, publish_to: str | None = None,
                 docs: str = publish.DOCS) -> list[str]:
  """cells.csv, meta.json (the oracle's rows, this invocation's wall time), bootstrap.csv and
  every table and figure of a finished sweep (study.study_main); publish_to: a docs/results/
  folder to copy them to."""
  spec = dataclasses.replace(STUDY, meta=lambda recs, _: dict(oracle_facts(recs),
                                                              wall_seconds=round(wall, 1)))
  return study.study_main(spec, records, outdir, publish_to=publish_to, docs=docs)


def main(argv):
  del argv
  xla_cpu.apply_defaults()
  extra = extra_overrides(FLAGS.dataset, FLAGS.override)
  outdir = FLAGS.outdir or os.path.join('runs', 'video')
  records, wall = sweep.run_study(CONFIG, make_cells(FLAGS.seeds, FLAGS.num_steps, extra),
                                  outdir, FLAGS.seeds, FLAGS.runs_per_group)
  report_study(records, outdir, wall,
               publish_to='video' if sweep.publishes() and not extra else None)
  print(f'sweep: {wall / 60:.1f} min')


if __name__ == '__main__':
  define_flags()
  app.run(main)
