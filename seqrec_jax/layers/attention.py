"""Target attention and pooling units, registered by name in ATTENTIONS.

Every unit is a flax module called as `unit(query, keys, mask, train) -> [B, D]` with
query [B, D] (the candidate), keys [B, L, D] (behaviours) and mask [B, L] (True = real
behaviour). A unit is (feature builder) -> (scorer) -> (normaliser) -> masked weighted sum:
  * scorers: `din` (MLP local activation unit over an ordered subset of q, k, q-k, q*k,
    outer), `dot`, `scaled_dot`, `bilinear`, `multihead` target attention;
  * normalisers (`normalize`): none (paper), softmax, sigmoid;
  * optional recency features (`use_position`): the recency of a behaviour is the number of
    real behaviours newer than it (0 = newest), computed from the mask, so it does not
    depend on how the history is aligned or padded;
  * non-attentive poolings `sum`, `mean`, `max` (the base model / LastN baseline).
Contract (tested over the whole registry, tests/test_attention.py):
  * padding never gets weight: masked positions are excluded before softmax and zeroed for
    'none'/'sigmoid'; changing values at padded positions, or adding padding, changes nothing;
  * an all-padding history yields a zero vector, never NaN;
  * every unit declares `order_free` (True: permuting the history leaves the output
    unchanged, which the tests then check).
Units take plain arguments; models/builders.py builds them from config.model.attention
(`build_attention`) and holds the registry of names (`@register_attention`).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqrec_jax.layers.activations import make_activation
from seqrec_jax.layers.attention_proj import ConcatDense

NORMALIZERS = ('none', 'softmax', 'sigmoid')
_SRC = 'config.model.attention'   # where models/builders.py takes the arguments from (errors)


def normalize(scores, mask, normalizer: str):
  """scores [..., L] -> weights [..., L]; padding gets exactly 0; all-padding rows give zeros.

  mask broadcasts against scores (e.g. [B, 1, L] for per-head scores [B, H, L]).
  """
  if normalizer == 'none':       # DIN paper: keep the intensity of interest
    return jnp.where(mask, scores, 0.0)
  if normalizer == 'sigmoid':
    return jnp.where(mask, jax.nn.sigmoid(scores), 0.0)
  if normalizer == 'softmax':
    # Exclude padding before the softmax; `where=` keeps all-padding rows finite (then zeroed).
    mask = jnp.broadcast_to(mask, scores.shape)
    w = jax.nn.softmax(jnp.where(mask, scores, -1e30), axis=-1, where=mask)
    return jnp.where(mask, w, 0.0)
  raise ValueError(f'unknown normalizer {normalizer!r}; choose from {NORMALIZERS}')


def weighted_sum(weights, keys):
  """weights [B, L], keys [B, L, D] -> [B, D]."""
  return jnp.einsum('bl,bld->bd', weights, keys)


class Packed(NamedTuple):
  """Real behaviours of a batch packed into C rows (data/packing.py); keys are then [C, D].

  segment [C] int32: the example of each row (sorted); valid [C] bool: False for the filler
  rows after the last real one; flat [C] int32: b * L + l of each row; num: B.
  """
  segment: jax.Array
  valid: jax.Array
  flat: jax.Array
  num: int

  @classmethod
  def from_index(cls, index, seq_len: int, num: int) -> 'Packed':
    """index [C] (flat positions, -1 = filler) -> Packed."""
    flat = jnp.maximum(index, 0)
    return cls(flat // seq_len, index >= 0, flat, num)

  def segment_sum(self, x):
    """x [C, ...] -> [num, ...]: sum of each example's rows."""
    return jax.ops.segment_sum(x, self.segment, self.num, indices_are_sorted=True)


def normalize_packed(scores, packed: Packed, normalizer: str):
  """normalize() for packed scores [C] -> weights [C] (filler rows get exactly 0)."""
  v = packed.valid
  if normalizer == 'none':
    return jnp.where(v, scores, 0.0)
  if normalizer == 'sigmoid':
    return jnp.where(v, jax.nn.sigmoid(scores), 0.0)
  if normalizer == 'softmax':
    s = jnp.where(v, scores, -1e30)
    top = jax.ops.segment_max(s, packed.segment, packed.num, indices_are_sorted=True)
    e = jnp.where(v, jnp.exp(s - jax.lax.stop_gradient(top)[packed.segment]), 0.0)
    return e / jnp.maximum(packed.segment_sum(e)[packed.segment], 1e-30)
  raise ValueError(f'unknown normalizer {normalizer!r}; choose from {NORMALIZERS}')


