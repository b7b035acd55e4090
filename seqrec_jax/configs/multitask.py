"""Multi-task ranking: single_task | shared_bottom | omoe | mmoe | ple.

  python -m seqrec_jax.main --config=seqrec_jax/configs/multitask.py:mmoe_synthetic,mmoe \\
      --workdir=runs/mmoe_syn --config.data.mmoe_synthetic.correlation=0.5
  python -m seqrec_jax.main --config=seqrec_jax/configs/multitask.py:census,mmoe --workdir=runs/mmoe
  python -m seqrec_jax.main --config=seqrec_jax/configs/multitask.py:census_kdd,mmoe \\
      --workdir=runs/mmoe_kdd --config.data.census_kdd.path=/data/census   # task_group=2 too
  python -m seqrec_jax.main --config=seqrec_jax/configs/multitask.py:synthetic,mmoe \\
      --workdir=runs/din_mmoe            # DIN attention input block + MMoE on sequence data

The argument is 'dataset[,model]' (model default: mmoe). Sizes follow the MMoE paper's
setups where it gives them (8 experts; small single-layer experts and towers); the
shared-bottom/single-task bottoms are widened so parameter counts are comparable.
"""
from __future__ import annotations

from seqrec_jax.configs import default


def _census_model(m):
  """Model sizes of the census presets (UCI Adult and census-income KDD)."""
  m.embed_dim = 4
  m.experts = 8
  m.expert_hidden = (16,)
  m.bottom_hidden = (64,)
  m.tower_hidden = (8,)
  m.ple_levels = 2
  m.shared_experts = 4
  m.specific_experts = 2


def get_config(arg: str = 'mmoe_synthetic'):
  parts = (arg or 'mmoe_synthetic').split(',')
  dataset = parts[0]
  c = default.get_config()
  c.data.name = dataset
  c.model.name = parts[1] if len(parts) > 1 else 'mmoe'
  c.model.activation = 'relu'
  c.model.input = 'embed'
  c.train.progress = False
  if dataset == 'mmoe_synthetic':
    # d = 100 inputs, 8 experts of 16 ReLU units, towers of 8 (~15k parameters each model).
    c.model.experts = 8
    c.model.expert_hidden = (16,)
    c.model.bottom_hidden = (128,)       # shared_bottom: ~same parameters as mmoe
    c.model.tower_hidden = (8,)
    c.model.ple_levels = 2
    c.model.shared_experts = 4
    c.model.specific_experts = 2
    # A fast preset on 10k rows; experiments/mmoe_paper.py runs the paper's sizes (200k/50k).
    c.data.mmoe_synthetic.num_train = 10_000
    c.data.mmoe_synthetic.num_valid = 2000
    c.data.mmoe_synthetic.num_test = 2000
    c.data.batch_size = 256
    c.data.eval_batch_size = 2000
    c.optim.learning_rate = 3e-3
    c.train.num_epochs = 30.0             # 10k train rows: 39 steps/epoch, 1170 steps
    c.train.eval_every = 195
    c.train.checkpoint_every = 10**9      # only at evals (best + latest)
    c.train.log_every = 39
    c.train.select_metric = 'mse'
    c.train.select_task = 'mean'         # mean MSE over the two tasks
  elif dataset == 'census':
    # Income (main task) and never-married; categorical fields embedded, numbers as dense.
    _census_model(c.model)
    c.data.batch_size = 512
    c.data.eval_batch_size = 4096
    c.optim.learning_rate = 3e-3
    c.train.num_epochs = 10.0             # ~34k train rows: 66 steps/epoch
    c.train.eval_every = 66
    c.train.checkpoint_every = 10**9
    c.train.log_every = 66
    c.train.select_metric = 'auc'
    c.train.select_task = 'income'       # main task, as in the MMoE paper
  elif dataset == 'census_kdd':
    # UCI census-income (KDD), the MMoE paper's task groups (data/census_kdd.py); the census
    # preset's sizes, 199,523 train rows.
    _census_model(c.model)
    c.data.batch_size = 1024
    c.data.eval_batch_size = 8192
    c.optim.learning_rate = 3e-3
    c.train.num_epochs = 10.0             # 195 steps/epoch
    c.train.eval_every = 195
    c.train.checkpoint_every = 10**9
    c.train.log_every = 195
    c.train.select_metric = 'auc'
    c.train.select_task = ''             # the group's first task: income (1) or college (2)
  elif dataset == 'synthetic':
    c.model.input = 'din'                # DIN target attention as the input block
    c.model.activation = 'dice'
    c.model.expert_hidden = (64,)
    c.model.tower_hidden = (32,)
    c.train.num_epochs = 3.0
    c.train.eval_every = 400
    c.train.checkpoint_every = 400
  return c
