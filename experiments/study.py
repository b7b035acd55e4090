"""A study is a spec: its cells, its comparisons, its tables and figures. The study's main()
runs its cells (sweep.run_study; phases and grid extensions are the study's), `study_main`
reports and publishes them, and experiments/recheck.py recomputes the published tables.

  records = sweep.run_sweep(...)                 # the cell engine (experiments/sweep.py)
  cells.csv     <- report.cell_rows(records)     # one line per cell
  bootstrap.csv <- report.bootstrap_family(...)  # from the test predictions cells saved
  meta.json     <- study.meta(records, dataset)  # run-wide facts the notes print (optional)
  tables        <- render(study, outdir)         # from those three files and nothing else
  figures       <- study.figures(cells, records, outdir)

`render` reads the files back from disk, so `python -m experiments.recheck <study>`
reproduces every published table and interval from the committed files
(docs/results/<study>[/<dataset>]/). Statistics: experiments/stats.py (module docstring).

How to port a study:
  1. keep its `make_cells` (sweep.Cell per row x seed; set train.save_predictions = True: no
     bootstrap, no "resolved") and its flags (sweep.define_study_flags; --override via
     seqrec_jax.configs.define_override_flag / study_overrides, never a parser of its own);
  2. declare `STUDY = study.Study(name, metrics, tables, families, tasks, figures, enrich,
     meta, combined, from_records)`:
       metrics: every summary key a table shows (cells.csv columns);
       families(cells, dataset): one report.Family per comparison table (its (row, baseline)
         label pairs, metrics, the label of a cell, the pairing unit: 'seed' or e.g. a data
         seed whose runs are averaged), Holm-corrected within the table. A table whose rows
         are not cells (several fusions of one cell) sets Family.expand (cells -> its
         pseudo-rows, each keeping 'id' and 'seed'); a metric the saved test predictions do
         not score directly (a rank correlation with an oracle, a mean of per-request or
         per-user values) sets Family.inputs ((row, record, metric, outdir) -> (kind, labels,
         units, pred[, unit_name]) for stats.bootstrap_diff's kinds 'spearman' / 'mean', or
         None: no bootstrap for that test). A study that is not a sweep passes
         report.bootstrap_family records it builds (dicts with 'id' at least);
       tables(cells, results, outdir, ctx): writes the mean ± std tables with
         report.aggregate_cells (modal=: count collapsed runs) + report.write_table, returns
         their names; reads only cells, results (report.compare per family), ctx
         ({'dataset': ..., **meta.json}) and constants;
       tasks: the dataset's task order (which prediction column a metric scores);
       figures(cells, records, outdir): report.plot_bars / report.save_figure;
       enrich(records, outdir): derived summary values (gate statistics, RelaImpr) before
         cells.csv is written; meta(records, dataset): the command, shapes, timing;
       combined({dataset: cells}, outdir): tables one folder up over every dataset;
       from_records: files written from records (commands.md), not rechecked;
  3. main() = sweep.run_study (or run_sweep) + study_main(STUDY, records, outdir, dataset,
     publish_to); register the study in recheck.STUDIES;
  4. a hyper-parameter chosen on valid goes through stats.select_on_grids (edge extension)
     and the tables mark a value still on an edge (din_reg, mmoe_paper, din_table's paper
     protocol).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Sequence

from experiments import publish, report


@dataclasses.dataclass
class Study:
  name: str                                  # docs/results/<name>/
  metrics: Sequence[str]                     # summary keys in cells.csv
  tables: Callable                           # (cells, results, outdir, ctx) -> [file]
  families: Callable = lambda cells, dataset: []   # (cells, dataset) -> [report.Family]
  tasks: Sequence[str] = ()                  # the dataset's task order (prediction columns)
  figures: Callable | None = None            # (cells, records, outdir) -> [file]
  enrich: Callable | None = None             # (records, outdir) -> None
  meta: Callable | None = None               # (records, dataset) -> {key: JSON value}
  # A study of several datasets may add tables over all of them, one folder up:
  combined: Callable | None = None           # ({dataset: cells}, outdir) -> [file]
  from_records: Sequence[str] = ()           # files written from records (not rechecked)


def render(study: Study, outdir: str, dataset: str = '') -> list[str]:
  """Writes every table of the study from outdir/cells.csv, bootstrap.csv and meta.json;
  returns the file names written (relative to outdir). The tables get ctx = {'dataset': ...,
  **meta.json}."""
  cells = report.read_csv(os.path.join(outdir, 'cells.csv'))
  ctx = {'dataset': dataset}
  if os.path.exists(os.path.join(outdir, 'meta.json')):
    with open(os.path.join(outdir, 'meta.json')) as f:
      ctx.update(json.load(f))
  boot_path = os.path.join(outdir, 'bootstrap.csv')
  boot = report.read_csv(boot_path) if os.path.exists(boot_path) else []
  names, results = [], {}
  for fam in study.families(cells, dataset):
    results[fam.name] = report.compare(cells, fam, boot)
    report.write_comparisons(results[fam.name], fam, outdir)
    names += [f'{fam.name}.md', f'{fam.name}.csv']
  return names + list(study.tables(cells, results, outdir, ctx))


def study_main(study: Study, records: Sequence[dict], outdir: str, dataset: str = '',
               publish_to: str | None = None, docs: str = publish.DOCS) -> list[str]:
  """Reports a finished sweep: cells.csv, bootstrap.csv, every table and figure in outdir;
  with publish_to (a folder under docs/results/, e.g. 'dcn_table/census') copies them there.
  Returns the file names."""
  if study.enrich:
    study.enrich(records, outdir)
  report.write_csv(report.cell_rows(records, study.metrics), os.path.join(outdir, 'cells.csv'))
  cells = report.read_csv(os.path.join(outdir, 'cells.csv'))
  boot = [b for fam in study.families(cells, dataset)
          for b in report.bootstrap_family(fam, cells, records, outdir, study.tasks)]
  names = ['cells.csv']
  if study.meta:
    with open(os.path.join(outdir, 'meta.json'), 'w') as f:
      json.dump(study.meta(records, dataset), f, indent=1, sort_keys=True)
      f.write('\n')
    names.append('meta.json')
  if boot:
    report.write_csv(boot, os.path.join(outdir, 'bootstrap.csv'))
    names.append('bootstrap.csv')
  elif os.path.exists(os.path.join(outdir, 'bootstrap.csv')):
    os.remove(os.path.join(outdir, 'bootstrap.csv'))
  names += render(study, outdir, dataset)
  if study.figures:
    names += list(study.figures(cells, records, outdir))
  for n in names:
    if n.endswith('.md'):
      with open(os.path.join(outdir, n)) as f:
        print(f.read())
  print(f'wrote {", ".join(names)} to {outdir}')
  if publish_to:
    print('copied to', publish.publish(outdir, publish_to, names, docs))
  return names
