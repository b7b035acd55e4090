"""CPU runtime defaults for this codebase, applied by its entry points (`seqrec_jax.main`, the
experiments' and benchmarks' mains) with `apply_defaults()`, never by `import seqrec_jax`. Library
users call `seqrec_jax.xla_cpu.apply_defaults()` themselves, before their first JAX computation.
They are applied only when JAX will run on CPU (`cpu_platform()`: JAX_PLATFORMS / jax_platforms
says cpu, or no accelerator plugin is installed); on GPU/TPU nothing is changed.

1. XLA flags (`apply_default_flags`):
`--xla_cpu_experimental_ynn_fusion_type=` (empty: no YNNPACK library fusions) makes XLA emit
its own kernels for the DIN train step's dots, reductions and elementwise fusions. Measured
with benchmarks/din_throughput.py on 2 AMD EPYC cores (jaxlib 0.10.2): DIN train step +30%
examples per CPU-second at L=50 and +6% at L=200 (docs/performance.md).

XLA reads XLA_FLAGS when its CPU backend starts (the first computation), so this takes effect
if `apply_defaults()` runs before any JAX computation; `import jax` alone is fine. The
flag is only added for jaxlib versions it was tested with (an unknown flag aborts XLA), never
overrides a value the user put in XLA_FLAGS.

2. glibc malloc (`tune_malloc`): XLA allocates a step's temporaries (tens of MB: gathered
histories, Dice activations, the dense embedding gradient) with malloc on every step; above
glibc's mmap threshold each one is a fresh mmap whose pages fault in again every step. Raising
the threshold to its 32 MB maximum and keeping freed memory (trim threshold 2 GB) reuses them:
DIN train step +25% wall-clock at L=50 in interleaved runs on this machine. Memory that was
peak once stays mapped (peak RSS is unchanged; RSS after the peak is higher).

SEQREC_JAX_XLA_DEFAULTS=0 turns both off.
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import sys

DEFAULT_FLAGS = {'--xla_cpu_experimental_ynn_fusion_type': ''}
TESTED_JAXLIB = ('0.10.',)


def apply_default_flags() -> list[str]:
  """Appends DEFAULT_FLAGS missing from XLA_FLAGS; returns the flags added."""
  if os.environ.get('SEQREC_JAX_XLA_DEFAULTS', '1') == '0':
    return []
  try:
    version = importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return []
  if not version.startswith(TESTED_JAXLIB):
    return []
  current = os.environ.get('XLA_FLAGS', '')
  added = [f'{k}={v}' for k, v in DEFAULT_FLAGS.items() if k not in current]
  if added:
    os.environ['XLA_FLAGS'] = ' '.join([current, *added]).strip()
  return added


# mallopt parameters (glibc malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MALLOC_SETTINGS = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: (1 << 31) - 1}


def tune_malloc() -> bool:
  """Sets MALLOC_SETTINGS with glibc's mallopt; False where that is unavailable or disabled.
  MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ in the environment take precedence."""
  if os.environ.get('SEQREC_JAX_XLA_DEFAULTS', '1') == '0' or not sys.platform.startswith('linux'):
    return False
  if 'MALLOC_MMAP_THRESHOLD_' in os.environ or 'MALLOC_TRIM_THRESHOLD_' in os.environ:
    return False
  try:
    libc = ctypes.CDLL('libc.so.6')
    return all(libc.mallopt(k, v) == 1 for k, v in MALLOC_SETTINGS.items())
  except (OSError, AttributeError):      # not glibc
    return False


# Distributions that give JAX a non-CPU backend (PJRT plugins and libtpu).
_ACCELERATOR_DISTS = ('jax-cuda12-plugin', 'jax-cuda13-plugin', 'jax-rocm7-plugin',
                      'jax-rocm6-plugin', 'libtpu', 'libtpu-nightly')


def cpu_platform() -> bool:
  """Whether JAX will run on CPU, decided without starting a backend (which would read XLA_FLAGS
  too early): the first entry of JAX_PLATFORMS / jax.config.jax_platforms when set, else True
  only if no accelerator plugin is installed."""
  platforms = os.environ.get('JAX_PLATFORMS', '')
  if not platforms and 'jax' in sys.modules:
    platforms = sys.modules['jax'].config.jax_platforms or ''
  if platforms:
    return platforms.split(',')[0].strip().lower() == 'cpu'
  if importlib.util.find_spec('jax_plugins') is not None:
    return False
  for dist in _ACCELERATOR_DISTS:
    try:
      importlib.metadata.version(dist)
      return False
    except importlib.metadata.PackageNotFoundError:
      pass
  return not importlib.metadata.entry_points(group='jax_plugins')


def apply_defaults() -> dict[str, object]:
  """Applies the CPU defaults (XLA flags, malloc) when JAX will run on CPU; call before the first
  JAX computation. Returns what was done, e.g. {'flags': [...], 'malloc': True}."""
  if os.environ.get('SEQREC_JAX_XLA_DEFAULTS', '1') == '0' or not cpu_platform():
    return {'flags': [], 'malloc': False}
  return {'flags': apply_default_flags(), 'malloc': tune_malloc()}
