"""Attention-unit ablation: which inputs should DIN's activation unit see, does Dice beat
PReLU, does softmax help? Baseline: Embedding&MLP with mean pooling (RelaImpr reference).

  bash launch.sh ablation                       # small default sweep on synthetic data
  python -m experiments.attention_ablation --dataset=synthetic_intensity   # intensity generator
  python -m experiments.attention_ablation --full --seeds=5      # + sigmoid, more inputs,
                                                # other scorers, recency features, bigger data
  python -m experiments.attention_ablation --dataset=movielens --num_steps=2000
  python -m experiments.attention_ablation --dataset=amazon --override=data.amazon.path=/data/az

Grid (default): inputs {q,k | q,k,q-k,q*k | q,k,outer} x activation {dice, prelu} (main and
attention MLP alike, as DIN+Dice in the paper) x normaliser {none, softmax} x seeds, plus
`base` with mean pooling per activation. Every cell is a full train/valid/test run (model
selection on valid, test reported); cells finished earlier are skipped, so a rerun resumes.
A study spec (experiments/study.py): writes cells.csv, bootstrap.csv, table.md/.csv,
resolved.md/.csv (each row vs mean pooling), resolved_dice_prelu.md/.csv and
resolved_softmax.md/.csv (one Holm family each; seed t and test-set bootstrap intervals:
users for GAUC, rows for AUC and logloss) and ablation_auc.png to <outdir>/<dataset> (--outdir,
default runs/attention_ablation); a default run also copies them to
docs/results/attention_ablation/<dataset>/ (shown by docs/attention.md; `python -m
experiments.recheck attention_ablation` recomputes the tables); once both planted-interest
generators are published, docs/results/attention_ablation/softmax_vs_none.md puts their
softmax-vs-none comparisons side by side (side_by_side). --dataset takes any
dataset with DIN's inputs (FITS: din_table's and synthetic_intensity, the generator where the
summed relevance of the history sets the click); --override=key=value (repeatable) reaches every
cell, e.g. --override=data.movielens.path=/data/ml-20m.zip.
"""
from __future__ import annotations

import os

from absl import app, flags

from experiments import din_table, publish, report, stats, study, sweep
from seqrec_jax import metrics, xla_cpu
from seqrec_jax.configs import check_dataset, define_override_flag, study_overrides

FLAGS = flags.FLAGS

# Datasets with DIN's inputs: din_table's, plus the intensity generator, where the click
# depends on the summed relevance of the history (data/synthetic.py, relevance 'sum').
FITS = {**din_table.FITS, 'synthetic_intensity': 'planted interests, click on the summed '
        'relevance of the history (intensity matters), with an oracle'}
# Both planted-interest generators read config.data.synthetic and share the size preset.
SYNTHETIC = ('synthetic', 'synthetic_intensity')


def define_flags():
  """Defined only when run as a script (see sweep.define_study_flags)."""
  flags.DEFINE_string('dataset', 'synthetic', 'Dataset (config.data.name of din.py:<dataset>): '
                      + ', '.join(f'{k} ({v})' for k, v in FITS.items()) + '.')
  define_override_flag()
  sweep.define_study_flags(10, 'Seeds per cell (>= 3 for mean ± std; 10 for paired CIs).',
                           'runs/attention_ablation; tables and cells go to <outdir>/<dataset>',
                           'Larger grid and data (not meant for the 15-minute budget).',
                           'the size preset')
  flags.adopt_module_key_flags(sweep)     # list them under this script's --help


INPUTS = {'q,k': ('q', 'k'), 'q,k,q-k,q*k': ('q', 'k', 'q-k', 'q*k'),
          'q,k,outer': ('q', 'k', 'outer')}
FULL_INPUTS = {**INPUTS, 'k': ('k',), 'q*k': ('q*k',)}
ACTIVATIONS = ('dice', 'prelu')
NORMALIZERS = ('none', 'softmax')
FULL_NORMALIZERS = ('none', 'softmax', 'sigmoid')
FULL_SCORERS = ('dot', 'scaled_dot', 'bilinear', 'multihead')
BASELINE = 'base (mean pooling)'
METRICS = ('eval/test/auc', 'eval/test/gauc', 'eval/test/logloss', 'rela_impr', 'params',
           'examples_per_sec')
