"""`python -m seqrec_jax.main --help`: every config key with its value and its meaning.

Meanings are the inline comments beside the keys in configs/default.py and beside the dataset
modules' DEFAULTS (`key=value,  # meaning`), so the help text cannot drift from the code.
"""
from __future__ import annotations

import importlib
import inspect
import re

from seqrec_jax.configs import validate

_DEFAULT_LINE = re.compile(r'^\s*c\.([\w.]+)\s*=\s*.*?#\s*(.+?)\s*$')
_KEY_LINE = re.compile(r'^\s*c\.([\w.]+)\s*=')


def meanings() -> dict[str, str]:
  """Dotted key -> the comment beside it in default.py or a dataset module's DEFAULTS."""
  from seqrec_jax.configs import default  # pylint: disable=g-import-not-at-top
  out, block = {}, []
  for line in inspect.getsource(default).splitlines():
    if line.strip().startswith('#'):
      block.append(line.strip().lstrip('#').strip())
      continue
    m = _DEFAULT_LINE.match(line) or _KEY_LINE.match(line)
    if m and m.lastindex == 2:
      out[m.group(1)] = m.group(2)
    elif m and block:              # the comment block just above the key
      out[m.group(1)] = ' '.join(block)
    block = []
  for name, mod in _dataset_modules(default.get_config()):
    src = inspect.getsource(mod)
    depth = 0
    for line in src[src.find('\nDEFAULTS') + 1:].splitlines():   # the DEFAULTS block only
      code, _, note = line.partition('#')
      for key in re.findall(r'(\w+)\s*=', code) + re.findall(r"'(\w+)'\s*:", code):
        if note.strip() and key in mod.DEFAULTS:
          out[f'data.{name}.{key}'] = note.strip()
      depth += code.count('(') + code.count('{') - code.count(')') - code.count('}')
      if depth <= 0:
        break
  return out


def _dataset_modules(config):
  """(name, module) for every `config.data.<name>` block that is a dataset module's DEFAULTS."""
  out = []
  for name, value in config.data.items():
    if not hasattr(value, 'items'):
      continue
    try:
      mod = importlib.import_module(f'seqrec_jax.data.{name}')
    except ModuleNotFoundError:
      continue
    if hasattr(mod, 'DEFAULTS'):
      out.append((name, mod))
  return out


def describe(config, source: str) -> str:
  """One line per key: `key = value    meaning`."""
  flat = validate.flatten(config)
  notes = meanings()
  width = max(len(f'{k} = {v!r}') for k, v in flat.items())
  lines = [f'Config keys, with the values of {source}',
           '(override any with --config.<key>=<value>; None = the platform default, '
           'seqrec_jax/platform_defaults.py):']
  for k in sorted(flat):
    left = f'{k} = {flat[k]!r}'
    note = notes.get(k, '')
    lines.append(f'  {left:<{min(width, 58)}}  {note}'.rstrip())
  return '\n'.join(lines)
