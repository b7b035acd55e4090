"""A study is a spec: its cells, its comparisons, its tables and figures; `study_main` runs,
reports and publishes it, and experiments/recheck.py recomputes its published tables.

  records = sweep.run_sweep(...)                 # the cell engine (experiments/sweep.py)
  cells.csv     <- report.cell_rows(records)     # one line per cell
  bootstrap.csv <- report.bootstrap_family(...)  # from the test predictions cells saved
  tables        <- render(study, cells.csv, bootstrap.csv)   # and nothing else
  figures       <- study.figures(cells, records, outdir)

`render` reads only the two CSV files (as read back from disk), so `python -m
experiments.recheck <study>` reproduces every published table and interval from the
committed files (docs/results/<study>[/<dataset>]/).

How to port a study:
  1. keep its `make_cells` (sweep.Cell per row x seed; set train.save_predictions = True so
     the bootstrap has predictions) and its flags (sweep.define_study_flags; --override via
     seqrec_jax.configs.define_override_flag / study_overrides, never a parser of its own);
  2. declare `STUDY = study.Study(name, metrics, tasks, families, tables, figures, enrich)`:
     metrics: every summary key a table shows (cells.csv columns); families(cells, dataset):
     the report.Family of each comparison table (row/baseline labels, metrics, how a cell is
     labelled); tables(cells, results, outdir, dataset): writes its mean ± std tables with
     report.aggregate_cells + report.write_table, returns their file names (no I/O but
     those, no records: only cells.csv values, ctx and constants); meta(records, dataset):
     run-wide facts a table's notes need (the command, shapes from the config), written to
     meta.json and passed in ctx; figures: report.plot_bars /
     report.save_figure; enrich(records, outdir): adds derived summary values (gate
     statistics from metrics.jsonl) before cells.csv is written;
  3. main() = sweep.run_study + study_main; register the study in recheck.STUDIES;
  4. a hyper-parameter chosen on valid goes through stats.select_on_grid (edge extension)
     and the table marks a value still at an edge.
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
