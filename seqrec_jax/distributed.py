"""Multi-process start-up: `jax.distributed.initialize` from flags or the environment.

Must run before anything touches devices (`jax.devices()`, any array op). Three modes
(--distributed):
  auto  (default) initialise when a multi-process launch is evident: any of
        --coordinator_address / --num_processes / --process_id (or the env vars
        JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID) is set, or a SLURM job
        step / Open MPI job / GKE TPU slice with more than one task; otherwise one process.
  on    always call `jax.distributed.initialize`; JAX fills missing values by auto-detection
        (Cloud TPU VM metadata, SLURM, Open MPI, Kubernetes). Use this on a TPU VM slice.
  off   never (one process, all its local devices).

  python -m seqrec_jax.main --config=... --workdir=... \
      --coordinator_address=10.0.0.1:8476 --num_processes=2 --process_id=0
"""
from __future__ import annotations

import os
from typing import Mapping

from absl import flags, logging

MODES = ('auto', 'on', 'off')

_MODE = flags.DEFINE_enum('distributed', 'auto', MODES,
                          'Multi-process start-up: auto | on | off (see distributed.py).')
_COORD = flags.DEFINE_string('coordinator_address', None,
                             'host:port of process 0 (env JAX_COORDINATOR_ADDRESS).')
_NPROC = flags.DEFINE_integer('num_processes', None, 'Process count (env JAX_NUM_PROCESSES).')
_PID = flags.DEFINE_integer('process_id', None, 'This process, 0..N-1 (env JAX_PROCESS_ID).')
_LOCAL = flags.DEFINE_list('local_device_ids', None,
                           'Only these local devices (env JAX_LOCAL_DEVICE_IDS).')


def _env_int(env: Mapping[str, str], name: str) -> int | None:
  v = env.get(name)
  if v is None or v == '':
    return None
  try:
    return int(v)
  except ValueError:
    raise ValueError(f'environment variable {name}={v!r} is not an integer') from None


def cluster_detected(env: Mapping[str, str]) -> str | None:
  """Name of a multi-process launcher JAX can auto-detect from `env`, else None."""
  if all(k in env for k in ('SLURM_JOB_ID', 'SLURM_NODELIST', 'SLURM_NTASKS', 'SLURM_PROCID',
                            'SLURM_LOCALID')) and _env_int(env, 'SLURM_NTASKS') > 1:
    return 'slurm'
  if 'OMPI_MCA_orte_hnp_uri' in env and (_env_int(env, 'OMPI_COMM_WORLD_SIZE') or 1) > 1:
    return 'ompi'
  hosts = env.get('TPU_PROCESS_ADDRESSES') or env.get('TPU_WORKER_HOSTNAMES') or ''
  if len([h for h in hosts.split(',') if h]) > 1:
    return 'tpu'
  return None


def resolve(mode: str = 'auto', coordinator_address: str | None = None,
            num_processes: int | None = None, process_id: int | None = None,
            env: Mapping[str, str] | None = None) -> dict | None:
  """The kwargs for `jax.distributed.initialize`, or None for a single-process run."""
  if mode not in MODES:
    raise ValueError(f'--distributed={mode!r}; choose from {MODES}')
  env = os.environ if env is None else env
  kw = dict(coordinator_address=coordinator_address or env.get('JAX_COORDINATOR_ADDRESS'),
            num_processes=num_processes if num_processes is not None
            else _env_int(env, 'JAX_NUM_PROCESSES'),
            process_id=process_id if process_id is not None else _env_int(env, 'JAX_PROCESS_ID'))
  if mode == 'off':
    return None
  explicit = any(v is not None for v in kw.values())
  if mode == 'auto' and not explicit and cluster_detected(env) is None:
    return None
  n, p = kw['num_processes'], kw['process_id']
  if n is not None and n < 1:
    raise ValueError(f'--num_processes={n} must be >= 1')
  if p is not None and n is not None and not 0 <= p < n:
    raise ValueError(f'--process_id={p} must be in [0, {n}) for --num_processes={n}')
  return {k: v for k, v in kw.items() if v is not None}


def initialize(mode: str = 'auto', coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               local_device_ids=None) -> bool:
  """Initialises the JAX distributed runtime when `resolve` says so; returns whether it did."""
  import jax  # pylint: disable=g-import-not-at-top
  kw = resolve(mode, coordinator_address, num_processes, process_id)
  if kw is None:
    return False
  if jax.distributed.is_initialized():
    return True
  if local_device_ids:
    kw['local_device_ids'] = [int(i) for i in local_device_ids]
  logging.info('jax.distributed.initialize(%s) [cluster: %s]', kw,
               cluster_detected(os.environ) or 'explicit')
  jax.distributed.initialize(**kw)
  logging.info('process %d of %d, %d local / %d global devices', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def initialize_from_flags() -> bool:
  """Call from main() before importing modules that touch devices."""
  return initialize(_MODE.value, _COORD.value, _NPROC.value, _PID.value, _LOCAL.value)
