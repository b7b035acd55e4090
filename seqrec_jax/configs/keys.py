"""Config keys declared once: `Key(path, default, help, check)`.

The table is `configs/default.py: KEYS`; from it `build` makes the ConfigDict every config
file starts from (config files only override values), `configs/validate.py` runs every key's
check and `--help` (configs/help.py) prints every key's help, default and rule. A dataset
module declares its own block: `KEYS` with paths relative to `data.<name>` (its `DEFAULTS` =
`defaults(KEYS)`), which default.py takes with `block('data.<name>', module.KEYS)`.

Add a key: one line in its section of the table, e.g.

  Key('optim.b1', 0.9, 'Adam: decay of the first moment (optax b1)', number(0, 1, hi_open=True)),

and read it as `config.optim.b1` (never `.get(key, default)`: every config has every key). A
family with many keys (e.g. two-tower retrieval) may keep its section as a `KEYS` tuple in a
module that imports nothing heavier than this one, appended to default.KEYS with `block`.
A key added after runs recorded their config.json must default to what those runs did: a
resume treats a key missing from the recorded config as its default (workdir.py).

A check refuses a value with a reason: `check(value, path) -> None | 'must be <rule>'`, and
`check.rule()` is what --help prints. Option lists come from their owners, imported when a
check runs (configs load without flax/optax): `one_of(owner('seqrec_jax.state', 'OPTIMIZERS'))`.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Any, Callable, Collection, Iterable, Mapping

import ml_collections

Options = Callable[[], Collection]


@dataclasses.dataclass(frozen=True)
class Check:
  """ok(value) -> bool; rule() -> the allowed values in words ('an integer >= 1');
  unknown: the registry's noun for a name check ('model' -> "unknown model 'x' ...")."""
  ok: Callable[[Any], bool]
  rule: Callable[[], str]
  unknown: str = ''
  options: Options | None = None

  def __call__(self, value, path: str = '') -> str | None:
    if self.ok(value):
      return None
    if self.unknown:
      return (f'unknown {self.unknown} {value!r} (config.{path}); registered: '
              f'{sorted(self.options())}')
    return f'must be {self.rule()}'


@dataclasses.dataclass(frozen=True)
class Key:
  """path: dotted ('optim.learning_rate'); default; help: what it does (one or two sentences);
  check: the values allowed (None: any value of the default's type); type: the value type
  of a key whose default is None (a platform default: platform_defaults.py)."""
  path: str
  default: Any
  help: str
  check: Check | None = None
  type: type | None = None

  def __post_init__(self):
    if self.check is None:
      object.__setattr__(self, 'check', typed(self.type or type(self.default)))


# ---------------------------------------------------------------------------------- options

def owner(module: str, attr: str, pick: Callable[[Any], Collection] | None = None) -> Options:
  """The option list `module.attr` (a tuple, or a registry dict: its names), imported when
  first needed; pick(value) derives the options (e.g. ('same',) + activations)."""
  def get():
    value = getattr(importlib.import_module(module), attr)
    return tuple(pick(value) if pick else value)
  return get


def _options(options: Options | Collection) -> Options:
  return options if callable(options) else (lambda: tuple(options))


# ----------------------------------------------------------------------------------- checks

def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def satisfies(ok: Callable[[Any], bool], rule: str) -> Check:
  """A check by predicate, with its rule in words."""
  return Check(ok, lambda: rule)


def integer(lo: int | None = None, note: str = '') -> Check:
  rule = 'an integer' + (f' >= {lo}' if lo is not None else '') + (f' ({note})' if note else '')
  return satisfies(lambda v: _is_int(v) and (lo is None or v >= lo), rule)


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False) -> Check:
  """A finite number; lo/hi bounds (closed unless *_open)."""
  if hi is None:
    rule = 'a finite number' + ('' if lo is None else f' {">" if lo_open else ">="} {lo}')
  else:
    rule = f'in {"(" if lo_open else "["}{lo}, {hi}{")" if hi_open else "]"}'

  def ok(v):
    return _is_num(v) and (lo is None or (v > lo if lo_open else v >= lo)) and (
        hi is None or (v < hi if hi_open else v <= hi))
  return satisfies(ok, rule)


