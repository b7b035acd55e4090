"""Feature and hidden-unit gates from industrial rankers: SENET field gating and LHUC / PPNet.

SENet (FiBiNET, Huang et al. RecSys'19, Sec. 3.3): fields E [B, F, d] ->
  squeeze      z_f = mean_k E[:, f, k]                      [B, F]
  excitation   a = sigma2(W2 relu(W1 z + b1) + b2)          [B, F], W1: F -> max(1, F // r)
  re-weight    V[:, f] = a_f * E[:, f]                      [B, F, d]
The paper uses ReLU for sigma2 and no biases; `excitation='sigmoid'` bounds the gate in (0, 1).
With the biases, W2 = 0 and b2 = 1 under ReLU give a = 1: the identity. The ReLU excitation is
initialised near it (b2 = 1, W2 ~ N(0, 0.01^2)): at the default init (b2 = 0, lecun W2) the
gate of F = 9, d = 16 embedding fields averaged ~0.003 with over half exactly 0, so every
field started scaled to ~0 (and a gate at 0 gets no gradient); near 1 the fields start
unchanged and W1 still gets a gradient through the small W2.

LHUC / PPNet (Swietojanski & Renals 2014; Kuaishou's PPNet): a gate network on personalisation
features p [B, P] (user id and user-field embeddings, stop-gradient applied by the caller so the
gate does not train them) gives, per hidden layer l, g_l = 2 * sigmoid(W_l relu(V p) + c_l)
[B, H_l] in (0, 2); the main MLP's hidden activations are multiplied by g_l (layers.mlp.MLP's
`gates`). The 2 * sigmoid
centres the gate on 1 at initialisation (W_l = 0 gives exactly 1: the plain MLP).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn

EXCITATIONS = ('relu', 'sigmoid')
EXCITE_STD = 0.01   # ReLU excitation's initial W2 std (b2 starts at 1: gate ~1)


class SENet(nn.Module):
  """Squeeze-excitation over fields: [B, F, d] -> ([B, F, d], gate [B, F]).

  Attributes:
    reduction: ratio r; the excitation's hidden width is max(1, F // r).
    excitation: 'relu' (the paper's sigma2; gate initialised near 1) | 'sigmoid'.
  """
  reduction: float = 3.0
  excitation: str = 'relu'

  @nn.compact
  def __call__(self, fields):
    if self.excitation not in EXCITATIONS:
      raise ValueError(f'unknown SENet excitation {self.excitation!r}; choose from {EXCITATIONS}')
    num_fields = fields.shape[1]
    z = fields.mean(-1)                                                  # [B, F]
    h = nn.relu(nn.Dense(max(1, int(num_fields // self.reduction)), name='squeeze')(z))
    relu = self.excitation == 'relu'
    near_one = dict(kernel_init=nn.initializers.normal(EXCITE_STD),
                    bias_init=nn.initializers.ones) if relu else {}
    a = nn.Dense(num_fields, name='excite', **near_one)(h)               # [B, F]
    a = nn.relu(a) if relu else nn.sigmoid(a)
    return fields * a[..., None].astype(fields.dtype), a


class LHUCGate(nn.Module):
  """Personalisation features p [B, P] -> one gate per hidden layer of the main MLP: a list of
  [B, H_l] in (0, 2) for the layers in `layers`, None for the others (layers.mlp.MLP's gates).

  Attributes:
    sizes: the MLP's hidden sizes H_l (all layers).
    layers: indices of the layers to scale.
    hidden: width of the gate network's hidden layer (shared by the layers' gates).
  """
  sizes: Sequence[int]
  layers: Sequence[int]
  hidden: int = 64

  @nn.compact
  def __call__(self, p):
    h = nn.relu(nn.Dense(self.hidden, name='hidden')(p))
    gates = [2.0 * nn.sigmoid(nn.Dense(s, name=f'gate_{i}')(h)) if i in self.layers else None
             for i, s in enumerate(self.sizes)]
    self.sow('intermediates', 'gates', tuple(g for g in gates if g is not None))
    return gates
