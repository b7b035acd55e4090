"""Explicit feature crossing: DCN (Wang et al., ADKDD'17) and DCN-V2 (Wang et al., WWW'21).

With x_0 [batch, d] the embedding layer's output and x_l the l-th layer's output:
  * `CrossNet` (DCN, eq. 3):     x_{l+1} = x_0 * (x_l . w_l) + b_l + x_l,   w_l, b_l in R^d.
  * `CrossNetV2` (DCN-V2, eq. 1): x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l, with
      'full'    W_l in R^{d x d};
      'lowrank' W_l = U_l V_l^T, U_l, V_l in R^{d x r} (eq. 3);
      'mix'     DCN-Mix (eq. 4, Fig. 3): a gated mixture of K low-rank experts with a
                nonlinearity g inside the projection,
                x_{l+1} = sum_i G_i(x_l) E_i(x_l) + x_l,
                E_i(x_l) = x_0 ⊙ (U_l^i g(C_l^i g(V_l^{iT} x_l)) + b_l),
                G = softmax over experts of linear gates (as the authors' released code).
  * `CrossDeep`: a cross network combined with a deep network (MLP), 'stacked'
    (x_0 -> cross -> deep) or 'parallel' (concat(cross(x_0), deep(x_0))); the logit layer is
    the caller's (models/blocks.Head).

Row-vector convention of flax: `nn.Dense` computes x @ K, so W = K^T for full rank, and the
low-rank pair is V = K_V [d, r], U = K_U^T [d, r].
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqrec_jax.layers.mlp import MLP

CROSS_TYPES = ('full', 'lowrank', 'mix')
STRUCTURES = ('stacked', 'parallel')
NONLINEARITIES = {'tanh': jnp.tanh, 'relu': nn.relu, 'sigmoid': jax.nn.sigmoid,
              'identity': lambda x: x}


def resolve_rank(rank: float, d: int) -> int:
  """rank >= 1: that rank; 0 < rank < 1: a fraction of the input width d (0.25 -> d/4)."""
  if rank >= 1:
    return int(rank)
  if rank > 0:
    return max(1, int(round(rank * d)))
  raise ValueError(f'cross rank must be >= 1 or a fraction in (0, 1) of the input width '
                   f'(config.model.cross_rank), got {rank}')


class CrossNet(nn.Module):
  """DCN cross network: `num_layers` x (x_0 * (x_l . w) + b + x_l). [B, d] -> [B, d]."""
  num_layers: int = 3

  @nn.compact
  def __call__(self, x0, train: bool = False):
    del train
    d = x0.shape[-1]
    x = x0
    for i in range(self.num_layers):
      w = self.param(f'w_{i}', nn.initializers.glorot_normal(), (d, 1))
      b = self.param(f'b_{i}', nn.initializers.zeros, (d,))
      x = x0 * (x @ w) + b + x                    # (x @ w): [B, 1], one scalar per example
    return x


class CrossLayerV2(nn.Module):
  """One DCN-V2 cross layer: x_0 ⊙ (W x + b) + x for W full or low-rank. [B, d] -> [B, d].

  Attributes:
    cross_type: 'full' | 'lowrank'.
    rank: r of W = U V^T ('lowrank' only); a fraction in (0, 1) means round(rank * d).
  """
  cross_type: str = 'full'
  rank: float = 0

  @nn.compact
  def __call__(self, x0, x):
    d = x0.shape[-1]
    if self.cross_type == 'full':
      wx = nn.Dense(d, name='w')(x)                                   # W x + b
    elif self.cross_type == 'lowrank':
      r = resolve_rank(self.rank, d)
      wx = nn.Dense(d, name='u')(nn.Dense(r, use_bias=False, name='v')(x))
    else:
      raise ValueError(f'unknown cross_type {self.cross_type!r} for CrossLayerV2; '
                       f'choose from {CROSS_TYPES}')
    return x0 * wx + x


class CrossMixLayer(nn.Module):
  """One DCN-Mix layer: softmax-gated mixture of `num_experts` low-rank experts.

  [B, d] -> [B, d]. Parameters are stacked over experts: V [K, d, r], C [K, r, r],
  U [K, r, d] (flax row-vector layout), gates [d, K], one bias b [d] shared by the experts.
  """
  rank: float
  num_experts: int = 4
  nonlinearity: str = 'tanh'

  @nn.compact
  def __call__(self, x0, x):
    d, r, k = x0.shape[-1], resolve_rank(self.rank, x0.shape[-1]), self.num_experts
    if k < 1:
      raise ValueError(f'mix cross layer needs experts >= 1 (config.model.cross_experts), '
                       f'got {k}')
    if self.nonlinearity not in NONLINEARITIES:
      raise ValueError(f'unknown nonlinearity {self.nonlinearity!r}; choose from '
                       f'{sorted(NONLINEARITIES)}')
    g = NONLINEARITIES[self.nonlinearity]
    init = nn.initializers.glorot_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
    v = self.param('v', init, (k, d, r))
    c = self.param('c', init, (k, r, r))
    u = self.param('u', init, (k, r, d))
    b = self.param('b', nn.initializers.zeros, (d,))
    gate = self.param('gate', nn.initializers.glorot_normal(), (d, k))
    h = g(jnp.einsum('bd,kdr->bkr', x, v))                            # g(V^T x)   [B, K, r]
    h = g(jnp.einsum('bkr,krs->bks', h, c))                           # g(C ...)   [B, K, r]
    experts = x0[:, None, :] * (jnp.einsum('bkr,krd->bkd', h, u) + b)  # E_i(x)    [B, K, d]
    weights = jax.nn.softmax(x @ gate, axis=-1)                        # G(x)      [B, K]
    return jnp.einsum('bk,bkd->bd', weights, experts) + x


class CrossNetV2(nn.Module):
  """DCN-V2 cross network: `num_layers` cross layers of one type. [B, d] -> [B, d].

  Attributes:
    num_layers: number of cross layers.
    cross_type: 'full' | 'lowrank' | 'mix'.
    rank: r for 'lowrank' and 'mix' (>= 1), or a fraction of d in (0, 1).
    num_experts: K for 'mix'.
    nonlinearity: g inside the 'mix' projection (tanh | relu | sigmoid | identity).
  """
  num_layers: int = 3
  cross_type: str = 'full'
  rank: float = 0
  num_experts: int = 4
  nonlinearity: str = 'tanh'

  @nn.compact
  def __call__(self, x0, train: bool = False):
    del train
    x = x0
    for i in range(self.num_layers):
      if self.cross_type == 'mix':
        layer = CrossMixLayer(self.rank, self.num_experts, self.nonlinearity, name=f'layer_{i}')
      else:
        layer = CrossLayerV2(self.cross_type, self.rank, name=f'layer_{i}')
      x = layer(x0, x)
    return x


class CrossDeep(nn.Module):
  """Cross network + deep network. [B, d] -> [B, d] (stacked) or [B, d + hidden[-1]] (parallel).

  Attributes:
    cross: a cross network module ([B, d] -> [B, d]), e.g. CrossNet or CrossNetV2.
    hidden: deep network sizes; () means cross network only.
    structure: 'stacked' (deep on top of cross) | 'parallel' (concat of both on x_0).
    activation, dice_eps, dropout: of the deep network (see layers/mlp.MLP).
  """
  cross: nn.Module
  hidden: Sequence[int] = (200, 80)
  structure: str = 'stacked'
  activation: str = 'relu'
  dice_eps: float = 1e-8
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x0, train: bool):
    if self.structure not in STRUCTURES:
      raise ValueError(f'unknown structure {self.structure!r} (config.model.structure); '
                       f'choose from {STRUCTURES}')
    deep = MLP(tuple(self.hidden), self.activation, self.dice_eps, self.dropout, name='deep')
    if self.structure == 'stacked':
      return deep(self.cross(x0, train), train)
    if not self.hidden:
      return self.cross(x0, train)
    return jnp.concatenate([self.cross(x0, train), deep(x0, train)], axis=-1)
