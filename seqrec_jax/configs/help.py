"""`python -m seqrec_jax.main --help`: every config key of the table (configs/default.py:
KEYS) with its value, its meaning and the values it allows, grouped by block."""
from __future__ import annotations

from seqrec_jax.configs.keys import flatten


def _rule(key) -> str:
  try:
    return key.check.rule()
  except (ImportError, AttributeError) as e:   # an option list's owner fails to import
    return f'(allowed values unavailable: {e})'


def describe(config, source: str) -> str:
  """`key = value  help [allowed] (default d)`, one line per key, under a header per block;
  the default is shown where the config changes it."""
  from seqrec_jax.configs import default  # pylint: disable=g-import-not-at-top
  flat = flatten(config)
  lines = [f'Config keys, with the values of {source}',
           '(override any with --config.<key>=<value>; None = the platform default, '
           'seqrec_jax/platform_defaults.py):']
  width = min(max(len(f'{k} = {v!r}') for k, v in flat.items()), 52)
  block = None
  for path, key in default.BY_PATH.items():
    parent = path.rpartition('.')[0] or 'top level'
    if parent != block:
      lines.append(f'\n[{parent}]')
      block = parent
    value = flat.get(path, key.default)
    left = f'{path} = {value!r}'
    changed = f' (default {key.default!r})' if value != key.default else ''
    lines.append(f'  {left:<{width}}  {key.help} [{_rule(key)}]{changed}')
  return '\n'.join(lines)
