"""The recommendation funnel: retrieval channels -> merge -> pre-rank -> rank -> top-k.

Every stage works on numpy arrays of one batch of requests (users):
  retrieve_all   each channel's top-k_c (Channel contract, docs/RETRIEVAL_API), timed
  merge          R2's merge_channels (de-duplication, per-channel quotas) -> candidates [U, N]
  stage_lists    the final top-k of each way of using the stages on the same candidates:
                 retrieval order alone, pre-ranker alone, ranker alone, and the chain
                 (pre-rank the N to n_pre, the ranker orders those, top-k; `funnel_list`
                 keeps the ranker's top-n of those with its scores for the re-rank stage,
                 seqrec_jax/rerank/stage.py)
  list_metrics   recall / NDCG / HR at K of any list against the held-out targets
  request_latency  p50 / p99 wall time of one request through a stage (after a warm-up)
The scores of the pre-ranker and the ranker are arrays aligned with the candidates [U, N]
(how they were produced, e.g. train.py's saved test predictions, is the caller's business).
"""
from __future__ import annotations

import time
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from seqrec_jax.retrieval import metrics as RM


class Channel(Protocol):
  name: str

  def retrieve(self, hist_item: np.ndarray, k: int, *, user_id: np.ndarray | None = None,
               exclude_history: bool = True) -> tuple[np.ndarray, np.ndarray]:
    ...


def retrieve_all(channels: Mapping[str, Channel], q: Mapping[str, np.ndarray], k: int
                 ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, float]]:
  """Each channel's (ids [U, k], scores [U, k]) for the requests q (user_id, hist_item) and the
  seconds it took for the whole batch."""
  out, secs = {}, {}
  for name, ch in channels.items():
    t = time.perf_counter()
    ids, scores = ch.retrieve(q['hist_item'], k, user_id=q['user_id'])
    secs[name] = time.perf_counter() - t
    ids = np.asarray(ids)
    if ids.shape != (len(q['hist_item']), k):
      raise ValueError(f'channel {name!r} returned ids {ids.shape}; the Channel contract '
                       f'wants [{len(q["hist_item"])}, {k}]')
    out[name] = (ids, np.asarray(scores))
  return out, secs


def merge(results: Mapping[str, tuple[np.ndarray, np.ndarray]], quotas: Mapping[str, int],
          total: int) -> np.ndarray:
  """Candidates [U, total] from the channels' lists (seqrec_jax/retrieval/merge.py)."""
  if len(results) == 1:      # one channel: its own list, nothing to de-duplicate
    ids = next(iter(results.values()))[0][:, :total]
    return np.pad(ids, ((0, 0), (0, total - ids.shape[1])))
  from seqrec_jax.retrieval.merge import merge_channels  # pylint: disable=g-import-not-at-top
  return np.asarray(merge_channels(dict(results), dict(quotas), total)[0])


def quotas_for(names: Sequence[str], total: int, weights: Mapping[str, float] | None = None
               ) -> dict[str, int]:
  """Per-channel quotas summing to `total` (equal shares unless `weights`)."""
  w = np.array([1.0 if weights is None else float(weights.get(n, 0.0)) for n in names])
  if w.sum() <= 0:
    raise ValueError(f'quotas_for: weights {weights} give no channel of {list(names)} a share')
  q = np.floor(total * w / w.sum()).astype(int)
  q[np.argmax(w)] += total - q.sum()
  return {n: int(v) for n, v in zip(names, q)}


def stage_lists(cand: np.ndarray, pre_scores: np.ndarray | None, rank_scores: np.ndarray | None,
                n_pre: int, k: int) -> dict[str, np.ndarray]:
  """Final top-k [U, k] of each use of the stages on the same candidates cand [U, N]:
  'retrieval' (the merged order), 'pre-rank only', 'rank only' (the ranker scores all N) and
  'funnel' (pre-rank to n_pre, rank those). Stages whose scores are None are left out."""
  out = {'retrieval': cand[:, :k]}
  if pre_scores is not None:
    out['pre-rank only'] = RM.top_k(cand, pre_scores, k)
  if rank_scores is not None:
    out['rank only'] = RM.top_k(cand, rank_scores, k)
  if pre_scores is not None and rank_scores is not None:
    out['funnel'] = funnel_list(cand, pre_scores, rank_scores, n_pre, k)[0]
  return out


def funnel_list(cand: np.ndarray, pre_scores: np.ndarray, rank_scores: np.ndarray, n_pre: int,
                n: int) -> tuple[np.ndarray, np.ndarray]:
  """The chain's list before the re-rank stage: the pre-ranker keeps n_pre of cand [U, N], the
  ranker orders those -> (ids [U, n], ranker scores [U, n]) in the ranker's order."""
  keep = RM.top_k_positions(cand, pre_scores, n_pre)
  ids = np.take_along_axis(cand, keep, 1)
  rank = np.take_along_axis(rank_scores, keep, 1)
  pos = RM.top_k_positions(ids, rank, n)
  return np.take_along_axis(ids, pos, 1), np.take_along_axis(rank, pos, 1)


def list_metrics(ids: np.ndarray, target: np.ndarray, ks: Sequence[int]
                 ) -> dict[str, np.ndarray]:
  """Per-user recall@K, NDCG@K and HR@K for every K in ks: {'recall@50': [U], ...}."""
  out = {}
  for k in ks:
    out[f'recall@{k}'] = RM.recall_per_user(ids, target, k)
    out[f'ndcg@{k}'] = RM.ndcg_per_user(ids, target, k)
    out[f'hr@{k}'] = RM.hit_rate_per_user(ids, target, k)
  return out


def request_latency(fn: Callable[[], object], reps: int = 50, warmup: int = 3
                    ) -> dict[str, float]:
  """p50 / p99 milliseconds of fn() (one request; results blocked on if they are JAX arrays)."""
  def call():
    out = fn()
    for leaf in (out if isinstance(out, (tuple, list)) else (out,)):
      getattr(leaf, 'block_until_ready', lambda: None)()
  for _ in range(warmup):
    call()
  ts = []
  for _ in range(reps):
    t = time.perf_counter()
    call()
    ts.append((time.perf_counter() - t) * 1e3)
  return {'p50_ms': float(np.percentile(ts, 50)), 'p99_ms': float(np.percentile(ts, 99))}
