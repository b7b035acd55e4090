"""The front page and docs/ stay usable: the two commands up front, every relative link and
anchor resolves, every page is reachable from the README, every `bash launch.sh <cmd>` exists,
CI runs the test command, and the result tables the pages include equal the files the studies
wrote."""
import glob
import os
import re

import pytest

from experiments import publish

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ['README.md'] + sorted(os.path.relpath(p, ROOT)
                               for p in glob.glob(os.path.join(ROOT, 'docs', '*.md')))
_FENCE = re.compile(r'^```.*?^```', re.S | re.M)
_CODE = re.compile(r'`[^`\n]*`')
_LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')


def _read(rel: str) -> str:
  with open(os.path.join(ROOT, rel)) as f:
    return f.read()


def _slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, punctuation dropped, spaces -> '-'."""
  text = heading.replace('`', '').strip().lower()
  return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def _anchors(text: str) -> set[str]:
  seen, out = {}, set()
  for m in re.finditer(r'^#{1,6} (.+)$', _FENCE.sub('', text), re.M):
    s = _slug(m.group(1))
    out.add(s if s not in seen else f'{s}-{seen[s]}')
    seen[s] = seen.get(s, 0) + 1
  return out


def _links(text: str) -> list[str]:
  prose = _CODE.sub('code', _FENCE.sub('', text))
  return [t for t in _LINK.findall(prose) if not re.match(r'[a-z]+:', t)]


def test_readme_starts_with_the_two_commands_and_stays_short():
  lines = _read('README.md').splitlines()
  head = '\n'.join(lines[:40])
  assert 'bash launch.sh demo' in head and 'bash launch.sh test' in head
  assert len(lines) <= 150, f'README.md has {len(lines)} lines; move detail to docs/'


@pytest.mark.parametrize('page', PAGES)
def test_relative_links_and_anchors_resolve(page):
  base = os.path.dirname(os.path.join(ROOT, page))
  bad = []
  for target in _links(_read(page)):
    path, _, anchor = target.partition('#')
    full = os.path.normpath(os.path.join(base, path)) if path else os.path.join(ROOT, page)
    if not os.path.exists(full):
      bad.append(f'{target}: {os.path.relpath(full, ROOT)} does not exist')
    elif anchor and full.endswith('.md'):
      with open(full) as f:
        if anchor not in _anchors(f.read()):
          bad.append(f'{target}: no heading with anchor #{anchor}')
  assert not bad, f'{page}: ' + '; '.join(bad)


def test_every_page_is_reachable_from_the_readme():
  seen, todo = set(), ['README.md']
  while todo:
    page = todo.pop()
    if page in seen:
      continue
    seen.add(page)
    base = os.path.dirname(os.path.join(ROOT, page))
    for target in _links(_read(page)):
      path = os.path.relpath(os.path.normpath(os.path.join(base, target.partition('#')[0])), ROOT)
      if path.endswith('.md') and os.path.exists(os.path.join(ROOT, path)):
        todo.append(path)
  orphans = [p for p in PAGES if p not in seen]
  assert not orphans, f'no link leads from README.md to {orphans}'


def test_launch_sh_knows_every_documented_command():
  known = set(re.findall(r'^\s+([a-z_]+)\)', _read('launch.sh'), re.M))
  used = {}
  for page in PAGES:
    for cmd in re.findall(r'bash launch\.sh ([a-z_]+)', _read(page)):
      used.setdefault(cmd, page)
  missing = {c: p for c, p in used.items() if c not in known}
  assert {'demo', 'test'} <= set(used)
  assert not missing, f'commands not in launch.sh: {missing}'


def test_nothing_points_to_the_old_design_notes():
  old = 'DESIGN' + '.md'        # split so this file does not match itself
  hits = []
  for top in ('seqrec_jax', 'experiments', 'benchmarks', 'tests', 'docs'):
    for path in glob.glob(os.path.join(ROOT, top, '**', '*.*'), recursive=True):
      if path.endswith(('.py', '.md', '.sh', '.toml')):
        with open(path, encoding='utf-8', errors='replace') as f:
          if old in f.read():
            hits.append(os.path.relpath(path, ROOT))
  assert not hits, f'{old} is docs/design.md now: {hits}'


def test_ci_runs_the_test_command():
  assert re.search(r'^bash launch\.sh test\b', _read('.ci/run'), re.M)


@pytest.mark.parametrize('page', [p for p in PAGES if p.startswith('docs')])
def test_included_results_equal_their_files(page):
  text = _read(page)
  assert publish.render(text) == text, (
      f'{page}: an include block differs from its file; run '
      'python -c "from experiments import publish; publish.refresh_includes()"')


def test_publish_copies_results_and_refreshes_pages(tmp_path):
  out, docs = tmp_path / 'run', tmp_path / 'docs'
  (out / 'ds').mkdir(parents=True)
  docs.mkdir()
  (out / 'table.md').write_text('| a |\n|---|\n| 2 |\n')
  (out / 'ds' / 'plot.png').write_bytes(b'png')
  inc = 'results/study/table.md'
  page = docs / 'study.md'
  page.write_text(f'intro\n<!-- include:{inc} -->\nold\n<!-- /include:{inc} -->\nend\n')
  dest = publish.publish(str(out), 'study', ['table.md', 'ds/plot.png'], docs=str(docs))
  assert dest == str(docs / 'results' / 'study')
  assert (docs / 'results' / 'study' / 'ds' / 'plot.png').read_bytes() == b'png'
  assert page.read_text() == (f'intro\n<!-- include:{inc} -->\n| a |\n|---|\n| 2 |\n'
                              f'<!-- /include:{inc} -->\nend\n')
  assert publish.includes(page.read_text()) == [inc]
  # A block whose file no study has written yet: the page check fails on it, but publishing
  # (another study's run) leaves it alone and still refreshes the other blocks.
  missing = '<!-- include:results/none.md -->\nkeep\n<!-- /include:results/none.md -->\n'
  page.write_text(missing + f'<!-- include:{inc} -->\nstale\n<!-- /include:{inc} -->\n')
  with pytest.raises(FileNotFoundError, match='none.md'):
    publish.render(page.read_text(), str(docs))
  assert publish.refresh_includes(str(docs)) == [str(page)]
  assert page.read_text().startswith(missing) and 'stale' not in page.read_text()


def test_slug_matches_github():
  assert _slug('Add an attention variant') == 'add-an-attention-variant'
  assert _slug('Census: income + never-married (`experiments/census_multitask.py`)') == (
      'census-income--never-married-experimentscensus_multitaskpy')
