"""Recomputes a study's published tables from its committed cells.csv and bootstrap.csv.

  python -m experiments.recheck mmoe_synthetic          # docs/results/mmoe_synthetic/
  python -m experiments.recheck dcn_table               # every docs/results/dcn_table/<ds>/
  python -m experiments.recheck census_multitask --runs=runs/census_multitask
      # also recomputes bootstrap.csv from the test predictions of that outdir's cells

Every folder of docs/results/<study>/ that holds a cells.csv is rendered again
(experiments/study.py, render) into a scratch folder and each table (.md, .csv) is diffed
against the published file. Exit status 1 on any difference, a published table the study no
longer writes, or a study with nothing to recheck.
"""
from __future__ import annotations

import difflib
import glob
import importlib
import json
import os
import re
import shutil
import sys
import tempfile

from absl import app, flags

from experiments import publish, report, study as study_lib
from seqrec_jax import xla_cpu

STUDIES = ('mmoe_synthetic', 'dcn_table', 'census_multitask', 'attention_ablation', 'mmoe_paper',
           'din_reg', 'din_table', 'incremental', 'video', 'funnel', 'cold_start')



def define_flags():
  """Defined only when run as a script (tests import this module beside the studies)."""
  flags.DEFINE_string('runs', '', 'A study outdir (with cells/ and work/) to recompute '
                      'bootstrap.csv from its saved test predictions too.')


def study_spec(name: str) -> study_lib.Study:
  if name not in STUDIES:
    raise app.UsageError(f'recheck: unknown study {name!r}; studies on the framework: '
                         f'{", ".join(STUDIES)}')
  return importlib.import_module(f'experiments.{name}').STUDY


def folders(name: str, docs: str = publish.DOCS) -> list[str]:
  """docs/results/<name>/ and its subfolders that hold a cells.csv, relative to <name>/."""
  root = os.path.join(docs, 'results', name)
  found = sorted(os.path.relpath(os.path.dirname(p), root)
                 for p in glob.glob(os.path.join(root, '**', 'cells.csv'), recursive=True))
  return ['' if f == '.' else f for f in found]


def _records(runs: str, cells: list[dict]) -> list[dict]:
  out = []
  for c in cells:
    path = os.path.join(runs, 'cells', f'{c["id"]}.json')
    with open(path) as f:
      rec = json.load(f)
    out.append(dict(rec, workdir=os.path.join(runs, 'work', os.path.basename(
        os.path.normpath(rec.get('workdir') or rec['id'])))))
  return out


def recheck(name: str, docs: str = publish.DOCS, runs: str = '', log=print,
            spec: study_lib.Study | None = None) -> bool:
  """True when every published table of the study equals its recomputation (spec: the study's
  spec, by default its module's STUDY)."""
  spec = spec or study_spec(name)
  found = folders(name, docs)
  if not found:
    log(f'{name}: no cells.csv under {os.path.join(docs, "results", name)}: nothing to '
        'recheck (the study has not been published through the framework)')
    return False
  ok = True
  for sub in found:
    pub = os.path.join(docs, 'results', name, sub)
    with tempfile.TemporaryDirectory() as tmp:
      for f in ('cells.csv', 'bootstrap.csv', 'meta.json'):
        if os.path.exists(os.path.join(pub, f)):
          shutil.copyfile(os.path.join(pub, f), os.path.join(tmp, f))
      if runs:
        cells = report.read_csv(os.path.join(tmp, 'cells.csv'))
        run_dir = os.path.join(runs, sub)
        boot = [b for fam in spec.families(cells, sub) for b in report.bootstrap_family(
            fam, cells, _records(run_dir, cells), run_dir, spec.tasks)]
        report.write_csv(boot, os.path.join(tmp, 'bootstrap.csv'))
        ok &= _same(os.path.join(tmp, 'bootstrap.csv'), os.path.join(pub, 'bootstrap.csv'),
                    f'{name}/{sub}', log)
      names = study_lib.render(spec, tmp, os.path.basename(sub))
      for n in names:
        ok &= _same(os.path.join(tmp, n), os.path.join(pub, n), f'{name}/{sub}', log)
      left = sorted(os.path.basename(p) for p in glob.glob(os.path.join(pub, '*.md'))
                    + glob.glob(os.path.join(pub, '*.csv')))
      stray = [n for n in left if n not in names and n not in (
          'cells.csv', 'bootstrap.csv', *spec.from_records)]
      if stray:
        log(f'{name}/{sub}: published but not written by the study: {", ".join(stray)}')
        ok = False
      log(f'{name}/{sub}: {len(names)} table file(s) recomputed from cells.csv'
          + (' and bootstrap.csv' if os.path.exists(os.path.join(pub, 'bootstrap.csv'))
             else ''))
  if spec.combined:
    for parent in sorted({os.path.dirname(f) for f in found if f}):
      with tempfile.TemporaryDirectory() as tmp:
        per_ds = {os.path.basename(f): report.read_csv(os.path.join(
            docs, 'results', name, f, 'cells.csv')) for f in found
                  if f and os.path.dirname(f) == parent}
        for n in spec.combined(per_ds, tmp):
          ok &= _same(os.path.join(tmp, n), os.path.join(docs, 'results', name, parent, n),
                      f'{name}/{parent}', log)
        log(f'{name}/{parent}: combined tables of {", ".join(per_ds)} recomputed')
  return ok


def _same(got: str, want: str, where: str, log) -> bool:
  if not os.path.exists(want):
    log(f'{where}: {os.path.basename(want)} is not published')
    return False
  with open(got) as a, open(want) as b:
    x, y = a.read(), b.read()
  if x == y or _close(x, y):
    return True
  log(f'{where}: {os.path.basename(want)} differs from its recomputation:')
  log(''.join(difflib.unified_diff(y.splitlines(True), x.splitlines(True), 'published',
                                   'recomputed', n=0)))
  return False


_NUM = re.compile(r'[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?')


def _close(x: str, y: str, rtol: float = 1e-9) -> bool:
  """The same text up to full-precision floats that differ in their last digits (numpy's
  SIMD sums round differently on other CPUs: seen 0.992423135334969 vs 0.9924231353349686):
  every non-number part equal, every number within rtol (relative) of its counterpart."""
  a, b = _NUM.split(x), _NUM.split(y)
  na, nb = _NUM.findall(x), _NUM.findall(y)
  if a != b or len(na) != len(nb):
    return False
  return all(p == q or abs(float(p) - float(q)) <= rtol * max(abs(float(p)), abs(float(q)))
             for p, q in zip(na, nb))


def main(argv):
  if len(argv) != 2:
    raise app.UsageError(f'usage: python -m experiments.recheck <study> [--runs=OUTDIR]; '
                         f'studies: {", ".join(STUDIES)}')
  xla_cpu.apply_defaults()  # CPU runtime defaults, before any JAX computation
  ok = recheck(argv[1], runs=flags.FLAGS.runs)
  print('recheck', 'passed' if ok else 'FAILED', 'for', argv[1])
  sys.exit(0 if ok else 1)


if __name__ == '__main__':
  define_flags()
  app.run(main)
