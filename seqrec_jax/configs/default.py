"""The table of config keys (KEYS: default, help, check; configs/keys.py) and the config every
config file starts from. Every key any model, dataset or loop reads is declared here (dataset
blocks by their dataset module), so a misspelled override (`--config.model.activatoin=dice`)
is an error, not a silent no-op, and code reads `config.a.b`, never `.get('b', default)`.
"""
from __future__ import annotations

import ml_collections

from seqrec_jax.configs import two_tower as _two_tower
from seqrec_jax.configs.keys import (Key, block, boolean, build, integer, names, number,
                                     numbers, one_of, optional, owner, registered, satisfies,
                                     sizes, text)
from seqrec_jax.data import amazon, census, census_kdd, criteo, mmoe_synthetic, movielens
from seqrec_jax.data import synthetic, video

_ACTIVATIONS = owner('seqrec_jax.layers.activations', 'ACTIVATIONS')
_METRICS = owner('seqrec_jax.configs.validate', 'SELECT_METRICS',
                 lambda d: {m for ms in d.values() for m in ms})
_MODES = ('auto', 'always', 'never')


def _lower(v) -> str:
  return str(v).lower()


def _lhuc(v) -> bool:
  return isinstance(v, str) and (v in ('none', 'all', 'last') or all(
      p.strip().lstrip('-').isdigit() for p in v.split(',')))


SEED = (Key('seed', 0, 'PRNG seed of init, dropout, batch order and negatives', integer()),)

DATA = (
    Key('data.name', 'synthetic', 'dataset (seqrec_jax/data/, registry data.DATASETS)',
        registered('dataset', owner('seqrec_jax.data', 'DATASETS'))),
    Key('data.batch_size', 256, 'global batch (all devices and processes together)',
        integer(1)),
    Key('data.eval_batch_size', 2048, 'global; the last batch is padded, not dropped',
        integer(1)),
    Key('data.allow_empty_history', True,
        'a new user with no behaviours is a valid input (False: such rows are data errors)'),
    Key('data.pack_history', None,
        'attention on real behaviours only (data/packing.py; same maths, single-device runs); '
        'None = the platform default (platform_defaults.py)', optional(boolean()), bool),
    Key('data.pack_buckets', None,
        'packed row counts are rounded to batch_size * max_len / pack_buckets (compiled '
        'shapes); None = the platform default', optional(integer(1)), int),
    Key('data.pack_max_fill', None,
        'batches with more than this share of real positions stay padded; None = the '
        'platform default', optional(number(0, 1)), float),
    Key('data.tasks', (), "subset of the dataset's tasks, e.g. ('income',); () = all",
        names()),
    Key('data.item_top_k', 0, '> 0: keep the k most frequent train item ids, the rest -> 0; '
        '-1: no item ids (all -> 0, categories kept)', integer(-1)),
    Key('data.data_dir', '', "where TFDS-prepared datasets live ('' = $SEQREC_DATA_DIR or "
        '~/.cache/seqrec_jax); rebuilt only when the block, raw files or builder change'),
    Key('data.in_memory', 'auto', 'read prepared splits into memory: auto (when within '
        'max_memory_mb) | always | never', one_of(_MODES + ('true', 'false'), _lower)),
    Key('data.max_memory_mb', 2048, 'budget for reading prepared splits into memory',
        number(0)),
    Key('data.device_resident', 'auto', 'train split placed on the accelerator once, batches '
        'gathered there (data/device_split.py): auto = on GPU/TPU when it fits '
        'device_memory_fraction | always | never (same batches either way)',
        one_of(owner('seqrec_jax.data.device_split', 'MODES'), _lower)),
    Key('data.device_memory_fraction', 0.25,
        'device_resident=auto: share of device memory the stored columns may take',
        number(0, 1, lo_open=True)),
    *block('data.synthetic', synthetic.KEYS),
    *block('data.movielens', movielens.KEYS),
    *block('data.amazon', amazon.KEYS),
    *block('data.census', census.KEYS),
    *block('data.criteo', criteo.KEYS),
    *block('data.census_kdd', census_kdd.KEYS),
    *block('data.mmoe_synthetic', mmoe_synthetic.KEYS),
    *block('data.video', video.KEYS),
)

