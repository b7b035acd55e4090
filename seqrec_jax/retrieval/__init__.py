"""Retrieval channels, index/serving, and the retrieval -> pre-rank -> rank funnel (issue 21)."""
