"""Config loading outside absl (experiments, tests), and the one --override parser.

`load_config('path/to/cfg.py:arg', overrides)`; `parse_overrides(['key=value', ...], config)`
(every study's --override: values typed by the config's fields); `recorded(json)`: a
workdir's config.json as a config.
"""
from __future__ import annotations

import ast
import importlib.util
import os
from typing import Any, Iterable, Mapping

import ml_collections

_HERE = os.path.dirname(os.path.abspath(__file__))


def load_config(spec: str, overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
  """spec: 'file.py[:arg]' (a path, or a bare name under seqrec_jax/configs/).

  overrides: dotted paths -> values, applied like --config.<path>=<value>; an unknown path is
  a KeyError naming it. The returned config is locked (no new keys).
  """
  path, _, arg = spec.partition(':')
  if not os.path.exists(path):
    cand = os.path.join(_HERE, os.path.basename(path))
    if not os.path.exists(cand):
      raise FileNotFoundError(f'config file {path!r} not found (also tried {cand})')
    path = cand
  mod_spec = importlib.util.spec_from_file_location(f'_cfg_{abs(hash(path))}', path)
  mod = importlib.util.module_from_spec(mod_spec)
  mod_spec.loader.exec_module(mod)
  cfg = mod.get_config(arg) if arg else mod.get_config()
  cfg.lock()
  for key, value in (overrides or {}).items():
    set_path(cfg, key, value)
  return cfg


def set_path(cfg: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
  """Sets cfg.<dotted> = value; raises KeyError naming the first unknown component."""
  node = cfg
  parts = dotted.split('.')
  for i, p in enumerate(parts):
    if p not in node:
      have = sorted(node.keys())
      raise KeyError(f'config key {".".join(parts[:i + 1])!r} does not exist '
                     f'(override {dotted}={value!r}); keys here: {have}')
    if i == len(parts) - 1:
      node[p] = value
    else:
      node = node[p]


def recorded(d: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """A config recorded as JSON (a workdir's config.json) as a locked ConfigDict over the
  table's defaults: keys added since it was recorded are at their defaults (what the run did,
  configs/keys.py), lists are tuples again, keys no longer in the table are dropped."""
  from seqrec_jax.configs import default, keys  # pylint: disable=g-import-not-at-top
  cfg = default.get_config()
  for k, v in keys.flatten(d).items():
    if k in default.BY_PATH:
      set_path(cfg, k, tuple(v) if isinstance(v, list) else v)
  return cfg


# ------------------------------------------------------------------ --override for every study
OVERRIDE_HELP = (
    'Config override key=value for every cell (repeatable; applied last), e.g. '
    'data.movielens.path=/data/ml-20m.zip, data.criteo.path=/data/dac/train.txt or '
    'train.eval_every=5000. The value takes the type of the config field it sets (int, float, '
    'bool: true/false/1/0, str: the text as given, tuple: a literal or a comma list); an '
    'unknown key fails. data.<dataset>.* keys of another dataset than the cell\'s are dropped. '
    'Overrides are part of every cell\'s id, overrides, config and command.')


def define_override_flag(extra_help: str = '') -> None:
  """--override (repeatable key=value), with OVERRIDE_HELP; call where the study defines its
  flags (absl flags are global: only when run as a script)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_multi_string('override', [], OVERRIDE_HELP + extra_help)


def _literal(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text               # a bare string such as a path


def _field_type(config: Any, dotted: str) -> type | None:
  """The type of the field `dotted` names in config (a ConfigDict, a dict, or an object with
  attributes such as a dataclass); None when it holds None without a declared type. An unknown
  key is a KeyError naming it."""
  node, parts = config, dotted.split('.')
  for i, p in enumerate(parts):
    last = i == len(parts) - 1
    if isinstance(node, ml_collections.ConfigDict):
      if p not in node:
        raise KeyError(f'config key {".".join(parts[:i + 1])!r} does not exist (override '
                       f'{dotted}); keys here: {sorted(node.keys())}')
      if last:
        return node.get_ref(p).get_type()
      node = node[p]
    elif isinstance(node, Mapping):
      if p not in node:
        raise KeyError(f'key {".".join(parts[:i + 1])!r} does not exist (override {dotted}); '
                       f'keys here: {sorted(node)}')
      node = node[p]
    else:
      if not hasattr(node, p) or p.startswith('_'):
        have = sorted(getattr(node, '__dataclass_fields__', None) or
                      [k for k in vars(node) if not k.startswith('_')])
        raise KeyError(f'field {".".join(parts[:i + 1])!r} does not exist (override '
                       f'{dotted}); fields: {have}')
      node = getattr(node, p)
  return None if node is None else type(node)


_TRUE, _FALSE = ('true', '1', 'yes', 'on'), ('false', '0', 'no', 'off')


def typed_value(config: Any, key: str, value: Any, flag: str = '--override') -> Any:
  """value (text from a flag, or an already typed value such as JSON's) as the type of the
  field `key` of config; a ValueError names the flag, the key and the type."""
  t = _field_type(config, key)
  text = value if isinstance(value, str) else None

  def bad(why=''):
    return ValueError(f'{flag}={key}={value!r}: {key} is of type {t.__name__} in the config'
                      + (f' ({why})' if why else ''))
  if t is None or t is type(None):
    return _literal(text) if text is not None else value
  if text is not None and text == 'None':
    return None               # a typed field that may be None (FieldReference)
  if issubclass(t, ml_collections.ConfigDict) or issubclass(t, Mapping):
    raise bad('a block: set its keys, e.g. ' + key + '.<name>=...')
  if t is bool:
    if text is None:
      if isinstance(value, bool):
        return value
      raise bad()
    if text.strip().lower() in _TRUE:
      return True
    if text.strip().lower() in _FALSE:
      return False
    raise bad('true/false/1/0')
  if t is int:
    if text is None:
      if isinstance(value, int) and not isinstance(value, bool):
        return value
      if isinstance(value, float) and value.is_integer():
        return int(value)
      raise bad()
    try:
      return int(text.replace('_', ''))
    except ValueError:
      pass
    try:
      f = float(text)
    except ValueError:
      raise bad() from None
    if not f.is_integer():
      raise bad('not a whole number')
    return int(f)
  if t is float:
    if text is None:
      if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
      raise bad()
    try:
      return float(text.replace('_', ''))
    except ValueError:
      raise bad() from None
  if t is str:
    if text is None:
      raise bad()
    got = _literal(text)
    return got if isinstance(got, str) else text   # 'quoted' -> quoted; 123 -> '123'
  if issubclass(t, (tuple, list)):
    if text is None:
      if isinstance(value, (tuple, list)):
        return tuple(value)
      raise bad()
    if not text.strip():
      return ()
    got = _literal(text)
    if isinstance(got, (tuple, list)):
      return tuple(got)
    if isinstance(got, str) or ',' in text:   # a comma list of names or numbers
      return tuple(_literal(x.strip()) for x in text.split(',') if x.strip())
    return (got,)
  return _literal(text) if text is not None else value


def parse_overrides(items: Iterable[str] | Mapping[str, Any], config: Any = None,
                    flag: str = '--override') -> dict[str, Any]:
  """The one override parser of every study and benchmark: 'key=value' strings (repeatable
  --override flags; or a mapping, e.g. parsed JSON) -> {dotted key: value}.

  With `config` (a ConfigDict, or an object with attribute fields such as a dataclass) each
  value takes the type of the field it sets (typed_value: int, float, bool, str - a path
  stays text -, tuple) and an unknown key is a KeyError naming it. Without, values are Python
  literals where they parse (1, 0.5, True, (64, 32)), else the text.
  """
  pairs = list(items.items()) if isinstance(items, Mapping) else []
  if not isinstance(items, Mapping):
    for item in items:
      key, sep, raw = item.partition('=')
      if not sep or not key.strip():
        raise ValueError(f'{flag}={item!r}: expected key=value')
      pairs.append((key.strip(), raw))
  out = {}
  for key, raw in pairs:
    if config is not None:
      out[key] = typed_value(config, key, raw, flag)
    else:
      out[key] = _literal(raw) if isinstance(raw, str) else raw
  return out


def dataset_blocks() -> tuple[str, ...]:
  """Names of the registered datasets (each has its data.<name> block)."""
  from seqrec_jax import data  # pylint: disable=g-import-not-at-top
  return tuple(sorted(data.DATASETS))


def for_dataset(overrides: Mapping[str, Any], dataset: str) -> dict[str, Any]:
  """overrides without the data.<other dataset>.* keys: one --override list serves a study
  over several datasets (data.movielens.path does not touch the synthetic cells)."""
  blocks = set(dataset_blocks()) - {dataset}
  return {k: v for k, v in overrides.items()
          if not (k.startswith('data.') and k.split('.')[1] in blocks and k.count('.') >= 2)}


def check_dataset(study: str, dataset: str, fits: Mapping[str, str], needs: str) -> None:
  """Fails (absl UsageError, naming what fits and why) unless `dataset` is one of `fits`
  ({name: what it gives the study}); `needs` says what the study's inputs need."""
  if dataset in fits:
    return
  from absl import app  # pylint: disable=g-import-not-at-top
  known = dataset_blocks()
  what = 'not a registered dataset' if dataset not in known else 'does not fit'
  raise app.UsageError(
      f'--dataset={dataset}: {what} for {study}, which needs {needs}. Datasets that fit: '
      + '; '.join(f'{k} ({v})' for k, v in fits.items())
      + f'. Registered datasets: {", ".join(known)}. Any of them can be read from another path '
      'with --override=data.<name>.path=...')


def study_overrides(study: str, dataset: str, items: Iterable[str], config: Any,
                    fits: Mapping[str, str], needs: str) -> dict[str, Any]:
  """A study's --override values for one dataset's cells: check_dataset, parse_overrides typed
  by config (a ConfigDict or a config spec such as 'seqrec_jax/configs/din.py:movielens'), then
  for_dataset. A bad key or value is an absl UsageError naming it (a message, no traceback)."""
  check_dataset(study, dataset, fits, needs)
  if isinstance(config, str):
    config = load_config(config)
  try:
    return for_dataset(parse_overrides(items, config), dataset)
  except (KeyError, ValueError) as e:
    from absl import app  # pylint: disable=g-import-not-at-top
    raise app.UsageError(str(e.args[0]) if isinstance(e, KeyError) else str(e)) from None
