"""Device mesh, shardings and the two training strategies.

Mesh axes: `data` (the batch is sharded, parameters are replicated, XLA inserts the gradient
all-reduce) and `model` (embedding tables are sharded by rows when its size is > 1, see
`state_shardings`; every other parameter stays replicated). The same code runs on 1 CPU,
N local devices, or N hosts after `jax.distributed.initialize()` (seqrec_jax/distributed.py).

Strategies (config.parallel.strategy):
  jit   one `jax.jit` with explicit in/out shardings over the mesh (default). Dice batch
        statistics are global means because XLA inserts the cross-device reductions.
  pmap  `jax.pmap` over the `data` axis for pmap-era code. Each device runs `train_step` on
        its shard; gradients, losses and Dice batch statistics are averaged over the axis,
        so the numerics equal the jit step on the global batch. Data parallel only.

Batch sizes in the config are GLOBAL (all devices and processes together); the per-device
batch is `global / mesh.shape['data']` and each process feeds `global / process_count` rows.
"""
from __future__ import annotations

from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from seqrec_jax.layers import activations

STRATEGIES = ('jit', 'pmap')
DATA, MODEL, RUNS = 'data', 'model', 'runs'


def make_mesh(data: int = -1, model: int = 1, devices=None, runs: int = 1) -> Mesh:
  """A (data, model) mesh; data=-1 takes every device not used by `model` (and `runs`).

  devices: defaults to all (global) devices. A subset is for single-process benchmarks and
  tests (e.g. 1 of 8 forced host devices as the reference).
  runs: > 1 adds a leading `runs` axis that shards the run axis of a multi-run group
  (seqrec_jax/multirun.py); with runs=1 the mesh is the plain (data, model) one.
  """
  devices = list(jax.devices() if devices is None else devices)
  if runs < 1:
    raise ValueError(f'config.parallel.runs={runs} must be >= 1')
  if runs > 1:
    n_all = len(devices)
    if n_all % runs:
      raise ValueError(f'{n_all} devices cannot be split into runs={runs} groups '
                       '(config.parallel.runs)')
    sub = make_mesh(data, model, devices[:n_all // runs])
    auto = jax.sharding.AxisType.Auto
    return jax.make_mesh((runs,) + tuple(sub.shape.values()), (RUNS,) + sub.axis_names,
                         axis_types=(auto,) * 3, devices=devices)
  n = len(devices)
  if model < 1 or (data < 1 and data != -1):
    raise ValueError(f'config.parallel.data={data}, config.parallel.model={model}: '
                     'sizes must be >= 1 (data may be -1 = all remaining devices)')
  if data == -1:
    if n % model:
      raise ValueError(f'{n} devices cannot be split into model={model} groups '
                       '(config.parallel.model)')
    data = n // model
  if data * model != n:
    raise ValueError(f'mesh data={data} x model={model} needs {data * model} devices, '
                     f'have {n} (config.parallel)')
  auto = jax.sharding.AxisType.Auto
  # Auto axis types: the default (Explicit) rejects nn.Embed gathers on data-sharded ids.
  return jax.make_mesh((data, model), (DATA, MODEL), axis_types=(auto, auto), devices=devices)


def data_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(global_batch: int, mesh: Mesh, what: str = 'config.data.batch_size'):
  """A global batch must split evenly over the data axis and over the processes."""
  n, procs = mesh.shape[DATA], jax.process_count()
  if global_batch <= 0 or global_batch % n:
    raise ValueError(f'{what}={global_batch} (global batch) is not divisible by the {n} '
                     f'devices of the data axis ({jax.device_count()} devices, '
                     f'model={mesh.shape[MODEL]}); use a multiple of {n}, e.g. '
                     f'{max(n, global_batch // n * n)}')
  if global_batch % procs:
    raise ValueError(f'{what}={global_batch} is not divisible by the {procs} processes')
  check_process_layout(mesh, global_batch)


def check_process_layout(mesh: Mesh, global_batch: int):
  """Each process reads rows [p*B/P, (p+1)*B/P) of a global batch (data/pipeline.py); its
  devices must hold exactly those rows, which fails if the model axis spans processes."""
  p, procs = jax.process_index(), jax.process_count()
  if procs == 1:
    return
  per = global_batch // procs
  idx = data_sharding(mesh).addressable_devices_indices_map((global_batch,)).values()
  rows = sorted({(s[0].start or 0, s[0].stop or global_batch) for s in idx})
  lo, hi = rows[0][0], rows[-1][1]
  if (lo, hi) != (p * per, (p + 1) * per) or sum(b - a for a, b in rows) != per:
    raise ValueError(f'process {p} of {procs}: its devices hold batch rows {rows} but it '
                     f'reads rows [{p * per}, {(p + 1) * per}); keep config.parallel.model '
                     'within one host (model <= local device count)')


def to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Builds global arrays (sharded on the batch axis) from this process's rows."""
  sh = data_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sh, np.asarray(v)) for k, v in batch.items()}


