"""Tiny CPU config for tests: a few hundred synthetic users, a few steps."""
from __future__ import annotations

from seqrec_jax.configs import default


def get_config(arg: str = 'din'):
  c = default.get_config()
  c.model.name = arg or 'din'
  s = c.data.synthetic
  s.num_users, s.num_items, s.num_cates, s.max_len = 400, 100, 8, 12
  s.impressions_per_user = 6
  c.data.batch_size = 32
  c.data.eval_batch_size = 64
  c.model.embed_dim = 4
  c.model.hidden = (16, 8)
  c.model.attention.hidden = (8, 4)
  c.train.num_steps = 4
  c.train.eval_every = 2
  c.train.checkpoint_every = 2
  c.train.log_every = 1
  c.train.progress = False
  return c