def recency(mask):
  """mask [B, L] -> [B, L] int32: real behaviours strictly newer than each position.

  Newer = larger index (histories are newest last), so left- or right-aligned histories and
  extra padding give the same recency for the same behaviour. Padding values are arbitrary.
  """
  m = mask.astype(jnp.int32)
  return jnp.cumsum(m[:, ::-1], axis=1)[:, ::-1] - m


class RecencyEmbed(nn.Module):
  """Learned embedding of recency (clipped to max_position - 1): mask [B, L] -> [B, L, dim]."""
  max_position: int = 64
  dim: int = 1

  @nn.compact
  def __call__(self, mask, flat=None):
    """flat [C] (packed rows' flat positions): returns [C, dim] for those positions."""
    rec = jnp.minimum(recency(mask), self.max_position - 1)
    if flat is not None:
      rec = rec.reshape(-1)[flat]
    return nn.Embed(self.max_position, self.dim, embedding_init=nn.initializers.zeros,
                    name='table')(rec)


class DinAttention(nn.Module):
  """DIN local activation unit: MLP over [q, k, q-k, q*k] (configurable) -> score per behaviour.

  Attributes:
    inputs: ordered subset of ('q', 'k', 'q-k', 'q*k', 'outer').
    hidden: MLP hidden sizes (paper/official code: 80-40).
    activation: 'dice' | 'prelu' | 'relu' | 'sigmoid' (official DIN code uses sigmoid).
    normalizer: 'none' (paper) | 'softmax' | 'sigmoid'.
    dice_eps: Dice epsilon.
    use_position: add a learned recency embedding to the first hidden layer (= a one-hot
      recency feature concatenated to the MLP input).
    max_position: recency buckets (older behaviours share the last one).
  """
  inputs: Sequence[str] = ('q', 'k', 'q-k', 'q*k')
  hidden: Sequence[int] = (80, 40)
  activation: str = 'dice'
  normalizer: str = 'none'
  dice_eps: float = 1e-8
  use_position: bool = False
  max_position: int = 64

  @property
  def order_free(self) -> bool:
    return not self.use_position

  @property
  def packable(self) -> bool:
    return 'outer' not in self.inputs      # the outer block would need [C, d, d] rows

  @nn.compact
  def __call__(self, query, keys, mask, train: bool, packed: Packed | None = None):
    """query [B, D], keys [B, L, D], mask [B, L] -> [B, D].

    packed: keys are [C, D] packed rows (data/packing.py); same result, no padding work.
    """
    if not self.hidden:
      raise ValueError(f'DinAttention needs at least one hidden layer ({_SRC}.hidden)')
    seg = None if packed is None else packed.segment
    h = ConcatDense(self.hidden[0], tuple(self.inputs), name='dense_0')(query, keys, seg)
    if self.use_position:
      flat = None if packed is None else packed.flat
      h = h + RecencyEmbed(self.max_position, self.hidden[0], name='recency')(mask, flat)
    # Dice statistics over real (non-padding) positions only.
    real = mask if packed is None else packed.valid
    h = make_activation(self.activation, self.dice_eps)(h, train=train, mask=real)
    for i, n in enumerate(self.hidden[1:], start=1):
      h = nn.Dense(n, name=f'dense_{i}')(h)
      h = make_activation(self.activation, self.dice_eps)(h, train=train, mask=real)
    # A score bias is a no-op under softmax (shift invariance): drop it there.
    scores = nn.Dense(1, use_bias=self.normalizer != 'softmax', name='score')(h)[..., 0]
    if packed is None:
      return weighted_sum(normalize(scores, mask, self.normalizer), keys)
    w = normalize_packed(scores, packed, self.normalizer)
    return packed.segment_sum(w[:, None] * keys)


class DotAttention(nn.Module):
  """score_j = <q, k_j> (/ sqrt(D) if scaled), plus a learned recency bias if use_position."""
  scaled: bool = False
  normalizer: str = 'softmax'
  use_position: bool = False
  max_position: int = 64

  @property
  def order_free(self) -> bool:
    return not self.use_position

  @nn.compact
  def __call__(self, query, keys, mask, train: bool):
    """query [B, D], keys [B, L, D], mask [B, L] -> [B, D]."""
    del train
    scores = jnp.einsum('bd,bld->bl', query, keys)
    if self.scaled:
      scores = scores / jnp.sqrt(float(query.shape[-1]))
    if self.use_position:
      scores = scores + RecencyEmbed(self.max_position, 1, name='recency')(mask)[..., 0]
    return weighted_sum(normalize(scores, mask, self.normalizer), keys)


