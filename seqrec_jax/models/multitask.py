"""Multi-task rankers: `single_task`, `shared_bottom`, `omoe`, `mmoe`, `ple`.

All share one layout: input block -> (sharing structure) -> one tower per task -> logit.
  single_task    T separate networks (own input block, bottom MLP, tower): the baseline.
  shared_bottom  one bottom MLP shared by every task (Caruana, 1997).
  omoe           one-gate mixture of experts, the same mixture for every task.
  mmoe           experts shared, one gate per task (Ma et al., KDD'18).
  ple            CGC levels with shared + task-specific experts (Tang et al., RecSys'20).
The input block (config.model.input) is 'embed' (embeddings of target/sparse fields + dense,
no history), 'pool' (plus the history pooled by config.model.pooling) or 'din' (plus DIN
target attention over the history, config.model.attention), so DIN + MMoE is
`--config.model.name=mmoe --config.model.input=din`.

Every model also runs on a single-task DataSpec (output [B]; [B, T] for T > 1 tasks).
During training the gates are reported through the 'diagnostics' collection
(steps.train_step turns them into metrics): `gates/<task>/util/<i>` (mean gate weight of
expert i), `gates/<task>/max_util` and `gates/<task>/entropy` (nats; log E is uniform).
OMoE's single gate is `gates/all/...`; PLE's lower levels are `gates/l<level>/<task|shared>/...`.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from seqrec_jax.data.features import DataSpec
from seqrec_jax.layers.experts import PLE, ExpertMLP, MMoE, gate_entropy
from seqrec_jax.layers.mlp import MLP
from seqrec_jax.models import register_model
from seqrec_jax.models.blocks import SequenceInput
from seqrec_jax.models.builders import (attention_unit, build_field_gate, build_lhuc,
                                        pooling_unit)

ARCHS = ('single_task', 'shared_bottom', 'omoe', 'mmoe', 'ple')
INPUTS = ('embed', 'pool', 'din')


class TaskTower(nn.Module):
  """Task tower: MLP then one logit. [B, H] -> [B]. `lhuc` (layers.gating.LHUCGate) scales the
  MLP's hidden layers by gates of `personal` [B, P] (PPNet: a gate per task tower)."""
  hidden: tuple = (32,)
  activation: str = 'relu'
  dice_eps: float = 1e-8
  dropout: float = 0.0
  lhuc: nn.Module | None = None

  @nn.compact
  def __call__(self, x, train: bool, personal=None):
    gates = self.lhuc(personal) if self.lhuc is not None else None
    x = MLP(tuple(self.hidden), self.activation, self.dice_eps, self.dropout, name='mlp')(
        x, train, gates=gates)
    return nn.Dense(1, name='logit')(x)[:, 0]


