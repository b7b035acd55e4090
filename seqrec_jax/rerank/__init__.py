"""Re-ranking: diversity over the ranker's top-N (MMR, greedy DPP) and rule-based scattering.

  similarity.py : item-item similarity S [R, N, N] from embeddings (cosine) or categories
  mmr.py        : maximal marginal relevance (Carbonell & Goldstein 1998)
  dpp.py        : greedy DPP MAP with incremental Cholesky, full or sliding window
                  (Chen, Zhang & Zhou 2018)
  scatter.py    : at most m items of a category in any w consecutive positions
  metrics.py    : intra-list distance, category coverage
Every function is batched over requests [R, ...]; padded candidates carry valid=False.
"""