class BilinearAttention(nn.Module):
  """score_j = q^T W k_j (general attention, Luong et al. 2015), W [D, D]."""
  normalizer: str = 'softmax'
  use_position: bool = False
  max_position: int = 64

  @property
  def order_free(self) -> bool:
    return not self.use_position

  @nn.compact
  def __call__(self, query, keys, mask, train: bool):
    """query [B, D], keys [B, L, D], mask [B, L] -> [B, D]."""
    del train
    qw = nn.Dense(keys.shape[-1], use_bias=False, name='bilinear')(query)      # [B, D]
    scores = jnp.einsum('bd,bld->bl', qw, keys)
    if self.use_position:
      scores = scores + RecencyEmbed(self.max_position, 1, name='recency')(mask)[..., 0]
    return weighted_sum(normalize(scores, mask, self.normalizer), keys)


class MultiHeadTargetAttention(nn.Module):
  """Multi-head target attention: the candidate is the single query (Vaswani et al. 2017).

  Per head h: score_hj = <W_q^h q, W_k^h k_j> / sqrt(D/H), weights normalised per head,
  output W_o concat_h(sum_j w_hj W_v^h k_j). Projections have no bias, so an all-padding
  history still gives exactly zero. D must be divisible by num_heads.
  """
  num_heads: int = 2
  normalizer: str = 'softmax'
  use_position: bool = False
  max_position: int = 64

  @property
  def order_free(self) -> bool:
    return not self.use_position

  @nn.compact
  def __call__(self, query, keys, mask, train: bool):
    """query [B, D], keys [B, L, D], mask [B, L] -> [B, D]."""
    del train
    (b, l, d), h = keys.shape, self.num_heads
    if h < 1 or d % h:
      raise ValueError(f'{_SRC}.num_heads={h} must divide the behaviour width {d}')
    proj = lambda name: nn.Dense(d, use_bias=False, name=name)
    q = proj('query')(query).reshape(b, h, d // h)                  # [B, H, d/H]
    k = proj('key')(keys).reshape(b, l, h, d // h)                  # [B, L, H, d/H]
    v = proj('value')(keys).reshape(b, l, h, d // h)
    scores = jnp.einsum('bhe,blhe->bhl', q, k) / jnp.sqrt(float(d // h))
    if self.use_position:
      scores = scores + RecencyEmbed(self.max_position, h, name='recency')(mask).transpose(0, 2, 1)
    w = normalize(scores, mask[:, None, :], self.normalizer)          # [B, H, L]
    out = jnp.einsum('bhl,blhe->bhe', w, v).reshape(b, d)
    return proj('out')(out)


class Pooling(nn.Module):
  """Non-attentive pooling of the history: 'sum' | 'mean' | 'max' (masked)."""
  mode: str = 'sum'
  order_free = True
  packable = True

  def __call__(self, query, keys, mask, train: bool, packed: Packed | None = None):
    del query, train
    if packed is not None:
      return self._packed(keys, mask, packed)
    m = mask[..., None].astype(keys.dtype)
    if self.mode == 'sum':
      return (keys * m).sum(1)
    if self.mode == 'mean':
      return (keys * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
    if self.mode == 'max':
      out = jnp.where(mask[..., None], keys, -jnp.inf).max(1)
      return jnp.where(mask.any(1, keepdims=True), out, 0.0)
    raise ValueError(f'unknown pooling {self.mode!r}; choose sum, mean or max')

  def _packed(self, keys, mask, packed: Packed):
    """keys [C, D] packed rows -> [B, D]."""
    v = packed.valid[:, None]
    if self.mode in ('sum', 'mean'):
      out = packed.segment_sum(jnp.where(v, keys, 0.0))
      if self.mode == 'mean':
        out = out / jnp.maximum(mask.sum(1, keepdims=True).astype(keys.dtype), 1.0)
      return out
    if self.mode == 'max':
      out = jax.ops.segment_max(jnp.where(v, keys, -jnp.inf), packed.segment, packed.num,
                                indices_are_sorted=True)
      return jnp.where(mask.any(1, keepdims=True), out, 0.0)
    raise ValueError(f'unknown pooling {self.mode!r}; choose sum, mean or max')