MODEL = (
    Key('model.name', 'din', 'model (seqrec_jax/models/, registry models.MODELS)',
        registered('model', owner('seqrec_jax.models', 'MODELS'))),
    Key('model.embed_dim', 16, 'per table; items are [item, cate] -> 2 * embed_dim',
        integer(1)),
    Key('model.hidden', (200, 80), 'main MLP (DIN paper)', sizes()),
    Key('model.activation', 'dice', 'of the MLPs (layers/activations.py)',
        one_of(_ACTIVATIONS)),
    Key('model.dice_eps', 1e-8, 'Dice epsilon (DIN paper eq. 9)', number(0, lo_open=True)),
    Key('model.compute_dtype', 'float32', 'bfloat16: matmuls/activations in bfloat16, params '
        'and optimiser state float32 (precision.py; for GPU/TPU)',
        one_of(owner('seqrec_jax.precision', 'DTYPES'))),
    Key('model.dropout', 0.0, 'dropout rate of the MLPs', number(0, 1, hi_open=True)),
    Key('model.mba_lambda', 0.0, 'DIN paper eq. 6: mini-batch aware L2 on embedding rows '
        'present in the batch, weighted by 1 / n_j (0 = off)', number(0)),
    Key('model.embed_dropout', 0.0, 'zero each looked-up id vector with this probability '
        '(DIN paper Table 4: 0.5)', number(0, 1, hi_open=True)),
    Key('model.frequency_reg', 'mba', 'per-id weight of the model.mba_lambda penalty '
        '(layers/embedding.py): mba = 1 / n_j (DIN eq. 6) | difacto = 1 per batch holding '
        'the id (DiFacto: strength grows with frequency)',
        one_of(owner('seqrec_jax.layers.embedding', 'FREQUENCY_REGS'))),
    Key('model.input_bn', False, 'BatchNorm of the MLP input (the released DIN code; '
        'models/blocks.Head): base, din, dnn, dcn, dcnv2, wide_deep, pnn, deepfm', boolean()),
    Key('model.use_user_embedding', False,
        'a user id table (splits are by user: unseen users only have OOV ids)'),
    Key('model.pooling', 'sum', 'history pooling of base, dnn, dcn, dcnv2, wide_deep, pnn, '
        "deepfm: sum | mean | max ('attention' = model.attention; dnn/dcn/dcnv2)",
        one_of(owner('seqrec_jax.models.builders', 'POOLINGS',
                     lambda p: tuple(p) + ('attention',)))),
    Key('model.wide_cross_buckets', 1 << 20,
        'wide_deep: rows of a hashed behaviour x candidate table', integer(1)),
    Key('model.field_gate', 'none', "gating of the shared field embeddings [B, F, d]: none | "
        "senet (FiBiNET's SENET layer, layers/gating.py)",
        one_of(owner('seqrec_jax.models.builders', 'FIELD_GATES'))),
    Key('model.senet_reduction', 3.0, 'SENet reduction ratio r (hidden width F // r)',
        number(1)),
    Key('model.senet_excitation', 'relu', 'SENet excitation: relu (FiBiNET) | sigmoid '
        '(gates in (0, 1))', one_of(owner('seqrec_jax.layers.gating', 'EXCITATIONS'))),
    Key('model.lhuc', 'none', 'LHUC / PPNet gates 2 * sigmoid(.) on hidden layers of the main '
        "MLP (multi-task: of each task tower): none | all | last | indices '0,1'",
        satisfies(_lhuc, "'none', 'all', 'last' or comma-separated hidden-layer indices "
                  "('0,1')")),
    Key('model.lhuc_inputs', ('user',), "LHUC gate inputs (stop-gradient): 'user' (needs "
        'use_user_embedding) and/or sparse field names', names()),
    Key('model.lhuc_hidden', 64, "width of the LHUC gate network's hidden layer", integer(1)),
    Key('model.prerank_tower', (64, 32), 'prerank: user and item tower MLPs (the last size is '
        'the vector width)', sizes()),
    Key('model.prerank_cross', (16,), 'prerank cross tower MLP (per candidate)', sizes()),
    Key('model.prerank_head', (16,), 'prerank per-task head MLP', sizes()),
    # Attention units (layers/attention.py, built by models/builders.py); units ignore keys
    # they do not use.
    Key('model.attention.name', 'din', 'din (MLP scorer over `inputs`) | dot | scaled_dot | '
        'bilinear | multihead | cosine | sum | mean | max (registry builders.ATTENTIONS)',
        registered('attention unit', owner('seqrec_jax.models.builders', 'ATTENTIONS'))),
    Key('model.attention.inputs', ('q', 'k', 'q-k', 'q*k'), "din: the scorer MLP's input "
        'blocks, in order', names(owner('seqrec_jax.layers.attention_proj', 'PARTS'))),
    Key('model.attention.hidden', (80, 40), 'din: the scorer MLP', sizes()),
    Key('model.attention.activation', 'same', "of the scorer MLP; 'same' = model.activation",
        one_of(owner('seqrec_jax.layers.activations', 'ACTIVATIONS',
                     lambda a: ('same',) + tuple(a)))),
    Key('model.attention.normalizer', 'none', 'of the scores: none (DIN paper: keeps the '
        'intensity of interest) | softmax | sigmoid',
        one_of(owner('seqrec_jax.layers.attention', 'NORMALIZERS'))),
    Key('model.attention.num_heads', 2, 'multihead: heads (must divide 2 * embed_dim)',
        integer(1)),
    Key('model.attention.use_position', False,
        'add recency features (0 = newest real behaviour)'),
    Key('model.attention.max_position', 64, 'recency buckets; older behaviours share the last',
        integer(1)),
    # Feature crossing (models dnn/dcn/dcnv2, and the backbone of any Head-based model).
    Key('model.backbone', 'mlp', "under the logit: mlp (the Head's MLP) | dcn | dcnv2 (cross "
        'net + deep net)', one_of(owner('seqrec_jax.models.builders', 'BACKBONES'))),
    Key('model.structure', 'stacked', 'cross and deep nets: stacked (x0 -> cross -> deep) | '
        'parallel (concat)', one_of(owner('seqrec_jax.layers.cross', 'STRUCTURES'))),
    Key('model.cross_layers', 3, 'cross layers', integer(0)),
    Key('model.cross_type', 'full', 'DCN-V2: full | lowrank (W = U V^T) | mix (DCN-Mix)',
        one_of(owner('seqrec_jax.layers.cross', 'CROSS_TYPES'))),
    Key('model.cross_rank', 0.25, '>= 1: rank r; in (0, 1): fraction of the input width d',
        number(0, lo_open=True)),
    Key('model.cross_experts', 4, 'DCN-Mix experts', integer(1)),
    Key('model.cross_nonlinearity', 'tanh', 'DCN-Mix g(.) inside the low-rank projection',
        one_of(owner('seqrec_jax.layers.cross', 'NONLINEARITIES'))),
    # Multi-task models (models/multitask.py): single_task | shared_bottom | omoe | mmoe | ple.
    Key('model.input', 'embed', 'multi-task input block: embed (no history) | pool '
        '(model.pooling) | din (attention)', one_of(owner('seqrec_jax.models.multitask',
                                                          'INPUTS'))),
    Key('model.experts', 4, 'omoe/mmoe: number of experts', integer(1)),
    Key('model.expert_hidden', (64,), "every expert's MLP (the last size is the expert "
        'output)', sizes()),
    Key('model.bottom_hidden', (), 'single_task/shared_bottom bottom MLP; () = expert_hidden',
        sizes()),
    Key('model.tower_hidden', (32,), 'per-task tower MLP before its logit', sizes()),
    Key('model.ple_levels', 2, 'ple: extraction levels (1 = CGC)', integer(1)),
    Key('model.shared_experts', 2, 'ple: shared experts per level', integer(0)),
    Key('model.specific_experts', 2, 'ple: experts per task per level', integer(0)),
    Key('model.expert_dropout', 0.0, 'train: drop whole experts in every gate, renormalise',
        number(0, 1, hi_open=True)),
    Key('model.gate_bias', True, 'gates softmax(W x + b); False = MMoE paper eq. 8 (no b)'),
)