def one_of(options: Options | Collection, fold: Callable[[Any], Any] | None = None) -> Check:
  """One of `options` (a tuple, or owner(...)); fold(value) first (e.g. lower case)."""
  get = _options(options)
  return Check(lambda v: (fold(v) if fold else v) in get(), lambda: f'one of {sorted(get())}')


def registered(what: str, options: Options) -> Check:
  """A name in a registry (owner(...) of a dict filled by decorators)."""
  return Check(lambda v: v in options(), lambda: f'a registered {what}: {sorted(options())}',
               unknown=what, options=options)


def optional(check: Check, meaning: str = 'the platform default') -> Check:
  return Check(lambda v: v is None or check.ok(v), lambda: f'None ({meaning}) or {check.rule()}')


def boolean() -> Check:
  return satisfies(lambda v: isinstance(v, bool), 'True or False')


def text(note: str = '') -> Check:
  return satisfies(lambda v: isinstance(v, str), 'a string' + (f' ({note})' if note else ''))


def sizes(lo: int = 1) -> Check:
  """A tuple of layer sizes (integers >= lo); () allowed."""
  return satisfies(lambda v: isinstance(v, (list, tuple)) and all(_is_int(x) and x >= lo
                                                                  for x in v),
                   f'a tuple of integers >= {lo}')


def numbers(lo: float = 0, note: str = '') -> Check:
  return satisfies(lambda v: isinstance(v, (list, tuple)) and all(_is_num(x) and x >= lo
                                                                  for x in v),
                   f'a list of finite numbers >= {lo}' + (f' ({note})' if note else ''))


def names(options: Options | Collection | None = None, note: str = '') -> Check:
  """A tuple of strings, each one of `options` when given."""
  get = _options(options) if options is not None else None

  def ok(v):
    return isinstance(v, (list, tuple)) and all(
        isinstance(x, str) and (get is None or x in get()) for x in v)
  return Check(ok, lambda: 'a tuple of ' + (f'names from {sorted(get())}' if get else 'strings')
               + (f' ({note})' if note else ''))


def typed(t: type) -> Check:
  """Any value of type t (the check of a key declared without one)."""
  if t is bool:
    return boolean()
  if t is int:
    return integer()
  if t is float:
    return number()
  if t is str:
    return text()
  if issubclass(t, (tuple, list)):
    return satisfies(lambda v: isinstance(v, (list, tuple)), 'a tuple')
  return satisfies(lambda v: isinstance(v, t), f'a {t.__name__}')


# ------------------------------------------------------------------------------------ table

def block(prefix: str, keys: Iterable[Key]) -> tuple[Key, ...]:
  """keys with paths relative to `prefix` (a dataset module's KEYS) -> absolute paths."""
  return tuple(dataclasses.replace(k, path=f'{prefix}.{k.path}') for k in keys)


def defaults(keys: Iterable[Key]) -> dict[str, Any]:
  """{path: default} (a dataset module's DEFAULTS from its KEYS)."""
  return {k.path: k.default for k in keys}


def build(keys: Iterable[Key]) -> ml_collections.ConfigDict:
  """The ConfigDict of `keys` at their defaults (a None default typed by Key.type)."""
  root = ml_collections.ConfigDict()
  for k in keys:
    *parents, leaf = k.path.split('.')
    node = root
    for p in parents:
      if p not in node:
        node[p] = ml_collections.ConfigDict()
      node = node[p]
    if leaf in node:
      raise ValueError(f'config key {k.path!r} is declared twice')
    node[leaf] = (ml_collections.FieldReference(None, field_type=k.type)
                  if k.default is None and k.type else k.default)
  return root


def flatten(d: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """{'a.b': leaf} for a nested ConfigDict / dict."""
  out = {}
  for k, v in d.items():
    if hasattr(v, 'items'):
      out.update(flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out
