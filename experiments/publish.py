"""Dated study results in the docs.

A default study run (default --outdir, no --num_steps, --docs on) copies its tables and plots
to `docs/results/<study>/`, next to the pages that show them, and rewrites every include block
of those pages. A page shows a results file between two markers, path relative to docs/:

  <!-- include:results/attention_ablation/synthetic/table.md -->
  (the file's text; rewritten by `refresh_includes`)
  <!-- /include:results/attention_ablation/synthetic/table.md -->

tests/test_docs.py checks that every block equals its file, so a page never shows a table
other than the one next to its plots.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
from typing import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, 'docs')
_BLOCK = re.compile(r'(<!-- include:(\S+) -->\n).*?(<!-- /include:\2 -->)', re.S)


def publish(outdir: str, study: str, names: Sequence[str], docs: str = DOCS) -> str:
  """Copies outdir/<name> (names may hold subdirectories) to docs/results/<study>/<name>,
  then refreshes the include blocks of docs/*.md. Returns the destination directory."""
  dest = os.path.join(docs, 'results', study)
  for name in names:
    os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
    shutil.copyfile(os.path.join(outdir, name), os.path.join(dest, name))
  refresh_includes(docs)
  return dest


def render(page: str, docs: str = DOCS, missing_ok: bool = False) -> str:
  """The page with every include block replaced by its file's current text. A block whose file
  does not exist is an error, or (missing_ok) left as it is."""
  def fill(m: re.Match) -> str:
    path = os.path.join(docs, m.group(2))
    if not os.path.isfile(path):
      if missing_ok:
        return m.group(0)
      raise FileNotFoundError(f'include block names {m.group(2)!r}, but {path} does not exist')
    with open(path) as f:
      text = f.read()
    return m.group(1) + text + ('' if text.endswith('\n') else '\n') + m.group(3)
  return _BLOCK.sub(fill, page)


def includes(page: str) -> list[str]:
  """Paths (relative to docs/) of the page's include blocks."""
  return [m.group(2) for m in _BLOCK.finditer(page)]


def refresh_includes(docs: str = DOCS) -> list[str]:
  """Rewrites the include blocks of every docs/*.md; returns the pages that changed. A block
  naming a file that no study has written yet is left alone with a warning (another study's
  page must not stop this one's publishing; tests/test_docs.py still fails on it)."""
  changed = []
  for path in sorted(glob.glob(os.path.join(docs, '*.md'))):
    with open(path) as f:
      page = f.read()
    for inc in includes(page):
      if not os.path.isfile(os.path.join(docs, inc)):
        print(f'warning: {path} has an include block for {inc}, which does not exist yet; '
              'left as it is')
    new = render(page, docs, missing_ok=True)
    if new != page:
      with open(path, 'w') as f:
        f.write(new)
      changed.append(path)
  return changed
