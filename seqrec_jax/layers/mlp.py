"""MLP with swappable activations (Dice needs `train` and an optional padding mask)."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn

from seqrec_jax.layers.activations import make_activation


class MLP(nn.Module):
  """Dense -> activation (-> dropout) for each hidden size.

  Attributes:
    hidden: hidden sizes, e.g. (200, 80).
    activation: 'dice' | 'prelu' | 'relu' | 'sigmoid' | 'linear'.
    dice_eps: Dice's epsilon (paper: 1e-8).
    dropout: dropout rate after every activation (0 disables; needs a 'dropout' rng).
  """
  hidden: Sequence[int]
  activation: str = 'prelu'
  dice_eps: float = 1e-8
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool, mask=None, gates=None):
    """x: [..., in]; mask: x.shape[:-1] or None; gates: None or one entry per hidden layer,
    [..., hidden[i]] multiplying layer i's activation (LHUC, layers/gating.py) or None.
    Returns [..., hidden[-1]]."""
    for i, h in enumerate(self.hidden):
      x = nn.Dense(h, name=f'dense_{i}')(x)
      x = make_activation(self.activation, self.dice_eps)(x, train=train, mask=mask)
      if gates is not None and gates[i] is not None:
        x = x * gates[i].astype(x.dtype)
      if self.dropout > 0:
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
    return x
