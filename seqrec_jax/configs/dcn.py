"""DNN vs DCN vs DCN-V2 (experiments/dcn_table.py).

  python -m seqrec_jax.main --config=seqrec_jax/configs/dcn.py:census --workdir=runs/dcnv2
  python -m seqrec_jax.main --config=seqrec_jax/configs/dcn.py:movielens,dcn --workdir=runs/dcn
  python -m seqrec_jax.main --config=seqrec_jax/configs/dcn.py:criteo \
      --config.data.criteo.path=/path/to/criteo --workdir=runs/dcnv2_criteo
  ... --config.model.cross_type=lowrank --config.model.cross_rank=0.25   # r = d/4
  ... --config.model.cross_type=mix --config.model.cross_experts=4 --config.model.structure=parallel

The argument is 'dataset[,model]' (dataset: census | movielens | criteo | synthetic; model:
dnn | dcn | dcnv2, default dcnv2). Deep network ReLU (both DCN papers), Adam, model selection
on valid logloss (the DCN-V2 paper's headline metric). Census trains the income task only
(config.data.tasks; the loader holds income and never_married).
"""
from __future__ import annotations

from seqrec_jax.configs import default


def get_config(arg: str = 'census'):
  parts = (arg or 'census').split(',')
  dataset = parts[0]
  c = default.get_config()
  c.data.name = dataset
  c.model.name = parts[1] if len(parts) > 1 else 'dcnv2'
  c.model.activation = 'relu'
  c.model.cross_layers = 3
  c.model.cross_rank = 0.25          # r = d/4 for lowrank and mix
  c.model.cross_experts = 4
  c.train.select_metric = 'logloss'
  c.train.progress = False
  if dataset == 'census':
    # UCI Adult: ~31k train rows; 6 categorical fields x 8 + 6 numeric -> d = 54.
    c.data.tasks = ('income',)
    c.data.batch_size = 256
    c.model.embed_dim = 8
    c.model.hidden = (128, 64)
    c.train.num_epochs = 8.0
    c.train.eval_every = 200
    c.train.checkpoint_every = 200
  elif dataset == 'movielens':
    # Target [item, genre] + mean-pooled history (x0 width 4 * embed_dim = 64). Sum pooling
    # (scale grows with history length) made every model's valid logloss swing between evals
    # and the test AUC std ~0.02 over seeds; mean pooling: ~0.003 (docs/dcn.md).
    c.model.embed_dim = 16
    c.model.hidden = (200, 80)
    c.model.pooling = 'mean'
    c.train.num_epochs = 2.0
    c.train.eval_every = 70
    c.train.checkpoint_every = 70
  elif dataset == 'criteo':
    # 13 dense + 26 categorical fields: d = 26 * embed_dim + 13.
    c.data.batch_size = 1024
    c.model.embed_dim = 16
    c.model.hidden = (400, 400)
    c.model.cross_layers = 2
    c.train.num_epochs = 1.0
    c.train.eval_every = 2000
    c.train.checkpoint_every = 2000
  elif dataset == 'synthetic':
    c.model.embed_dim = 8
    c.model.hidden = (64, 32)
    c.train.num_epochs = 1.0
    c.train.eval_every = 200
    c.train.checkpoint_every = 200
  return c
