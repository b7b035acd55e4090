"""Defaults shared by every config: all keys any model, dataset or loop reads live here, so a
misspelled override (`--config.model.activatoin=dice`) is an error, not a silent no-op."""
from __future__ import annotations

import ml_collections

from seqrec_jax.data import mmoe_synthetic, video
from seqrec_jax.data import amazon, census, census_kdd, criteo, movielens, synthetic


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = 'synthetic'
  c.data.batch_size = 256            # global batch (all devices and processes together)
  c.data.eval_batch_size = 2048      # global; the last batch is padded, not dropped
  c.data.allow_empty_history = True  # a new user with no behaviours is a valid input
  # Attention on real behaviours only (data/packing.py; same maths, single-device runs):
  # packed row counts are rounded to batch_size * max_len / pack_buckets (compiled shapes);
  # batches with more than pack_max_fill real positions stay padded. None = the platform's
  # default (seqrec_jax/platform_defaults.py: cpu True / 32 / 0.8; gpu, tpu padded).
  c.data.pack_history = ml_collections.FieldReference(None, field_type=bool)
  c.data.pack_buckets = ml_collections.FieldReference(None, field_type=int)
  c.data.pack_max_fill = ml_collections.FieldReference(None, field_type=float)
  c.data.tasks = ()                  # subset of the dataset's tasks, e.g. ('income',); () = all
  c.data.item_top_k = 0              # > 0: keep the k most frequent train item ids, rest -> 0
  c.data.synthetic = ml_collections.ConfigDict(dict(synthetic.DEFAULTS))
  # Real datasets (data/movielens.py, amazon.py, census.py, criteo.py): prepared once by a TFDS
  # builder into data_dir ('' = $SEQREC_DATA_DIR or ~/.cache/seqrec_jax), rebuilt only when the
  # sub-block, the raw files or the builder version change.
  c.data.data_dir = ''
  c.data.in_memory = 'auto'          # auto (splits within max_memory_mb) | always | never
  c.data.max_memory_mb = 2048        # budget for reading prepared splits into memory
  # Train split placed on the accelerator once, batches gathered there (data/device_split.py):
  # auto = on GPU/TPU when its stored columns fit device_memory_fraction of device memory.
  c.data.device_resident = 'auto'    # auto | always | never (same batches either way)
  c.data.device_memory_fraction = 0.25
  c.data.movielens = ml_collections.ConfigDict(dict(movielens.DEFAULTS))
  c.data.amazon = ml_collections.ConfigDict(dict(amazon.DEFAULTS))
  c.data.census = ml_collections.ConfigDict(dict(census.DEFAULTS))
  c.data.criteo = ml_collections.ConfigDict(dict(criteo.DEFAULTS))
  # UCI census-income (KDD), the MMoE paper's task groups (data/census_kdd.py).
  c.data.census_kdd = ml_collections.ConfigDict(dict(census_kdd.DEFAULTS))
  # MMoE paper's two-task regression data (data/mmoe_synthetic.py).
  c.data.mmoe_synthetic = ml_collections.ConfigDict(dict(mmoe_synthetic.DEFAULTS))
  # Synthetic short-video feed with oracle labels (data/video.py).
  c.data.video = ml_collections.ConfigDict(dict(video.DEFAULTS))

  c.model = ml_collections.ConfigDict()
  c.model.name = 'din'
  c.model.embed_dim = 16             # per table; items are [item, cate] -> 2 * embed_dim
  c.model.hidden = (200, 80)         # main MLP (DIN paper)
  c.model.activation = 'dice'        # dice | prelu | relu | sigmoid
  c.model.dice_eps = 1e-8            # DIN paper eq. 9
  # float32 | bfloat16: matmuls/activations in bfloat16, params and Adam state float32
  # (seqrec_jax/precision.py; for GPU/TPU; AUC parity there not measured yet).
  c.model.compute_dtype = 'float32'
  c.model.dropout = 0.0
  # DIN paper Sec. 4.3.1 / Table 4 regularisers (base, din, dnn, dcn, dcnv2). mba_lambda > 0:
  # mini-batch aware L2 on embedding rows present in the batch, weighted by 1 / n_j (eq. 6);
  # embed_dropout: zero each looked-up id vector with this probability (paper: 0.5).
  c.model.mba_lambda = 0.0
  c.model.embed_dropout = 0.0
  c.model.use_user_embedding = False  # splits are by user: unseen users only have OOV ids
  c.model.pooling = 'sum'            # base, wide_deep, pnn, deepfm: sum | mean | max
  c.model.wide_cross_buckets = 1 << 20  # wide_deep: rows of a hashed behaviour x candidate table
  # Field gating on the shared field embeddings [B, F, d] of every field-based model
  # (models/builders.build_field_gate): none | senet (FiBiNET's SENET layer, layers/gating.py;
  # excitation hidden width F // senet_reduction; senet_excitation relu (paper) | sigmoid).
  c.model.field_gate = 'none'
  c.model.senet_reduction = 3.0      # SENet reduction ratio r (hidden width F // r)
  c.model.senet_excitation = 'relu'  # relu (FiBiNET) | sigmoid (gates in (0, 1))
  # LHUC / PPNet (layers/gating.py, models/builders.build_lhuc): gates 2 * sigmoid(.) in (0, 2)
  # from stop-gradient personalisation embeddings multiply hidden layers of the main MLP
  # (multi-task models: of each task tower). lhuc: none | all | last | indices '0,1';
  # lhuc_inputs: 'user' (needs use_user_embedding) and/or sparse field names; lhuc_hidden:
  # width of the gate network's hidden layer.
  c.model.lhuc = 'none'
  c.model.lhuc_inputs = ('user',)    # 'user' and/or sparse field names (stop-gradient)
  c.model.lhuc_hidden = 64           # width of the LHUC gate network's hidden layer
  # prerank (models/prerank.py): three-tower pre-ranker; user and item tower MLPs (the last
  # size is the vector width), cross tower MLP, per-task head MLP.
  c.model.prerank_tower = (64, 32)
  c.model.prerank_cross = (16,)      # prerank cross tower MLP (per candidate)
  c.model.prerank_head = (16,)       # prerank per-task head MLP
  c.model.attention = ml_collections.ConfigDict()
  c.model.attention.name = 'din'
  c.model.attention.inputs = ('q', 'k', 'q-k', 'q*k')
  c.model.attention.hidden = (80, 40)
  c.model.attention.activation = 'same'   # 'same' = model.activation
  c.model.attention.normalizer = 'none'   # none (paper) | softmax | sigmoid
  # Attention units (layers/attention.py, built by models/builders.py): name = din (MLP scorer
  # over `inputs`) | dot | scaled_dot | bilinear | multihead | cosine | sum | mean | max. Units
  # ignore unused keys.
  c.model.attention.num_heads = 2         # multihead: heads (must divide 2 * embed_dim)
  c.model.attention.use_position = False  # add recency features (0 = newest real behaviour)
  c.model.attention.max_position = 64     # recency buckets; older behaviours share the last
  # Feature crossing (models dnn/dcn/dcnv2, and config.model.backbone of any Head-based model).
  # dnn/dcn/dcnv2 pool the history with model.pooling, or with model.attention if 'attention'.
  c.model.backbone = 'mlp'           # mlp (Head's MLP) | dcn | dcnv2 (cross net + deep net)
  c.model.structure = 'stacked'      # stacked (x0 -> cross -> deep) | parallel (concat)
  c.model.cross_layers = 3
  c.model.cross_type = 'full'        # DCN-V2: full | lowrank (W = U V^T) | mix (DCN-Mix)
  c.model.cross_rank = 0.25          # >= 1: rank r; in (0, 1): fraction of the input width d
  c.model.cross_experts = 4          # DCN-Mix experts
  c.model.cross_nonlinearity = 'tanh'  # DCN-Mix g(.) inside the low-rank projection
  # Multi-task models (models/multitask.py): single_task | shared_bottom | omoe | mmoe | ple.
  c.model.input = 'embed'            # embed (no history) | pool (model.pooling) | din (attention)
  c.model.experts = 4                # omoe/mmoe: number of experts
  c.model.expert_hidden = (64,)      # every expert's MLP (the last size is the expert output)
  c.model.bottom_hidden = ()         # single_task/shared_bottom bottom MLP; () = expert_hidden
  c.model.tower_hidden = (32,)       # per-task tower MLP before its logit
  c.model.ple_levels = 2             # ple: extraction levels (1 = CGC)
  c.model.shared_experts = 2         # ple: shared experts per level
  c.model.specific_experts = 2       # ple: experts per task per level
  c.model.expert_dropout = 0.0       # train: drop whole experts in every gate, renormalise
  c.model.gate_bias = True           # gates softmax(W x + b); False = MMoE paper eq. 8 (no b)

  c.optim = ml_collections.ConfigDict()
  c.optim.name = 'adam'
  c.optim.learning_rate = 1e-3
  c.optim.schedule = 'constant'
  c.optim.warmup_steps = 0
  c.optim.clip_norm = 0.0
  c.optim.weight_decay = 0.0         # adamw: decoupled; adam/adagrad/sgd: L2 on all params
  c.optim.decay_rate = 0.1           # schedule=exponential: lr * rate ** (step / decay_steps)
  c.optim.decay_steps = 0            # 0 = the whole run (the rate is reached at the end)
  c.optim.staircase = False          # exponential: step-wise drops instead of smooth decay
  c.optim.momentum = 0.0

  c.train = ml_collections.ConfigDict()
  c.train.num_epochs = 3.0
  c.train.num_steps = -1             # > 0 overrides num_epochs
  c.train.eval_every = 500
  c.train.log_every = 50
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 2
  c.train.patience = -1              # stop after this many evals without improvement
  c.train.select_metric = 'auc'      # on the valid split; auc | gauc | logloss
  c.train.select_task = ''           # multi-task: which task selects ('' = the first)
  c.train.progress = True
  # Per-task loss weights in the order of the dataset's (selected) tasks; () = each task's own
  # weight (1.0). Vectorisable: may vary per run in a group (train.vary).
  c.train.loss_weights = ()
  # Many runs as one program (seqrec_jax/multirun.py, docs/multirun.md): the group is
  # run_seeds (() = seed, seed+1, ..., seed+runs-1) crossed with every point of `vary`, a JSON
  # object {dotted config key: [values]} of vectorisable scalars (multirun.VARY_KEYS), e.g.
  # --config.train.vary='{"optim.learning_rate": [1e-4, 1e-3]}' (a string, so the flag works;
  # several keys are crossed). runs=1, () and '' = one run, exactly as without these keys.
  c.train.runs = 1
  c.train.run_seeds = ()
  c.train.vary = ''
  # True: the best-valid state's test predictions go to <workdir>/predictions_test.npz
  # (evaluate.save_predictions; studies bootstrap GAUC differences over test users from them).
  c.train.save_predictions = False
  # Warm start (docs/incremental.md): '' = random init; else a workdir (its best/ checkpoint,
  # else the newest in checkpoints/) or one checkpoint directory, whose params and Dice /
  # BatchNorm statistics replace the fresh ones at step 0 (step and optimiser state start
  # fresh). A group takes one run's checkpoint in every run, or a group's of as many runs run by
  # run. A resumed run continues from its own checkpoint and does not read init_from again.
  c.train.init_from = ''
  # all | embeddings: only the nn.Embed tables are updated (params and Dice/BatchNorm moving
  # statistics of everything else stay as initialised or loaded; no optimiser state for them).
  c.train.trainable = 'all'

  # Mesh over all (global) devices: data x model must equal jax.device_count(). Batch sizes
  # above are global; per device = batch_size / data. See seqrec_jax/parallel.py.
  c.parallel = ml_collections.ConfigDict()
  c.parallel.data = -1               # data-parallel size; -1 = device_count / model
  c.parallel.model = 1               # > 1: embedding tables sharded by rows over this axis
  c.parallel.strategy = 'jit'        # jit (sharded jit) | pmap (data parallel, same numerics)
  c.parallel.runs = 1                # > 1: shard a multi-run group's run axis over this axis
  c.lock()   # no new keys: a misspelt key (c.train.num_stepz = 2) is an error, not a no-op
  return c