def to_global_stacked(batch: dict[str, np.ndarray], mesh: Mesh, runs: bool = False
                      ) -> dict[str, jax.Array]:
  """For pmap: [B_local, ...] host rows -> global [n_data, B / n_data, ...] arrays; with runs,
  [S, B_local, ...] -> [n_data, S, B / n_data, ...] (each device: every run's shard)."""
  sh = data_sharding(mesh)
  n_local = len(mesh.local_devices)
  out = {}
  for k, v in batch.items():
    v = np.asarray(v)
    if runs:
      local = v.reshape((v.shape[0], n_local, v.shape[1] // n_local) + v.shape[2:])
      local = np.moveaxis(local, 1, 0)
    else:
      local = v.reshape((n_local, v.shape[0] // n_local) + v.shape[1:])
    out[k] = jax.make_array_from_process_local_data(
        sh, local, (mesh.shape[DATA],) + local.shape[1:])
  return out


def is_embedding_table(path, leaf) -> bool:
  """nn.Embed tables: a 2-D leaf named 'embedding' (also their optimizer moments)."""
  last = path[-1] if path else None
  name = getattr(last, 'key', getattr(last, 'name', None))
  return name == 'embedding' and getattr(leaf, 'ndim', 0) == 2


def state_shardings(abstract_state, mesh: Mesh):
  """Shardings for a state pytree: with a `model` axis of size k > 1, each embedding table
  (and its optimizer moments) is sharded by rows [vocab / k, dim] when k divides its row
  count, else by columns [vocab, dim / k] when k divides its width (vocabularies include the
  padding id 0, so their sizes are often odd), else kept replicated with a warning.
  Every other leaf is replicated."""
  k = mesh.shape[MODEL]
  repl = replicated(mesh)
  rows, cols = NamedSharding(mesh, P(MODEL, None)), NamedSharding(mesh, P(None, MODEL))
  logged = set()

  def note(path, msg, *args, warn=False):
    name = jax.tree_util.keystr(path[-3:])
    if name not in logged:
      logged.add(name)
      (logging.warning if warn else logging.info)('embedding table %s: ' + msg, name, *args)

  def pick(path, leaf):
    if k == 1 or not is_embedding_table(path, leaf):
      return repl
    if leaf.shape[0] % k == 0:
      return rows
    if leaf.shape[1] % k == 0:
      note(path, '%d rows not divisible by model=%d: sharded by columns', leaf.shape[0], k)
      return cols
    note(path, 'shape %s not divisible by model=%d: kept replicated', leaf.shape, k, warn=True)
    return repl

  return jax.tree_util.tree_map_with_path(pick, abstract_state)


def with_shardings(abstract_state, shardings):
  """ShapeDtypeStructs carrying shardings: orbax restores straight into the mesh layout."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract_state, shardings)


def pmap_step(train_step: Callable, axis_name: str = DATA) -> Callable:
  """Wraps a pure one-run `train_step(state, batch, *args, sync_grads=None)` to run per device
  under `jax.pmap` (a group applies it per run, under jax.vmap inside the pmap).

  Inside, the optimizer sees gradients averaged over `axis_name` weighted by each shard's
  example weight (sum of batch['weight'] or its row count); metrics are averaged the same
  way, grad_norm is recomputed on the averaged gradients, and Dice takes its batch
  statistics over the whole global batch. A non-finite global loss keeps the old state
  (step included), and metrics['running'] (steps.update_step) is then False on every device.
  """

  def step(state, batch, *args):
    n = next(iter(batch.values())).shape[0]
    w = batch['weight'].astype(jnp.float32).sum() if 'weight' in batch else jnp.float32(n)
    total = jnp.maximum(jax.lax.psum(w, axis_name), 1e-12)
    wmean = lambda t: jax.tree.map(lambda x: jax.lax.psum(x * w, axis_name) / total, t)
    with activations.batch_stats_axis(axis_name):
      new, metrics = train_step(state, batch, *args, sync_grads=wmean)
    running = metrics.pop('running', None)
    # Losses are weighted means over examples; other metrics (diagnostics) plain means;
    # grad_norm is already that of the averaged gradients (identical on every device).
    is_loss = lambda k: k == 'loss' or k.startswith('loss/')
    metrics = {**{k: jax.lax.pmean(v, axis_name) for k, v in metrics.items()
                  if k != 'grad_norm'},
               **wmean({k: v for k, v in metrics.items() if is_loss(k)}),
               **({'grad_norm': metrics['grad_norm']} if 'grad_norm' in metrics else {})}
    ok = jnp.isfinite(metrics['loss'])
    if running is not None:
      ok = ok & (jax.lax.pmin(running.astype(jnp.int32), axis_name) > 0)
      metrics['running'] = ok
    keep = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
    return keep if running is not None else keep.replace(step=new.step), metrics

  return step


class Partitioner:
  """Owns the mesh, the state/batch shardings and how train/eval steps are compiled.

  Args:
    cfg: config.parallel (data, model, strategy).
    mesh: optional prebuilt mesh (tests, benchmarks); default from cfg over all devices.
  """

  def __init__(self, cfg, mesh: Mesh | None = None):
    self.strategy = cfg.strategy
    if self.strategy not in STRATEGIES:
      raise ValueError(f'unknown config.parallel.strategy={self.strategy!r}; '
                       f'choose from {STRATEGIES}')
    self.mesh = (mesh if mesh is not None
                 else make_mesh(cfg.data, cfg.model, runs=cfg.runs))
    if self.strategy == 'pmap' and self.mesh.shape.get(RUNS, 1) > 1:
      raise ValueError('config.parallel.strategy=pmap cannot shard a run axis; '
                       f'config.parallel.runs={self.mesh.shape[RUNS]} needs strategy=jit')
    if self.strategy == 'pmap' and self.mesh.shape[MODEL] > 1:
      raise ValueError(f'config.parallel.strategy=pmap is data parallel only; '
                       f'config.parallel.model={self.mesh.shape[MODEL]} needs strategy=jit')

  @property
  def num_data(self) -> int:
    return self.mesh.shape[DATA]

  def check_batch_size(self, global_batch: int, what: str = 'config.data.batch_size'):
    check_batch_size(global_batch, self.mesh, what)

  def state_shardings(self, abstract_state):
    if self.strategy == 'pmap':
      # Exactly the sharding pmap gives its out_axes=None outputs (replicated over a 1-D
      # mesh named like the pmap axis): with the 2-D mesh's P() instead, the second step's
      # state would differ in sharding from the first's and pmap would compile again.
      devices = np.array(list(self.mesh.devices.flat))
      pmesh = Mesh(devices, (DATA,), axis_types=(jax.sharding.AxisType.Auto,))
      return jax.tree.map(lambda _: NamedSharding(pmesh, P()), abstract_state)
    return state_shardings(abstract_state, self.mesh)

  def run_axis(self, *rest) -> NamedSharding:
    """A sharding with a leading run axis (on the `runs` mesh axis where there is one)."""
    lead = RUNS if RUNS in self.mesh.axis_names else None
    return NamedSharding(self.mesh, P(lead, *rest))

  def stacked_shardings(self, single_sh):
    """One run's state shardings (`state_shardings`) -> the same with a leading run axis."""
    return jax.tree.map(lambda s: NamedSharding(
        s.mesh, P(RUNS if RUNS in s.mesh.axis_names else None, *s.spec)), single_sh)

  def train_batch(self, batch: dict[str, np.ndarray], runs: bool = False
                  ) -> dict[str, jax.Array]:
    """This process's rows of a global training batch ([B/P, ...], or [S, B/P, ...] with
    runs) -> device arrays for the train step (pmap: [n_data, (S,) B/n_data, ...])."""
    if self.strategy == 'pmap':
      return to_global_stacked(batch, self.mesh, runs)
    if not runs:
      return to_global(batch, self.mesh)
    sh = self.run_axis(DATA)
    return {k: jax.make_array_from_process_local_data(
        sh, np.asarray(v), (v.shape[0], v.shape[1] * jax.process_count()) + v.shape[2:])
            for k, v in batch.items()}

  def eval_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    return to_global(batch, self.mesh)

  def wrap_run_step(self, run_step: Callable) -> Callable:
    """One run's step(state, batch, *args, sync_grads=None) as this strategy runs it per run
    (pmap: `pmap_step`, the cross-device mean; jit: XLA inserts the reductions)."""
    return pmap_step(run_step) if self.strategy == 'pmap' else run_step

  def compile_train(self, train_step: Callable, state_sh, *, runs: bool = False,
                    args_sh=None) -> Callable:
    """train_step(state, batch, *args) -> (state, metrics); the state argument is donated.

    runs=False: train_step is one run's step(state, batch, rng, sync_grads=None), wrapped
    here in `wrap_run_step`; args_sh defaults to (replicated,). runs=True: train_step is a
    group's step over [S] states and [S, B, ...] batches, already built from wrapped run
    steps; args_sh: the shardings of *args (default: each on the run axis).
    Both strategies take and return the state in `state_sh` layout (replicated for pmap:
    in_axes/out_axes=None, no per-step stacking) and replicated metrics."""
    if not runs:
      train_step = self.wrap_run_step(train_step)
    if self.strategy == 'pmap':
      n_args = 1 if args_sh is None else len(args_sh)
      pstep = jax.pmap(train_step, axis_name=DATA, in_axes=(None, 0) + (None,) * n_args,
                       out_axes=(None, None), donate_argnums=(0,),
                       devices=list(self.mesh.devices.flat))
      if jax.process_count() == 1:
        return pstep

      def step(state, batch, *args):
        # With several processes pmap's out_axes=None results are host-local arrays (over
        # this process's devices only), which orbax cannot save and jit cannot take as
        # global inputs: rewrap the same device buffers as global arrays (no copy).
        state, metrics = pstep(state, batch, *args)
        return jax.tree.map(lambda x, sh: jax.make_array_from_single_device_arrays(
            x.shape, sh, [s.data for s in x.addressable_shards]), state, state_sh), metrics

      return step
    repl = replicated(self.mesh)
    if args_sh is None:
      args_sh = (self.run_axis(),) if runs else (repl,)
    batch_sh = self.run_axis(DATA) if runs else data_sharding(self.mesh)
    # Donation lets XLA update the state in place; the caller must not reuse the old state.
    return jax.jit(train_step, in_shardings=(state_sh, batch_sh, *args_sh),
                   out_shardings=(state_sh, repl), donate_argnums=(0,))

  def compile_eval(self, eval_step: Callable, state_sh) -> Callable:
    """eval_step(state, batch) -> replicated predictions (jit for both strategies)."""
    return jax.jit(eval_step, in_shardings=(state_sh, data_sharding(self.mesh)),
                   out_shardings=replicated(self.mesh))

  def describe(self) -> dict[str, Any]:
    return {'strategy': self.strategy, 'data': self.num_data, 'model': self.mesh.shape[MODEL],
            'devices': jax.device_count(), 'processes': jax.process_count(),
            'platform': jax.devices()[0].platform}