RESOLVE = ('eval/test/auc', 'eval/test/gauc', 'eval/test/logloss')


def size_overrides(dataset: str, full: bool, num_steps: int) -> dict:
  """Training/model sizes; the quick synthetic preset is what fits the 15-minute budget."""
  # The protocol is pinned here, not inherited from configs/din.py, whose synthetic
  # defaults (batch 512, cosine decay, generator noise) were retuned for the demo later.
  o = {'train.progress': False, 'train.checkpoint_every': 100_000, 'optim.learning_rate': 5e-3,
       'optim.schedule': 'constant', 'data.batch_size': 256,
       'train.save_predictions': True}   # test predictions: GAUC bootstrap (resolved.md)
  if dataset in SYNTHETIC:
    o.update({'data.synthetic.item_bias_std': 0.3, 'data.synthetic.item_noise': 0.6})
  if dataset in SYNTHETIC and not full:
    # 4000 users x 10 impressions (32k train rows), L=20; 3 epochs = 375 steps of 256.
    o.update({'data.synthetic.num_users': 4000, 'data.synthetic.num_items': 800,
              'data.synthetic.num_cates': 20, 'data.synthetic.max_len': 20,
              'model.embed_dim': 8, 'model.hidden': (64, 32), 'model.attention.hidden': (32, 16),
              'train.num_epochs': 3.0, 'train.eval_every': 125})
  elif dataset in SYNTHETIC:
    o.update({'train.num_epochs': 3.0, 'train.eval_every': 500})
  if num_steps > 0:
    o.update({'train.num_steps': num_steps, 'train.eval_every': max(num_steps // 4, 1)})
  return o


def extra_overrides(dataset: str, override_flags) -> dict:
  """--override values (typed by din.py:<dataset>, data.<other dataset>.* dropped; both
  generators keep data.synthetic.*); fails on a dataset without DIN's inputs."""
  check_dataset('attention_ablation', dataset, FITS, din_table.NEEDS)
  return study_overrides('attention_ablation', 'synthetic' if dataset in SYNTHETIC else dataset,
                         override_flags, f'seqrec_jax/configs/din.py:{dataset}', FITS,
                         din_table.NEEDS)


def make_cells(dataset: str, seeds: int, full: bool, num_steps: int = -1, extra=None
               ) -> list[sweep.Cell]:
  """extra: the --override values (extra_overrides), applied last in every cell."""
  base = size_overrides(dataset, full, num_steps)
  cells = []

  def add(group, overrides):
    for s in range(seeds):
      cells.append(sweep.Cell(group=dict(group), overrides={**base, **overrides,
                                                            **(extra or {})}, seed=s))

  for act in ACTIVATIONS:
    add({'model': BASELINE, 'scorer': '-', 'inputs': '-', 'activation': act, 'normalizer': '-'},
        {'model.name': 'base', 'model.pooling': 'mean', 'model.activation': act})
  inputs = FULL_INPUTS if full else INPUTS
  for label, parts in inputs.items():
    for act in ACTIVATIONS:
      for norm in (FULL_NORMALIZERS if full else NORMALIZERS):
        add({'model': 'din', 'scorer': 'mlp', 'inputs': label, 'activation': act,
             'normalizer': norm},
            {'model.name': 'din', 'model.activation': act, 'model.attention.activation': 'same',
             'model.attention.inputs': parts, 'model.attention.normalizer': norm})
  if full:
    for act in ACTIVATIONS:
      for scorer in FULL_SCORERS:
        add({'model': 'din', 'scorer': scorer, 'inputs': '-', 'activation': act,
             'normalizer': 'softmax'},
            {'model.name': 'din', 'model.activation': act, 'model.attention.name': scorer,
             'model.attention.normalizer': 'softmax'})
      add({'model': 'din', 'scorer': 'mlp+recency', 'inputs': 'q,k,q-k,q*k', 'activation': act,
           'normalizer': 'none'},
          {'model.name': 'din', 'model.activation': act, 'model.attention.use_position': True})
  return cells


def add_rela_impr(records: list[dict]) -> None:
  """summary['rela_impr']: RelaImpr (%) of test AUC vs mean pooling with the same activation
  and seed (paired, so the spread is over seeds)."""
  base = {(r['group']['activation'], r['seed']): r['summary']['eval/test/auc']
          for r in records if r['group']['model'] == BASELINE}
  for r in records:
    b = base.get((r['group']['activation'], r['seed']))
    r['summary']['rela_impr'] = (metrics.rela_impr(r['summary']['eval/test/auc'], b)
                                 if b is not None else float('nan'))


COLUMNS = [('model', 'model'), ('scorer', 'scorer'), ('inputs', 'inputs'),
           ('activation', 'activation'), ('normaliser', 'normalizer'),
           ('test AUC', 'eval/test/auc'), ('test GAUC', 'eval/test/gauc'),
           ('test logloss', 'eval/test/logloss'), ('RelaImpr % vs mean pool', 'rela_impr'),
           ('params', 'params'), ('examples/s', 'examples_per_sec'), ('seeds', 'n_seeds')]


GROUP = ('model', 'scorer', 'inputs', 'activation', 'normalizer')


def tables(cells, results, outdir: str, ctx: dict) -> list[str]:
  del results
  rows = report.aggregate_cells(cells, GROUP, METRICS, modal=RESOLVE)
  for r in rows:       # params and throughput: show the mean only
    r.pop('params_std', None)
    r.pop('examples_per_sec_std', None)
  oracle = cells[0].get('oracle/test/oracle_auc')
  notes = (f'Dataset `{ctx["dataset"]}`; mean ± std over seeds '
           f'{sorted({c["seed"] for c in cells})}; model selection on valid, test reported. '
           'RelaImpr = ((AUC - 0.5) / (AUC_base - 0.5) - 1) x 100 vs `base` + mean pooling with '
           'the same activation and seed. '
           + (f'Oracle (Bayes) test AUC of the generator: {oracle:.4f}. '
              if isinstance(oracle, float) and oracle == oracle else '')
           + f'Cells: {len(cells)}; summed cell wall time '
           f'{sum(c["wall_seconds"] for c in cells) / 60:.1f} min. Comparisons: resolved.md '
           '(each row vs mean pooling), resolved_dice_prelu.md, resolved_softmax.md; per-cell '
           'values: cells.csv.')
  report.write_table(rows, COLUMNS, outdir, title=f'Attention ablation ({ctx["dataset"]})',
                     notes=notes)
  return ['table.md', 'table.csv']


def figures(cells, records, outdir: str) -> list[str]:
  del records
  rows = report.aggregate_cells(cells, GROUP, RESOLVE, modal=RESOLVE)
  oracle = cells[0].get('oracle/test/oracle_auc')
  plot(rows, os.path.join(outdir, 'ablation_auc.png'), os.path.basename(os.path.normpath(
      outdir)), oracle if isinstance(oracle, float) and oracle == oracle else None)
  return ['ablation_auc.png']


def _label(c: dict, drop: str = '') -> str:
  """A cell's row: its settings but `drop` ('-' and the default scorer left out)."""
  return ' / '.join(str(c[k]) for k in GROUP if k != drop and c[k] not in ('-', 'mlp'))


def families(cells, dataset: str) -> list[report.Family]:
  """Three tables, one Holm family each: every row vs mean pooling with the same activation;
  Dice vs PReLU and softmax vs none within every DIN configuration that has both."""
  del dataset
  fams = []
  rows = list(dict.fromkeys(_label(c) for c in cells))
  base = {c['activation']: _label(c) for c in cells if c['model'] == BASELINE}
  fams.append(report.Family(
      'resolved', f'Each row vs {BASELINE} with the same activation',
      [(r, base[a]) for a in base for r in rows if r not in base.values()
       and any(_label(c) == r and c['activation'] == a for c in cells)], RESOLVE, _label))
  din = [c for c in cells if c['model'] != BASELINE]
  for key, row, other, name in (('activation', 'dice', 'prelu', 'resolved_dice_prelu'),
                                ('normalizer', 'softmax', 'none', 'resolved_softmax')):
    label = lambda c, key=key: f'{_label(c, key)} / {c[key]}'
    have = {label(c) for c in din}
    configs = dict.fromkeys(_label(c, key) for c in din)
    fams.append(report.Family(
        name, f'{row} vs {other}, same other settings',
        [(f'{g} / {row}', f'{g} / {other}') for g in configs
         if {f'{g} / {row}', f'{g} / {other}'} <= have], RESOLVE, label))
  return fams


STUDY = study.Study('attention_ablation', METRICS + ('oracle/test/oracle_auc',), tables,
                    families, (), figures, enrich=lambda records, outdir: add_rela_impr(records))


# The two planted-interest generators: what sets the click (data/synthetic.py).
GENERATORS = {'synthetic': "relevance 'max': the most relevant behaviour",
              'synthetic_intensity': "relevance 'sum': the summed relevance (intensity)"}
SIDE_BY_SIDE = 'softmax_vs_none.md'


def _ci(r: dict, kind: str) -> str:
  """'+0.0300 [+0.0246, +0.0355]*' from a comparison CSV row (kind 'seed' or 'boot')."""
  if r[f'{kind}_mean'] != r[f'{kind}_mean']:
    return 'n/a'
  return (f'{r[f"{kind}_mean"]:+.4f} [{r[f"{kind}_lo"]:+.4f}, {r[f"{kind}_hi"]:+.4f}]'
          + ('*' if r[f'{kind}_resolved'] else ''))


def _verdict(rows: list[dict]) -> str:
  """The winner on each resolved metric (both Holm intervals exclude 0), else 'unsettled'."""
  won: dict[str, list[str]] = {}
  for r in rows:
    if r['resolved']:
      better = (r['seed_mean'] > 0) == stats.higher_is_better(r['metric'])
      won.setdefault('softmax' if better else 'none', []).append(
          report.metric_name(r['metric']).removeprefix('test '))
  return '; '.join(f'**{k}** ({", ".join(v)})' for k, v in won.items()) or 'unsettled'


def side_by_side(root: str) -> str | None:
  """<root>/softmax_vs_none.md: softmax vs none per inputs x activation on both generators,
  read from each generator's published resolved_softmax.csv (one Holm family per generator,
  rechecked by experiments.recheck) and cells.csv (oracle AUC). None (nothing written) until
  both generators are published. Returns the Markdown."""
  res, oracle = {}, {}
  for ds in GENERATORS:
    path = os.path.join(root, ds, 'resolved_softmax.csv')
    if not os.path.exists(path):
      return None
    res[ds] = report.read_csv(path)
    oracle[ds] = report.read_csv(os.path.join(root, ds, 'cells.csv'))[0].get(
        'oracle/test/oracle_auc')
  configs = list(dict.fromkeys(r['row'].rsplit(' / ', 1)[0] for ds in res for r in res[ds]))
  head = ['inputs / activation', 'generator', 'Δ test AUC (seed CI)', 'Δ test AUC (bootstrap)',
          'Δ test GAUC (seed CI)', 'Δ test GAUC (bootstrap)', 'Δ test logloss (seed CI)',
          'Δ test logloss (bootstrap)', 'better where resolved']
  lines = ['### Softmax vs none on both generators', '',
           '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for cfg in configs:
    for ds in GENERATORS:
      rows = [r for r in res[ds] if r['row'].rsplit(' / ', 1)[0] == cfg]
      by = {r['metric']: r for r in rows}
      cols = [_ci(by[m], k) if m in by else 'n/a' for m in RESOLVE for k in ('seed', 'boot')]
      lines.append('| ' + ' | '.join([cfg.removeprefix('din / '), f'`{ds}`', *cols,
                                      _verdict(rows)]) + ' |')
  gens = '; '.join(f'`{ds}`: {what}, oracle test AUC {oracle[ds]:.4f}, '
                   f'{len(res[ds])} tests' for ds, what in GENERATORS.items())
  lines += ['', 'Δ = softmax − none (same inputs, activation and seed), copied from each '
            "generator's `resolved_softmax.csv`: intervals at their Holm level within that "
            "generator's family (* = excludes 0); a metric is resolved only when both "
            'intervals exclude 0, anything else is unsettled. Generators (data/synthetic.py): '
            + gens + '. Written by `experiments/attention_ablation.py` (side_by_side) when '
            'both are published.']
  text = '\n'.join(lines) + '\n'
  with open(os.path.join(root, SIDE_BY_SIDE), 'w') as f:
    f.write(text)
  return text


def plot(rows: list[dict], path: str, dataset: str, oracle: float | None) -> None:
  """Grouped bars: test AUC (mean ± std) per (scorer, inputs, normaliser), one bar per
  activation; dashed lines: mean-pooling baselines (and the oracle AUC when known)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  key = 'eval/test/auc'
  att = [r for r in rows if r['model'] != BASELINE]
  groups = list(dict.fromkeys((r['scorer'], r['inputs'], r['normalizer']) for r in att))
  acts = list(dict.fromkeys(r['activation'] for r in rows))
  colors = dict(zip(acts, ('tab:blue', 'tab:orange', 'tab:green', 'tab:purple')))
  width = 0.8 / max(len(acts), 1)
  fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2), 4.5))
  for j, act in enumerate(acts):
    by = {(r['scorer'], r['inputs'], r['normalizer']): r for r in att if r['activation'] == act}
    xs = [i for i, g in enumerate(groups) if g in by]
    ax.bar([x + (j - (len(acts) - 1) / 2) * width for x in xs], [by[groups[x]][key] for x in xs],
           width, yerr=[by[groups[x]][key + '_std'] for x in xs], capsize=3, color=colors[act],
           label=f'DIN, {act}')
  for r in rows:
    if r['model'] == BASELINE:
      ax.axhline(r[key], ls='--', color=colors[r['activation']], lw=1.2,
                 label=f'mean pooling, {r["activation"]}')
  if oracle:
    ax.axhline(oracle, ls=':', color='k', lw=1.2, label='oracle (Bayes) AUC')
  vals = [r[key] for r in rows] + ([oracle] if oracle else [])
  ax.set_ylim(min(vals) - 0.02, max(vals) + 0.01)
  ax.set_xticks(range(len(groups)),
                [f'{s if s != "mlp" else ""}\n{i}\n{n}'.strip() for s, i, n in groups], fontsize=8)
  ax.set_ylabel('test AUC (mean ± std over seeds)')
  ax.set_xlabel('attention inputs / normaliser')
  ax.set_title(f'DIN attention ablation on {dataset}', fontsize=10)
  ax.legend(fontsize=7, loc='upper center', ncol=3)
  report.save_figure(fig, path)


def main(argv):
  del argv
  xla_cpu.apply_defaults()  # CPU runtime defaults, before any JAX computation
  outdir = os.path.join(FLAGS.outdir or os.path.join('runs', 'attention_ablation'),
                        FLAGS.dataset)
  cells = make_cells(FLAGS.dataset, FLAGS.seeds, FLAGS.full, FLAGS.num_steps,
                     extra_overrides(FLAGS.dataset, FLAGS.override))
  records, wall = sweep.run_study(f'seqrec_jax/configs/din.py:{FLAGS.dataset}', cells, outdir,
                                  FLAGS.seeds, FLAGS.runs_per_group)
  publish_to = (f'attention_ablation/{FLAGS.dataset}'
                if sweep.publishes() and not FLAGS.override else None)
  study.study_main(STUDY, records, outdir, FLAGS.dataset, publish_to)
  if publish_to and side_by_side(os.path.join(publish.DOCS, 'results', 'attention_ablation')):
    publish.refresh_includes()
  print(f'sweep: {wall / 60:.1f} min')


if __name__ == '__main__':
  define_flags()
  app.run(main)
