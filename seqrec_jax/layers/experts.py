"""Mixture-of-experts parts for multi-task ranking: experts, gates, CGC and PLE levels.

  * MMoE (Ma et al., KDD'18): experts f_i shared by all tasks, one softmax gate per task,
        f^k(x) = sum_i g^k(x)_i f_i(x),   g^k(x) = softmax(W_gk x)           (paper eq. 7-8)
    OMoE is the same with a single gate shared by every task.
  * CGC / PLE (Tang et al., RecSys'20): shared experts plus task-specific experts; task k's
    gate mixes its own experts and the shared ones. PLE stacks extraction levels: level l + 1
    reads task k's level-l output (and the shared gate's output for the shared experts).

Expert dropout (config `model.expert_dropout`): during training every gate drops whole experts
per example with probability p and renormalises over the kept ones (softmax over the kept
logits), the usual remedy when one expert takes all the weight (gate polarisation). If an
example would lose every expert, it keeps them all.

Gate bias (config `model.gate_bias`): True gives softmax(W x + b); False is the paper's eq. 8,
softmax(W x), whose gate is uniform at x = 0.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqrec_jax.layers.mlp import MLP


def gate_entropy(g):
  """g [B, E] -> mean entropy over the batch (nats); log(E) is uniform, 0 is one expert."""
  return -(g * jnp.log(jnp.maximum(g, 1e-12))).sum(-1).mean()


def mix(gate, experts):
  """gate [B, E], experts [B, E, H] -> [B, H]."""
  return jnp.einsum('be,beh->bh', gate, experts)


class ExpertMLP(NamedTuple):
  """One expert network: an MLP of `hidden` units with `activation` (and Dice's eps), dropout."""
  hidden: Sequence[int]
  activation: str = 'relu'
  dice_eps: float = 1e-8
  dropout: float = 0.0


class ExpertBank(nn.Module):
  """`num` independent `expert` MLPs on one input: [B, F] -> [B, num, expert.hidden[-1]].

  The experts are one vmapped MLP: every parameter (and Dice statistic) has a leading expert
  axis [num, ...], so E experts cost one batched matmul per layer instead of E small ones.
  """
  num: int
  expert: ExpertMLP

  @nn.compact
  def __call__(self, x, train: bool):
    experts = nn.vmap(
        MLP, in_axes=(None, None), out_axes=1, axis_size=self.num,
        variable_axes={'params': 0, 'batch_stats': 0},
        split_rngs={'params': True, 'dropout': True})
    e = self.expert
    return experts(tuple(e.hidden), e.activation, e.dice_eps, e.dropout, name='mlp')(x, train)


class Gate(nn.Module):
  """Softmax gate over `num_experts`: [B, F] -> ([B, E] used weights, [B, E] learned weights).

  The second output is the gate before expert dropout (what diagnostics report); the first is
  what mixes the experts (equal to the second at inference or with expert_dropout=0).
  `use_bias=False` is the paper's softmax(W x) (MMoE eq. 8).
  """
  num_experts: int
  expert_dropout: float = 0.0
  use_bias: bool = True

  @nn.compact
  def __call__(self, x, train: bool):
    logits = nn.Dense(self.num_experts, use_bias=self.use_bias, name='dense')(x)  # [B, E]
    g = jax.nn.softmax(logits, axis=-1)
    if not train or self.expert_dropout <= 0 or self.num_experts == 1:
      return g, g
    rng = self.make_rng('dropout')
    keep = jax.random.bernoulli(rng, 1.0 - self.expert_dropout, logits.shape)
    keep = jnp.where(keep.any(-1, keepdims=True), keep, True)      # never drop every expert
    used = jax.nn.softmax(jnp.where(keep, logits, -1e30), axis=-1, where=keep)
    return jnp.where(keep, used, 0.0), g


class MMoE(nn.Module):
  """Experts shared by all tasks, one gate per task (`num_gates` = tasks) or one (OMoE).

  x [B, F] -> (per-gate mixtures: list of [B, H], learned gates: list of [B, E]).
  """
  num_experts: int
  num_gates: int
  expert: ExpertMLP
  expert_dropout: float = 0.0
  gate_bias: bool = True

  @nn.compact
  def __call__(self, x, train: bool):
    e = ExpertBank(self.num_experts, self.expert, name='experts')(x, train)   # [B, E, H]
    outs, gates = [], []
    for k in range(self.num_gates):
      used, g = Gate(self.num_experts, self.expert_dropout, self.gate_bias,
                     name=f'gate_{k}')(x, train)
      outs.append(mix(used, e))
      gates.append(g)
    return outs, gates


class CGC(nn.Module):
  """Customized Gate Control (one PLE extraction level).

  Inputs: task_inputs (list of T arrays [B, F], one per task) and shared_input [B, F] (the
  same array as every task input at the first level). Task k's gate (on task_inputs[k]) mixes
  its `specific` experts followed by the `shared` experts. With `shared_output` (every PLE
  level but the last) a further gate on shared_input mixes all experts for the next level's
  shared experts.

  Returns (task outputs: list of T [B, H], shared output [B, H] or None,
           learned gates: list of T [B, specific + shared] (+ the shared gate [B, E_all])).
  """
  num_tasks: int
  shared: int
  specific: int
  expert: ExpertMLP
  expert_dropout: float = 0.0
  shared_output: bool = False
  gate_bias: bool = True

  @nn.compact
  def __call__(self, task_inputs, shared_input, train: bool):
    if len(task_inputs) != self.num_tasks:
      raise ValueError(f'CGC expects {self.num_tasks} task inputs, got {len(task_inputs)}')
    if self.shared + self.specific < 1:
      raise ValueError('CGC needs at least one expert (model.shared_experts + '
                       'model.specific_experts >= 1)')
    bank = lambda n, name: ExpertBank(n, self.expert, name=name)
    shared_e = bank(self.shared, 'shared_experts')(shared_input, train) if self.shared else None
    specific_e = [bank(self.specific, f'task_{k}_experts')(task_inputs[k], train)
                  if self.specific else None for k in range(self.num_tasks)]
    outs, gates = [], []
    for k in range(self.num_tasks):
      e = jnp.concatenate([a for a in (specific_e[k], shared_e) if a is not None], axis=1)
      used, g = Gate(e.shape[1], self.expert_dropout, self.gate_bias,
                     name=f'gate_{k}')(task_inputs[k], train)
      outs.append(mix(used, e))
      gates.append(g)
    shared_out = None
    if self.shared_output:
      e = jnp.concatenate([a for a in specific_e + [shared_e] if a is not None], axis=1)
      used, g = Gate(e.shape[1], self.expert_dropout, self.gate_bias,
                     name='gate_shared')(shared_input, train)
      shared_out = mix(used, e)
      gates.append(g)
    return outs, shared_out, gates


class PLE(nn.Module):
  """Progressive Layered Extraction: `levels` CGC levels; x [B, F] -> (task outputs
  list of T [B, H], per-level learned gates list of lists). With levels=1 it is one CGC."""
  num_tasks: int
  levels: int
  shared: int
  specific: int
  expert: ExpertMLP
  expert_dropout: float = 0.0
  gate_bias: bool = True

  @nn.compact
  def __call__(self, x, train: bool):
    if self.levels < 1:
      raise ValueError(f'PLE needs model.ple_levels >= 1, got {self.levels}')
    task_in, shared_in, all_gates = [x] * self.num_tasks, x, []
    for l in range(self.levels):
      last = l == self.levels - 1
      task_in, shared_in, gates = CGC(
          self.num_tasks, self.shared, self.specific, self.expert, self.expert_dropout,
          shared_output=not last, gate_bias=self.gate_bias, name=f'level_{l}')(
              task_in, shared_in, train)
      all_gates.append(gates)
    return task_in, all_gates
