"""Two-tower training losses: pointwise, pairwise (triplet) and listwise (sampled softmax).

Every loss takes scores already computed from the towers and returns a scalar mean; masks say
which negatives are real (False: padding, or the row's own positive item -- a false negative).

  pointwise_bce     BCE with label 1 on the positive and 0 on each sampled negative, averaged
                    over every (row, item) pair that is real
  triplet_hinge     max(0, cos(u, i-) - cos(u, i+) + margin), mean over real (row, negative)
  triplet_log       log(1 + exp(scale * (cos(u, i-) - cos(u, i+)))), the smooth version
  sampled_softmax   cross entropy over [positive | candidates] with the log-Q correction
                    (Yi et al., RecSys 2019, eq. 3): logit s(u, j) - log Q(j), Q(j) the expected
                    number of times j is in the candidate set; the positive is corrected too
  in_batch_softmax  sampled_softmax whose candidates are the batch's own positives (column j of
                    row i is item_j); in-batch false negatives (item_j == item_i, j != i) masked
  two_tower_loss    one of the above ('softmax' | 'bce' | 'hinge' | 'triplet_log') from the
                    towers' vectors of a step's items (`candidate_ids`): what the two-tower
                    task (tasks/two_tower.py) differentiates

Log-Q: a softmax over a sample of candidates drawn from Q estimates the full softmax only when
each candidate's logit is reduced by log Q(j); without it popular items, over-represented as
negatives, are pushed down. With Q uniform the correction is one constant on every logit and
the loss equals the uncorrected softmax (tests/test_retrieval_losses.py checks this).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

_NEG = -1e9     # a masked logit: exp underflows to exactly 0, and the gradient through it is 0


def _masked_mean(x, mask):
  m = mask.astype(x.dtype)
  return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


def pointwise_bce(pos_logit, neg_logit, neg_mask=None):
  """pos_logit [B], neg_logit [B, n], neg_mask [B, n] bool (None = all real) -> scalar:
  mean of softplus(-pos) and softplus(neg) over the B positives and the real negatives."""
  if neg_mask is None:
    neg_mask = jnp.ones(neg_logit.shape, bool)
  m = neg_mask.astype(jnp.float32)
  total = jnp.sum(jax.nn.softplus(-pos_logit)) + jnp.sum(jax.nn.softplus(neg_logit) * m)
  return total / (pos_logit.shape[0] + jnp.sum(m))


def triplet_hinge(pos_sim, neg_sim, neg_mask=None, margin: float = 0.2):
  """pos_sim [B], neg_sim [B, n] (cosines) -> mean over real (row, negative) of
  max(0, neg - pos + margin)."""
  if neg_mask is None:
    neg_mask = jnp.ones(neg_sim.shape, bool)
  return _masked_mean(jax.nn.relu(neg_sim - pos_sim[:, None] + margin), neg_mask)


def triplet_log(pos_sim, neg_sim, neg_mask=None, scale: float = 1.0):
  """pos_sim [B], neg_sim [B, n] -> mean over real pairs of log(1 + exp(scale * (neg - pos)))."""
  if neg_mask is None:
    neg_mask = jnp.ones(neg_sim.shape, bool)
  return _masked_mean(jax.nn.softplus(scale * (neg_sim - pos_sim[:, None])), neg_mask)


def sampled_softmax(pos_logit, cand_logit, cand_mask=None, pos_log_q=None, cand_log_q=None):
  """Cross entropy of the positive against [positive | candidates], log-Q corrected.

  pos_logit [B], cand_logit [B, C], cand_mask [B, C] bool (False: excluded, e.g. the row's own
  positive among the candidates); pos_log_q [B] and cand_log_q [C] or [B, C]: log Q of the
  positive and of each candidate (None: no correction). Returns the mean over rows.
  """
  if cand_log_q is not None:
    cand_logit = cand_logit - cand_log_q
  if pos_log_q is not None:
    pos_logit = pos_logit - pos_log_q
  if cand_mask is not None:
    cand_logit = jnp.where(cand_mask, cand_logit, _NEG)
  logits = jnp.concatenate([pos_logit[:, None], cand_logit], axis=1)           # [B, 1 + C]
  return jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[:, 0])


def in_batch_mask(item_id):
  """item_id [B] -> [B, B] bool: True where column j is a real negative for row i (j != i and
  item_j != item_i: the same item as the row's positive is a false negative)."""
  return item_id[:, None] != item_id[None, :]


def in_batch_softmax(logits, item_id, log_q=None, extra_logit=None, extra_mask=None,
                     extra_log_q=None):
  """Listwise softmax with in-batch negatives (Yi et al. 2019), optionally with extra columns.

  logits [B, B]: s(u_i, v_j) (row i's positive is column i); item_id [B]: the positives' ids;
  log_q [B]: log Q of each in-batch item (None: no correction). extra_logit [B, E] with
  extra_mask [B, E] and extra_log_q [E] or [B, E]: more negatives (catalogue samples, hard
  negatives; a column with log Q = 0 is uncorrected). Returns the mean over rows.
  """
  diag = jnp.diagonal(logits)
  cand, mask = logits, in_batch_mask(item_id)          # the diagonal is masked (item_i == item_i)
  cand_log_q = None if log_q is None else jnp.broadcast_to(log_q[None, :], logits.shape)
  if extra_logit is not None:
    e_mask = jnp.ones(extra_logit.shape, bool) if extra_mask is None else extra_mask
    cand = jnp.concatenate([cand, extra_logit], 1)
    mask = jnp.concatenate([mask, e_mask], 1)
    if log_q is not None or extra_log_q is not None:
      a = jnp.zeros(logits.shape) if cand_log_q is None else cand_log_q
      b = (jnp.zeros(extra_logit.shape) if extra_log_q is None
           else jnp.broadcast_to(extra_log_q, extra_logit.shape))
      cand_log_q = jnp.concatenate([a, b], 1)
  return sampled_softmax(diag, cand, mask, log_q, cand_log_q)


LOSSES = ('softmax', 'bce', 'hinge', 'triplet_log')


def candidate_ids(loss: str, batch) -> jax.Array:
  """Every item a step's loss reads, concatenated: positives target_item [B], then the sampled
  negatives (cat_item [M] for 'softmax', neg_item [B, n] flattened otherwise) and hard_item
  [B, h] flattened, each only when in the batch. The towers run once over all of them (one
  gather, one item tower in the program); `two_tower_loss` splits the vectors back."""
  neg = batch.get('cat_item' if loss == 'softmax' else 'neg_item')
  parts = [batch['target_item']] + [x.reshape(-1) for x in (neg, batch.get('hard_item'))
                                     if x is not None]
  return jnp.concatenate(parts)


def two_tower_loss(loss: str, u, vecs, batch, *, temperature: float, log_q=None,
                   hard_rate: float = 0.0, margin: float = 0.2, triplet_scale: float = 10.0):
  """A two-tower step's loss from the towers' outputs (a pure function; the model is not in it).

  u [B, D]: user vectors; vecs [B + M | B + B n (+ B h), D]: item vectors of
  `candidate_ids(loss, batch)`; batch: target_item [B], cat_item [M] ('softmax': catalogue
  columns shared by every row) or neg_item [B, n] (the other losses; required), optional
  hard_item [B, h] with hard_keep [B, h] bool (the slots used this step). log_q [I]: log Q of
  every item (negatives.log_q; 'softmax' only, None = uncorrected). `temperature` scales the
  similarities into logits for 'softmax' and 'bce'; 'hinge' / 'triplet_log' use the raw
  similarity (cosines when the towers normalise). Returns the scalar loss (module docstring)."""
  if loss not in LOSSES:
    raise ValueError(f'two_tower_loss: loss={loss!r}; choose from {LOSSES}')
  pos, hard = batch['target_item'], batch.get('hard_item')
  b = pos.shape[0]
  neg = batch.get('cat_item' if loss == 'softmax' else 'neg_item')
  if neg is None and loss != 'softmax':
    raise ValueError(f"two_tower_loss: loss={loss!r} needs batch['neg_item'] [B, n]")
  v, rest = vecs[:b], vecs[b:]
  if neg is not None:
    n_vec, rest = rest[:neg.size].reshape(neg.shape + (-1,)), rest[neg.size:]
  if hard is not None:
    h_mask = batch['hard_keep']
    h_sim = jnp.einsum('bd,bhd->bh', u, rest.reshape(hard.shape + (-1,)))        # [B, h]
  tv = temperature
  if loss == 'softmax':
    extra, e_mask, e_lq = [], [], []
    if neg is not None:                                     # catalogue columns [M]
      extra.append(u @ n_vec.T / tv)
      e_mask.append(neg[None, :] != pos[:, None])
      e_lq.append(None if log_q is None else jnp.broadcast_to(log_q[neg], (b, neg.shape[0])))
    if hard is not None:
      extra.append(h_sim / tv)
      e_mask.append(h_mask)
      # A kept hard slot is one more expected occurrence of its item in this row's candidates.
      e_lq.append(None if log_q is None else jnp.log(jnp.exp(log_q[hard]) + hard_rate))
    kw = {}
    if extra:
      kw = dict(extra_logit=jnp.concatenate(extra, 1), extra_mask=jnp.concatenate(e_mask, 1),
                extra_log_q=None if log_q is None else jnp.concatenate(e_lq, 1))
    return in_batch_softmax(u @ v.T / tv, pos, None if log_q is None else log_q[pos], **kw)
  n_sim = jnp.einsum('bd,bnd->bn', u, n_vec)
  n_mask = neg != pos[:, None]
  if hard is not None:
    n_sim, n_mask = jnp.concatenate([n_sim, h_sim], 1), jnp.concatenate([n_mask, h_mask], 1)
  p_sim = jnp.sum(u * v, -1)
  if loss == 'bce':
    return pointwise_bce(p_sim / tv, n_sim / tv, n_mask)
  if loss == 'hinge':
    return triplet_hinge(p_sim, n_sim, n_mask, margin)
  return triplet_log(p_sim, n_sim, n_mask, triplet_scale)
