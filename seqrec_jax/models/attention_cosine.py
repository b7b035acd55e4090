"""Worked example for docs/attention.md "Add an attention variant": cosine attention with a learned
temperature. Registering it is all it takes; tests/test_attention.py then covers it."""
# [example:start]
import flax.linen as nn
import jax.numpy as jnp

from seqrec_jax.layers.attention import normalize, weighted_sum
from seqrec_jax.models.builders import register_attention


class CosineAttention(nn.Module):
  """score_j = cos(q, k_j) * exp(log_scale): scale-free similarity, learned sharpness."""
  normalizer: str = 'softmax'
  order_free = True                      # no position features: history order is ignored

  @nn.compact
  def __call__(self, query, keys, mask, train: bool):
    """query [B, D], keys [B, L, D], mask [B, L] -> [B, D]."""
    log_scale = self.param('log_scale', nn.initializers.constant(jnp.log(5.0)), ())
    unit = lambda x: x / jnp.sqrt(jnp.sum(x * x, -1, keepdims=True) + 1e-12)
    scores = jnp.einsum('bd,bld->bl', unit(query), unit(keys)) * jnp.exp(log_scale)
    return weighted_sum(normalize(scores, mask, self.normalizer), keys)


@register_attention('cosine')
def _cosine(cfg):                        # cfg: config.model.attention
  return CosineAttention(normalizer=cfg.normalizer)
# [example:end]
