"""Two-tower retrieval (tasks/two_tower.py) on the training loop, and its keys.

  from seqrec_jax.data import retrieval as RD
  split = RD.leave_last_out(RD.movielens_logs())
  ds = RD.next_item_dataset(split, max_len=50)                  # name 'next_item'
  config = load_config('seqrec_jax/configs/two_tower.py', {'train.two_tower.loss': 'bce'})
  train.train_and_evaluate(config, workdir, ds)                 # checkpoints, resume, selection
  channels = retrieval.two_tower.channels(workdir, ds)          # one TwoTowerChannel per run

The argument is the name of the Dataset value the run is given (default 'next_item'); the data
is always a value (data/retrieval.next_item_dataset), never loaded by name. Defaults are those
of the loss / negatives comparison in docs/retrieval.md: embed 16, towers 64-32, mean-pooled
history, cosine / 0.05, Adam 3e-3, batch 256, 1000 steps, in-batch softmax with log-Q.

KEYS (appended to configs/default.py's table): model.two_tower.* (the towers, read by the
model registry) and train.two_tower.* (the task's loss, negatives, cut-offs and selection).
"""
from __future__ import annotations

from seqrec_jax.configs.keys import Key, integer, number, one_of, owner, satisfies, sizes

_SELECT = r'(recall|ndcg)@(\d+)'


def _select_ok(v) -> bool:
  import re  # pylint: disable=g-import-not-at-top
  return isinstance(v, str) and re.fullmatch(_SELECT, v) is not None


KEYS = (
    Key('model.two_tower.tower', (64, 32), 'two_tower: hidden sizes of each tower (the last is '
        'the vector width D)', sizes()),
    Key('model.two_tower.history', 'mean', 'two_tower: the user tower\'s history unit: sum | '
        'mean | max | attention (learned-query multi-head attention, model.attention.num_heads)',
        one_of(owner('seqrec_jax.models.two_tower', 'HISTORIES'))),
    Key('model.two_tower.similarity', 'cosine', 'two_tower: cosine | dot',
        one_of(owner('seqrec_jax.models.two_tower', 'SIMILARITIES'))),
    Key('model.two_tower.temperature', 0.05, 'two_tower: logits = similarity / temperature',
        number(0, lo_open=True)),
    Key('train.two_tower.loss', 'softmax', 'two_tower task: softmax (in-batch, listwise) | bce '
        '(pointwise) | hinge | triplet_log (pairwise) (retrieval/losses.py)',
        one_of(owner('seqrec_jax.retrieval.losses', 'LOSSES'))),
    Key('train.two_tower.log_q', True, 'softmax: subtract log Q of each candidate (Yi et al. '
        '2019)'),
    Key('train.two_tower.num_catalogue', 0, 'softmax: shared negatives per step drawn from '
        'count^negative_power (mixed negatives)', integer(0)),
    Key('train.two_tower.num_negatives', 8, 'bce / hinge / triplet_log: sampled negatives per '
        'row', integer(1)),
    Key('train.two_tower.negative_power', 0.75, 'negatives ~ train count^power (0 = uniform)',
        number(0)),
    Key('train.two_tower.margin', 0.2, 'hinge: max(0, neg - pos + margin)', number(0)),
    Key('train.two_tower.triplet_scale', 10.0, 'triplet_log: softplus(scale * (neg - pos))',
        number(0, lo_open=True)),
    Key('train.two_tower.hard_negative_rate', 0.0, 'probability each hard_item slot of a train '
        'row is used in a step (0: hard_item ignored)', number(0, 1)),
    Key('train.two_tower.ks', (50, 200), 'cut-offs of eval/<split>/recall@k and ndcg@k over '
        'the whole catalogue', sizes()),
    Key('train.two_tower.select_metric', 'recall@50', 'model selection on valid (higher is '
        'better): recall@k or ndcg@k, k in ks',
        satisfies(_select_ok, "'recall@<k>' or 'ndcg@<k>'")),
)


def get_config(arg: str = 'next_item'):
  # Imported here: default.py imports this module for KEYS.
  from seqrec_jax.configs import default  # pylint: disable=g-import-not-at-top
  c = default.get_config()
  c.data.name = arg or 'next_item'
  c.train.task = 'two_tower'
  c.model.name = 'two_tower'
  c.model.activation = 'relu'
  c.data.batch_size = 256
  c.data.pack_history = False     # the task evaluates a catalogue, not histories
  c.data.eval_batch_size = 2048
  c.optim.learning_rate = 3e-3
  c.train.num_steps = 1000
  c.train.eval_every = 200
  c.train.checkpoint_every = 200
  c.train.log_every = 50
  c.train.progress = False
  return c