class MultiTaskRanker(nn.Module):
  """batch -> logits [B] (one task) or [B, T]. `arch` is one of ARCHS."""
  spec: DataSpec
  arch: str
  pooling: nn.Module | None = None
  embed_dim: int = 16
  use_user: bool = False
  experts: int = 4
  expert_hidden: tuple = (64,)
  bottom_hidden: tuple = ()             # single_task / shared_bottom; () = expert_hidden
  tower_hidden: tuple = (32,)
  shared_experts: int = 2
  specific_experts: int = 2
  ple_levels: int = 2
  activation: str = 'relu'
  dice_eps: float = 1e-8
  dropout: float = 0.0
  expert_dropout: float = 0.0
  gate_bias: bool = True                # False: the paper's gate softmax(W x) (eq. 8)
  field_gate: nn.Module | None = None   # model.field_gate (SequenceInput)
  lhuc: nn.Module | None = None         # model.lhuc: one LHUCGate per task tower
  personal: tuple = ()                  # its inputs (SequenceInput.personal)

  def _input(self, batch, train, name):
    """(input [B, F], LHUC input [B, P] or None)."""
    pool = self.pooling.clone() if self.pooling is not None else None
    gate = self.field_gate.clone() if self.field_gate is not None else None
    out = SequenceInput(self.spec, pool, self.embed_dim, self.use_user, field_gate=gate,
                        personal=self.personal, name=name)(batch, train)
    return out if self.personal else (out, None)

  def _mlp(self, hidden, name):
    return MLP(tuple(hidden), self.activation, self.dice_eps, self.dropout, name=name)

  def _report(self, name, g, train):
    """Sows gate diagnostics for g [B, E] (training only; eval applies are not mutable)."""
    if not train:
      return
    util = g.mean(0)
    self.sow('diagnostics', f'gates/{name}/util', util)
    self.sow('diagnostics', f'gates/{name}/max_util', util.max())
    self.sow('diagnostics', f'gates/{name}/entropy', gate_entropy(g))

  @nn.compact
  def __call__(self, batch, train: bool = False):
    names = [t.name for t in self.spec.tasks]
    num_tasks = len(names)
    bottom = tuple(self.bottom_hidden) or tuple(self.expert_hidden)
    expert = ExpertMLP(tuple(self.expert_hidden), self.activation, self.dice_eps, self.dropout)
    moe = dict(expert=expert, expert_dropout=self.expert_dropout, gate_bias=self.gate_bias)
    if self.arch == 'single_task':
      inputs = [self._input(batch, train, f'input_{k}') for k in range(num_tasks)]
      reps = [self._mlp(bottom, f'bottom_{k}')(x, train) for k, (x, _) in enumerate(inputs)]
      personal = [p for _, p in inputs]
    else:
      x, p = self._input(batch, train, 'input')                         # [B, F]
      personal = [p] * num_tasks
      if self.arch == 'shared_bottom':
        reps = [self._mlp(bottom, 'bottom')(x, train)] * num_tasks
      elif self.arch == 'omoe':
        outs, gates = MMoE(self.experts, 1, name='omoe', **moe)(x, train)
        reps = outs * num_tasks
        self._report('all', gates[0], train)
      elif self.arch == 'mmoe':
        reps, gates = MMoE(self.experts, num_tasks, name='mmoe', **moe)(x, train)
        for name, g in zip(names, gates):
          self._report(name, g, train)
      elif self.arch == 'ple':
        reps, level_gates = PLE(num_tasks, self.ple_levels, self.shared_experts,
                                self.specific_experts, name='ple', **moe)(x, train)
        for l, gates in enumerate(level_gates):
          last = l == len(level_gates) - 1
          for k, g in enumerate(gates):
            name = names[k] if k < num_tasks else 'shared'
            self._report(name if last else f'l{l}/{name}', g, train)
      else:
        raise ValueError(f'unknown multi-task architecture {self.arch!r}; choose from {ARCHS}')
    lhuc = lambda: self.lhuc.clone() if self.lhuc is not None else None  # noqa: E731
    logits = [TaskTower(tuple(self.tower_hidden), self.activation, self.dice_eps,
                        self.dropout, lhuc(), name=f'tower_{k}')(reps[k], train, personal[k])
              for k in range(num_tasks)]
    return logits[0] if num_tasks == 1 else jnp.stack(logits, axis=-1)


def input_pooling(cfg) -> nn.Module | None:
  """The history unit of config.model.input: None ('embed'), a Pooling ('pool') or DIN ('din')."""
  kind = cfg.input
  if kind == 'embed':
    return None
  if kind == 'pool':
    return pooling_unit(cfg.pooling)
  if kind == 'din':
    return attention_unit(cfg)
  raise ValueError(f'unknown input block {kind!r} (config.model.input); choose from {INPUTS}')


def build(arch: str, cfg, spec: DataSpec) -> MultiTaskRanker:
  if cfg.experts < 1:
    raise ValueError(f'config.model.experts must be >= 1, got {cfg.experts}')
  if not 0.0 <= cfg.expert_dropout < 1.0:
    raise ValueError(f'config.model.expert_dropout must be in [0, 1), got {cfg.expert_dropout}')
  return MultiTaskRanker(
      spec, arch, input_pooling(cfg), cfg.embed_dim, cfg.use_user_embedding, cfg.experts,
      tuple(cfg.expert_hidden), tuple(cfg.bottom_hidden), tuple(cfg.tower_hidden),
      cfg.shared_experts, cfg.specific_experts, cfg.ple_levels, cfg.activation, cfg.dice_eps,
      cfg.dropout, cfg.expert_dropout, cfg.gate_bias, build_field_gate(cfg),
      *build_lhuc(cfg, spec, tuple(cfg.tower_hidden)))


for _arch in ARCHS:
  register_model(_arch)(lambda cfg, spec, _a=_arch: build(_a, cfg, spec))
