"""Config loading outside absl (experiments, tests).

`load_config('path/to/cfg.py:arg', overrides)`.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any, Mapping

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