OPTIM = (
    Key('optim.name', 'adam', 'optimiser (state.py)', one_of(owner('seqrec_jax.state',
                                                                   'OPTIMIZERS'))),
    Key('optim.learning_rate', 1e-3, 'peak learning rate', number(0, lo_open=True)),
    Key('optim.schedule', 'constant', 'learning-rate schedule after warmup',
        one_of(owner('seqrec_jax.state', 'SCHEDULES'))),
    Key('optim.warmup_steps', 0, 'linear warmup from 0', integer(0)),
    Key('optim.clip_norm', 0.0, '> 0: clip the global gradient norm', number(0)),
    Key('optim.weight_decay', 0.0, 'adamw: decoupled; adam/adagrad/sgd: L2 on all params',
        number(0)),
    Key('optim.decay_rate', 0.1, 'schedule=exponential: lr * rate ** (step / decay_steps)',
        number(0, lo_open=True)),
    Key('optim.decay_steps', 0, '0 = the whole run (the rate is reached at the end)',
        integer(0)),
    Key('optim.staircase', False, 'exponential: step-wise drops instead of smooth decay'),
    Key('optim.momentum', 0.0, 'sgd: momentum (0 = plain SGD)', number(0)),
)

TRAIN = (
    Key('train.num_epochs', 3.0, 'length of training when num_steps <= 0', number()),
    Key('train.num_steps', -1, '> 0 overrides num_epochs',
        integer(note='<= 0: num_epochs')),
    Key('train.eval_every', 500, 'steps between evaluations on valid', integer(1)),
    Key('train.log_every', 50, 'steps between training-metric records', integer(1)),
    Key('train.checkpoint_every', 500, 'steps between checkpoints (evaluations also save)',
        integer(1)),
    Key('train.keep_checkpoints', 2, 'newest checkpoints kept',
        integer(1, '0 keeps no checkpoint: nothing to resume from')),
    Key('train.patience', -1, 'stop after this many evals without improvement',
        integer(note='<= 0: off')),
    Key('train.select_metric', 'auc', 'model selection on the valid split (per task kind: '
        'validate.SELECT_METRICS)', one_of(_METRICS)),
    Key('train.select_task', '', "multi-task: which task selects ('' = the first; 'mean')",
        text()),
    Key('train.progress', True, 'a progress bar on the terminal'),
    Key('train.loss_weights', (), "per-task loss weights in the order of the dataset's "
        "(selected) tasks; () = each task's own weight (1.0); may vary in a group",
        numbers(0, 'one weight per task')),
    # Many runs as one program (multirun.py, docs/multirun.md).
    Key('train.runs', 1, 'runs trained as one program (seeds seed, seed+1, ...)', integer(1)),
    Key('train.run_seeds', (), 'the seeds of a group (() = seed, seed+1, ..., seed+runs-1)',
        satisfies(lambda v: isinstance(v, (list, tuple)) and all(integer().ok(x) for x in v),
                  'a list of integer seeds (() = seed, seed+1, ...)')),
    Key('train.run_chunk', None, 'runs of a group per vmapped call: 0 = all S (one vmap), '
        'c >= 1 = a lax.map over chunks of c runs (1: each run traces the single run\'s step); '
        'None = the platform default (platform_defaults.py)', optional(integer(0)), int),
    Key('train.vary', '', 'JSON object {dotted config key: [values]} of vectorisable scalars '
        '(multirun.VARY_KEYS), crossed with run_seeds, e.g. '
        '\'{"optim.learning_rate": [1e-4, 1e-3]}\'', text("'' = none")),
    Key('train.save_predictions', False, "the best-valid state's test predictions go to "
        '<workdir>/predictions_test.npz (evaluate.save_predictions)'),
    Key('train.init_from', '', "warm start (docs/incremental.md): '' = random init; else a "
        'workdir (its best/ checkpoint, else the newest) or one checkpoint directory whose '
        'params and statistics replace the fresh ones at step 0',
        text("a workdir or checkpoint directory; '' = random init")),
    Key('train.trainable', 'all', 'all | embeddings: only the nn.Embed tables are updated',
        one_of(owner('seqrec_jax.state', 'TRAINABLE'))),
    Key('train.task', 'ranking', 'what the loop trains (seqrec_jax/tasks/): ranking | two_tower',
        registered('task', owner('seqrec_jax.tasks', 'TASKS'))),
)

# Mesh over all (global) devices: data x model must equal jax.device_count() (parallel.py).
PARALLEL = (
    Key('parallel.data', -1, 'data-parallel size; -1 = device_count / model',
        satisfies(lambda v: integer().ok(v) and (v == -1 or v >= 1),
                  '-1 (all devices / model) or an integer >= 1')),
    Key('parallel.model', 1, '> 1: embedding tables sharded by rows over this axis',
        integer(1)),
    Key('parallel.strategy', 'jit', 'jit (sharded jit) | pmap (data parallel, same numerics)',
        one_of(owner('seqrec_jax.parallel', 'STRATEGIES'))),
    Key('parallel.runs', 1, "> 1: shard a multi-run group's run axis over this axis",
        integer(1)),
)

# Families that keep their keys in their config file (model.two_tower.*, train.two_tower.*).
KEYS = SEED + DATA + MODEL + OPTIM + TRAIN + PARALLEL + _two_tower.KEYS
BY_PATH = {k.path: k for k in KEYS}


def get_config() -> ml_collections.ConfigDict:
  c = build(KEYS)
  c.lock()   # no new keys: a misspelt key (c.train.num_stepz = 2) is an error, not a no-op
  return c
