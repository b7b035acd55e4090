"""Fault and fuzz harness (issue 14): random malformations of a MovieLens-format file, random
bad serving requests, every config fault class, random checkpoint corruption and non-finite
steps on the tiny test config (torn metrics lines: tests/test_metric_writers.py).

Each case asserts one of two outcomes: a clear error naming the field/key, the value and the
source (file and line, request field and position, config key), or a correct result (the
same rows as the clean input without the bad lines; the saved checkpoint values; scores equal
to the plain model). Never a checkpoint past a non-finite step, never a lost summary.
"""
import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqrec_jax import train
from seqrec_jax.data import DataError, movielens

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, 'tests', 'fixtures', 'movielens', 'ml-latest-small')
SEEDS = range(12)

# ---------------------------------------------------------------- MovieLens-format files

# Each turns one data line (userId,movieId,rating,timestamp) into a malformed one.
MALFORM = {
    'drop_field': lambda f, r: _drop(f, int(r.integers(len(f)))),
    'extra_field': lambda f, r: f + ['7'],
    'not_a_number': lambda f, r: _set(f, r.integers(4), 'x1'),
    'empty_field': lambda f, r: _set(f, r.integers(4), ''),
    'huge_id': lambda f, r: _set(f, r.integers(2), str(10**19 + int(r.integers(10**6)))),
    'negative_id': lambda f, r: _set(f, r.integers(2), '-3'),
    'zero_id': lambda f, r: _set(f, r.integers(2), '0'),
    'rating_range': lambda f, r: _set(f, 2, str(r.choice(['0', '5.5', '-1', '1e9']))),
    'rating_nan': lambda f, r: _set(f, 2, str(r.choice(['nan', 'inf', '-inf']))),
    'float_id': lambda f, r: _set(f, r.integers(2), '3.5'),
    'negative_time': lambda f, r: _set(f, 3, '-1'),
    'torn_line': lambda f, r: ','.join(f)[:r.integers(1, 6)].split(','),
    'whitespace': lambda f, r: [' '],
}


def _drop(fields, i):
  return fields[:i] + fields[i + 1:]


def _set(fields, i, value):
  fields = list(fields)
  fields[int(i)] = value
  return fields


def _collect(prepared):
  out = {}
  for name, gen in prepared.splits.items():
    chunks = list(gen())
    out[name] = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  return out


def _cfg(path, **kw):
  return dict(movielens.DEFAULTS, path=str(path), max_len=3, min_history=0, **kw)


def _write(dirpath, lines, raw_tail=b''):
  shutil.copytree(FIX, dirpath)
  with open(os.path.join(dirpath, 'ratings.csv'), 'wb') as f:
    f.write(('\n'.join(lines) + '\n').encode() + raw_tail)


@pytest.mark.parametrize('seed', SEEDS)
def test_malformed_movielens_rows_are_named_or_skipped_exactly(tmp_path, seed):
  r = np.random.default_rng(seed)
  with open(os.path.join(FIX, 'ratings.csv')) as f:
    lines = f.read().splitlines()
  n_bad = int(r.integers(1, 4))
  bad_at = sorted(r.choice(np.arange(1, len(lines)), n_bad, replace=False).tolist())  # 0: header
  kinds = r.choice(sorted(MALFORM), n_bad)
  mutated = list(lines)
  for i, kind in zip(bad_at, kinds):
    fields = MALFORM[kind](lines[i].split(','), r)
    mutated[i] = ','.join(fields)
    if mutated[i] == lines[i] or mutated[i] == '':   # a no-op / blank line: make it bad
      mutated[i] = lines[i] + ',x'
  if r.random() < 0.3:                               # also a line of bytes that are not UTF-8
    mutated.insert(bad_at[0], '\udcff1,2,3.0,4')
    bad_at = sorted([bad_at[0]] + [i + 1 for i in bad_at])
  bad_dir = tmp_path / 'bad'
  shutil.copytree(FIX, bad_dir)
  (bad_dir / 'ratings.csv').write_bytes(
      ('\n'.join(mutated) + '\n').encode('utf-8', 'surrogateescape'))
  # Strict: a bad line is named with the file.
  with pytest.raises(DataError) as err:
    movielens.prepare(_cfg(bad_dir))
  msg = str(err.value)
  assert any(f'{bad_dir / "ratings.csv"}, line {i + 1}:' in msg for i in bad_at), (kinds, msg)
  assert 'skip_bad_rows=True' in msg
  # skip_bad_rows: exactly the bad lines are counted, and the rows equal those of the clean
  # file without them.
  got = movielens.prepare(_cfg(bad_dir, skip_bad_rows=True))
  assert got.info['bad_rows_skipped'] == len(bad_at), got.info['bad_row_examples']
  clean_dir = tmp_path / 'clean'
  shutil.copytree(FIX, clean_dir)
  keep = [l for i, l in enumerate(mutated) if i not in bad_at]
  (clean_dir / 'ratings.csv').write_text('\n'.join(keep) + '\n')
  want = _collect(movielens.prepare(_cfg(clean_dir)))
  have = _collect(got)
  for split in want:
    for k in want[split]:
      np.testing.assert_array_equal(have[split][k], want[split][k], err_msg=f'{split}/{k}')


def test_benign_variations_give_the_same_rows(tmp_path):
  """CRLF line ends, blank lines and a missing final newline are not malformations."""
  with open(os.path.join(FIX, 'ratings.csv')) as f:
    lines = f.read().splitlines()
  want = _collect(movielens.prepare(_cfg(FIX)))
  d = tmp_path / 'crlf'
  shutil.copytree(FIX, d)
  (d / 'ratings.csv').write_bytes(('\r\n'.join(lines[:10] + [''] + lines[10:])).encode())
  have = _collect(movielens.prepare(_cfg(d)))
  for split in want:
    for k in want[split]:
      np.testing.assert_array_equal(have[split][k], want[split][k])


def test_bad_header_is_an_error_even_when_skipping(tmp_path):
  d = tmp_path / 'hdr'
  shutil.copytree(FIX, d)
  text = (d / 'ratings.csv').read_text().replace('userId,movieId', 'user,movie', 1)
  (d / 'ratings.csv').write_text(text)
  with pytest.raises(DataError, match=r'ratings.csv, line 1: header'):
    movielens.prepare(_cfg(d, skip_bad_rows=True))


# ---------------------------------------------------------------- serving requests

USERS, ITEMS, CATES, LEN, N = 30, 40, 6, 7, 5


@pytest.fixture(scope='module')
def served():
  from seqrec_jax import models  # pylint: disable=g-import-not-at-top
  from seqrec_jax.configs import default  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data.features import DataSpec  # pylint: disable=g-import-not-at-top
  from seqrec_jax.serving import CandidateScorer, make_request_batch  # pylint: disable=g-import-not-at-top
  spec = DataSpec(num_users=USERS, num_items=ITEMS, num_cates=CATES, max_len=LEN)
  c = default.get_config()
  c.model.embed_dim, c.model.hidden, c.model.attention.hidden = 4, (8, 4), (6, 3)
  model = models.build_model(c.model, spec)
  v = model.init(jax.random.key(0), make_request_batch(_request(np.random.default_rng(0)), True),
                 train=False)
  plain = jax.jit(lambda b: jax.nn.sigmoid(model.apply(v, b, train=False)))
  return CandidateScorer(model, v), plain


def _request(r, length=LEN):
  return {'hist_items': r.integers(0, ITEMS, length), 'hist_cates': r.integers(0, CATES, length),
          'hist_mask': r.random(length) < 0.7, 'target_item': r.integers(0, ITEMS, N),
          'target_cate': r.integers(0, CATES, N), 'user_id': int(r.integers(0, USERS))}


VOCAB = {'hist_items': ITEMS, 'hist_cates': CATES, 'target_item': ITEMS, 'target_cate': CATES,
         'user_id': USERS}


def _break(req, r):
  """One random fault in one random field -> (request, field)."""
  field = str(r.choice(sorted(req)))
  x = np.asarray(req[field])
  kind = r.choice(['too_big', 'negative', 'float', 'shape', 'long', 'string'])
  if field == 'hist_mask':
    kind = r.choice(['nan', 'two', 'shape', 'string'])
  if kind == 'too_big':
    bad = VOCAB[field] + int(r.choice([0, 1, 10**6, 2**31, 2**40]))
    x = np.array(bad) if x.ndim == 0 else _set(x.tolist(), r.integers(x.size), bad)
  elif kind == 'negative':
    neg = -int(r.integers(1, 9))
    x = np.array(neg) if x.ndim == 0 else _set(x.tolist(), r.integers(x.size), neg)
  elif kind == 'float':
    x = x.astype(np.float32) + 0.5
  elif kind == 'shape':
    x = np.stack([x, x, x]) if x.ndim else np.array([1, 2])
  elif kind == 'long':
    x = np.concatenate([np.atleast_1d(x)] * 3)
  elif kind == 'string':
    x = np.asarray(x).astype(str)
  elif kind == 'nan':
    x = _set(x.astype(np.float32).tolist(), r.integers(x.size), float('nan'))
  elif kind == 'two':
    x = _set(x.astype(np.int64).tolist(), r.integers(x.size), 2)
  return dict(req, **{field: np.asarray(x)}), field


@pytest.mark.parametrize('seed', range(40))
def test_random_bad_requests_are_errors_naming_the_field(served, seed):
  from seqrec_jax.serving import RequestError  # pylint: disable=g-import-not-at-top
  scorer, _ = served
  r = np.random.default_rng(seed)
  req, field = _break(_request(r), r)
  with pytest.raises(RequestError, match=f"'{field}'"):
    scorer(req)


@pytest.mark.parametrize('seed', range(3))
def test_random_valid_requests_score_like_the_plain_model(served, seed):
  from seqrec_jax.serving import make_request_batch  # pylint: disable=g-import-not-at-top
  scorer, plain = served
  r = np.random.default_rng(100 + seed)
  req = _request(r, LEN if seed < 2 else 3)     # two shapes: few compilations
  got = np.asarray(scorer(req))
  want = np.asarray(plain(make_request_batch(req, tile_history=True)))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- config faults

CONFIG_FAULTS = [  # (key, value, words the error must contain)
    ('train.select_metric', 'aucc', "must be one of ['auc', 'gauc', 'logloss', 'mae', 'mse']"),
    ('train.eval_every', 0, 'integer >= 1'),
    ('train.log_every', -5, 'integer >= 1'),
    ('train.checkpoint_every', 0, 'integer >= 1'),
    ('train.keep_checkpoints', 0, 'nothing to resume from'),
    ('data.batch_size', 0, 'integer >= 1'),
    ('data.batch_size', -32, 'integer >= 1'),
    ('data.eval_batch_size', 0, 'integer >= 1'),
    ('data.name', 'movielenz', "unknown dataset 'movielenz'"),
    ('data.in_memory', 'sometimes', 'must be one of'),
    ('data.pack_buckets', 0, 'integer >= 1'),
    ('data.pack_max_fill', 1.5, 'in [0, 1]'),
    ('model.name', 'dinn', "unknown model 'dinn'"),
    ('model.activation', 'gelu', 'must be one of'),
    ('model.attention.name', 'dott', "unknown attention unit 'dott'"),
    ('model.embed_dim', 0, 'integer >= 1'),
    ('model.dropout', 1.0, 'in [0, 1)'),
    ('optim.name', 'adamm', 'must be one of'),
    ('optim.schedule', 'cosin', 'must be one of'),
    ('optim.learning_rate', 0.0, 'finite number > 0'),
    ('optim.learning_rate', float('inf'), 'finite number > 0'),
    ('optim.warmup_steps', -1, 'integer >= 0'),
    ('optim.clip_norm', -1.0, 'finite number >= 0'),
    ('train.num_epochs', 0.0, 'train.num_steps <= 0 uses it'),
    ('parallel.strategy', 'tpu', 'must be one of'),
    ('parallel.model', 0, 'integer >= 1'),
    ('parallel.data', 0, 'must be -1'),
]


@pytest.mark.parametrize('key,value,words', CONFIG_FAULTS,
                         ids=[f'{k}={v}' for k, v, _ in CONFIG_FAULTS])
def test_each_config_fault_is_refused_before_any_work(tiny_config, tmp_path, key, value, words):
  from seqrec_jax.configs import set_path  # pylint: disable=g-import-not-at-top
  from seqrec_jax.configs.validate import ConfigError  # pylint: disable=g-import-not-at-top
  if key == 'train.num_epochs':
    tiny_config.train.num_steps = -1
  set_path(tiny_config, key, value)
  wd = tmp_path / 'wd'
  with pytest.raises(ConfigError) as err:
    train.train_and_evaluate(tiny_config, str(wd))
  assert f'config.{key}={value!r}' in str(err.value) and words in str(err.value)
  assert not wd.exists()


# ---------------------------------------------------------------- checkpoints

def _corrupt(path, r):
  files = sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
  target = files[int(r.integers(len(files)))]
  data = open(target, 'rb').read()
  kind = r.choice(['truncate', 'flip', 'garbage', 'delete', 'empty'])
  if kind == 'delete':
    os.remove(target)
    return
  if kind == 'truncate':
    data = data[:int(r.integers(len(data)))]
  elif kind == 'flip' and data:
    b = bytearray(data)
    i = int(r.integers(len(b)))
    b[i] ^= 1 << int(r.integers(8))
    data = bytes(b)
  elif kind == 'garbage':
    data = r.bytes(max(len(data), 8))
  else:
    data = b''
  with open(target, 'wb') as f:
    f.write(data)


@pytest.mark.parametrize('seed', range(8))
def test_random_checkpoint_corruption_never_restores_wrong_values(tmp_path, seed):
  from seqrec_jax.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  r = np.random.default_rng(seed)
  fp = {'model': 'm', 'dataset': 'd', 'params': {}}
  state = {'w': jnp.arange(256, dtype=jnp.float32), 'b': jnp.zeros((3, 4))}
  ck = Checkpointer(str(tmp_path), 3, fp)
  for s in (1, 2, 3):
    ck.save(s, jax.tree.map(lambda x, s=s: x + s, state), {'best': None, 'at': s})
  ck.wait()
  ck.close()
  for s in r.choice([2, 3], int(r.integers(1, 3)), replace=False):
    _corrupt(tmp_path / 'checkpoints' / str(s), r)
  ck = Checkpointer(str(tmp_path), 3, fp)
  restored, meta = ck.restore_latest(jax.eval_shape(lambda: state))
  ck.close()
  s = meta['at']
  np.testing.assert_array_equal(np.asarray(restored['w']), np.arange(256) + s)
  np.testing.assert_array_equal(np.asarray(restored['b']), np.zeros((3, 4)) + s)


# ---------------------------------------------------------------- runs: non-finite steps
# (A torn last line of metrics.jsonl: tests/test_metric_writers.py.)

_TRAIN_BATCHES = train.train_batches


@pytest.mark.parametrize('seed', [0])     # one run (CI time); other seeds pass too
def test_no_checkpoint_past_a_random_non_finite_step(tiny_config, tmp_path, monkeypatch, seed):
  from seqrec_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data.features import DataSpec  # pylint: disable=g-import-not-at-top
  ds = synthetic.load(tiny_config.data.synthetic)   # a Dataset value: nothing registered
  ds.name, ds.spec = '_faults_dense', DataSpec(**{**ds.spec.__dict__, 'dense_dim': 1})
  for split in ds.splits.values():
    split.arrays['dense'] = np.zeros((len(split), 1), np.float32)

  r = np.random.default_rng(seed)
  bad_step = int(r.integers(2, 12))
  c = tiny_config
  c.data.name, c.data.pack_history = '_faults_dense', False
  c.train.num_steps = 12
  c.train.eval_every, c.train.log_every, c.train.checkpoint_every = (
      int(r.integers(3, 13)), int(r.integers(1, 13)), int(r.integers(1, 6)))
  c.train.keep_checkpoints = 20

  def batches(split, gb, seed_, start, *a, **kw):
    for step, b in enumerate(_TRAIN_BATCHES(split, gb, seed_, start, *a, **kw), start + 1):
      yield dict(b, dense=np.full_like(b['dense'], 3e38)) if step >= bad_step else b
  monkeypatch.setattr(train, 'train_batches', batches)
  with pytest.raises(FloatingPointError, match=f'at step {bad_step};') as err:
    train.train_and_evaluate(c, str(tmp_path), ds)
  saved = [int(d) for sub in ('checkpoints', 'best') if (tmp_path / sub).exists()
           for d in os.listdir(tmp_path / sub) if d.isdigit()]
  assert all(s < bad_step for s in saved), (saved, bad_step, str(err.value))
  last = max((int(d) for d in os.listdir(tmp_path / 'checkpoints') if d.isdigit()), default=None)
  assert (f'last good checkpoint is step {last} ' in str(err.value) if last is not None
          else 'no checkpoint was written yet' in str(err.value))


# ---------------------------------------------------------------- sweep records (issue 28)
# Each fault turns one finished cell's record (text, parsed record, rng, outdir, victim: a
# directory outside the outdir) into one the sweep must not trust, or a stale one naming a
# workdir elsewhere. Either way: the cell reruns in its own workdir, the bad record is kept
# (cells/corrupt/ or .stale), and nothing outside the outdir is deleted.

def _garble(text, r):
  i, bad = int(r.integers(len(text))), ['{', '"', ',', '\x00', ']', 'NaN']
  return text[:i] + bad[int(r.integers(len(bad)))] + text[i:]


def _as_json(fn):
  def fault(text, rec, r, victim):
    fn(rec, r, victim)
    return json.dumps(rec)
  return fault


def _stale_elsewhere(rec, r, victim):
  """A record from before checksums, hand-edited to name a directory outside, and stale."""
  rec.pop('checksum', None)
  rec['workdir'] = str(victim / str(r.choice([rec['id'], 'important'])))
  rec['config']['optim']['learning_rate'] = 0.5


RECORD_FAULTS = {
    'truncate': lambda text, rec, r, victim: text[:int(r.integers(len(text)))],
    'invalid_json': lambda text, rec, r, victim: _garble(text, r),
    'not_an_object': lambda text, rec, r, victim: json.dumps([rec]),
    'drop_summary': _as_json(lambda rec, r, v: rec.pop('summary')),
    'drop_key': _as_json(lambda rec, r, v: rec.pop(str(r.choice(['id', 'config', 'seed'])))),
    'edit_metric': _as_json(lambda rec, r, v: rec['summary'].update(
        {'eval/test/auc': rec['summary']['eval/test/auc'] + float(r.uniform(1e-6, 0.1))})),
    'workdir_outside': _as_json(lambda rec, r, v: rec.update(workdir=str(v / rec['id']))),
    'stale_workdir_outside': _as_json(_stale_elsewhere),
}


def _tree(root):
  return sorted((os.path.relpath(os.path.join(d, f), root), open(os.path.join(d, f)).read())
                for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize('seed', range(12))
def test_random_sweep_record_corruption_reruns_the_cell_and_deletes_nothing_outside(
    tmp_path, seed):
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  r = np.random.default_rng(seed)
  out, victim, calls = tmp_path / 'out', tmp_path / 'victim', []

  def train_fn(cfg, workdir):
    calls.append(workdir)
    with open(os.path.join(workdir, 'checkpoint'), 'w') as f:
      f.write(f'seed {cfg.seed}')
    return {'seed': cfg.seed, 'eval/test/auc': 0.5 + 0.01 * cfg.seed}

  cells = [sweep.Cell({'model': 'din'}, {'optim.learning_rate': 1e-3}, s) for s in range(3)]
  run = lambda: sweep.run_sweep('seqrec_jax/configs/test.py', cells, str(out), train_fn,
                                log=lambda _: None)
  run()
  for c in cells:                      # victims named like the cells' workdirs, and not
    for name in (c.id, 'important'):
      os.makedirs(victim / name, exist_ok=True)
      (victim / name / 'checkpoint').write_text('not the sweep\'s')
  outside = _tree(tmp_path / 'victim')
  hit = sorted(r.choice(len(cells), int(r.integers(1, 3)), replace=False).tolist())
  for j, i in enumerate(hit):          # every fault by seed 7, then pairs of them
    path = out / 'cells' / f'{cells[i].id}.json'
    fault = sorted(RECORD_FAULTS)[(seed + j) % len(RECORD_FAULTS)]
    text = path.read_text()
    path.write_text(RECORD_FAULTS[fault](text, json.loads(text), r, victim))
  calls.clear()
  recs = run()
  assert calls == [str(out / 'work' / cells[i].id) for i in hit]
  assert [rec['summary']['eval/test/auc'] for rec in recs] == [0.5, 0.51, 0.52]
  assert all(rec['workdir'] == str(out / 'work' / rec['id']) for rec in recs)
  kept = os.listdir(out / 'cells' / 'corrupt') if (out / 'cells' / 'corrupt').exists() else []
  kept += [f for f in os.listdir(out / 'cells') if f.endswith('.stale')]
  assert len(kept) == len(hit)
  assert _tree(tmp_path / 'victim') == outside
  calls.clear()
  run()
  assert calls == []


# ---------------------------------------------------------------- serving inputs (issue 28.6)
# A request missing a field the model reads, or with float64 dense values outside float32's
# range (the model's dtype): a RequestError naming the field, never a KeyError or NaN scores.

SIDE_DENSE = 3


@pytest.fixture(scope='module')
def served_side():
  from seqrec_jax import models  # pylint: disable=g-import-not-at-top
  from seqrec_jax.configs import default  # pylint: disable=g-import-not-at-top
  from seqrec_jax.data.features import DataSpec, FeatureSpec  # pylint: disable=g-import-not-at-top
  from seqrec_jax.serving import CandidateScorer, make_request_batch  # pylint: disable=g-import-not-at-top
  spec = DataSpec(num_users=USERS, num_items=ITEMS, num_cates=CATES, max_len=LEN,
                  sparse=(FeatureSpec('city', 4, side='user'), FeatureSpec('slot', 6)),
                  dense_dim=SIDE_DENSE)
  c = default.get_config()
  c.model.embed_dim, c.model.hidden, c.model.attention.hidden = 4, (8, 4), (6, 3)
  c.model.use_user_embedding = True
  model = models.build_model(c.model, spec)
  v = model.init(jax.random.key(0),
                 make_request_batch(_side_request(np.random.default_rng(0)), True), train=False)
  return CandidateScorer(model, v)


def _side_request(r):
  req = _request(r)
  req.update(sparse=np.stack([np.full(N, r.integers(0, 4)), r.integers(0, 6, N)], 1),
             dense=r.normal(size=(N, SIDE_DENSE)) * 10.0 ** r.integers(-3, 6))   # float64
  return req


def _break_input(req, r):
  """Drops one random field, or puts a float64 value beyond float32 in dense -> (req, field)."""
  if r.random() < 0.5:
    field = str(r.choice(sorted(req)))
    return {k: x for k, x in req.items() if k != field}, field
  dense = np.array(req['dense'], np.float64)
  bad = float(r.choice([-1, 1])) * 10.0 ** r.uniform(38.6, 308)
  dense.flat[r.integers(dense.size)] = bad
  return dict(req, dense=dense), 'dense'


@pytest.mark.parametrize('seed', range(24))
def test_random_missing_or_overflowing_inputs_are_request_errors(served_side, seed):
  from seqrec_jax.serving import RequestError  # pylint: disable=g-import-not-at-top
  r = np.random.default_rng(500 + seed)
  req = _side_request(r)
  assert np.isfinite(np.asarray(served_side(req))).all()     # the clean request scores
  bad, field = _break_input(req, r)
  with pytest.raises(RequestError, match=f"'{field}'"):
    served_side(bad)


# ---------------------------------------------------------------- warm-start sources (issue 28)

def _flip_bytes(root, r, n):
  """Flips one random bit in each of n random bytes of root's files, a byte chosen uniformly
  over all their bytes (so mostly the array data, as on a real disk)."""
  files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
  sizes = np.array([os.path.getsize(f) for f in files], float)
  for _ in range(n):
    target = files[int(r.choice(len(files), p=sizes / sizes.sum()))]
    b = bytearray(open(target, 'rb').read())
    if b:
      b[int(r.integers(len(b)))] ^= 1 << int(r.integers(8))
      with open(target, 'wb') as f:
        f.write(bytes(b))


@pytest.mark.parametrize('seed', range(8))
def test_corrupt_init_from_source_is_an_error_never_a_silent_load(tmp_path, seed):
  from seqrec_jax.checkpoint import (Checkpointer, CheckpointCorruptError,  # pylint: disable=g-import-not-at-top
                                     read_source)
  r = np.random.default_rng(seed)
  state = {'params': {'embed': r.normal(size=(3000, 16)).astype(np.float32),
                      'dense': r.normal(size=(16,)).astype(np.float32)},
           'step': np.int32(9)}
  src = tmp_path / 'src'
  ck = Checkpointer(str(src), 2, {'model': 'm', 'dataset': 'd', 'params': {}})
  ck.save(9, state, {'best': 0.75, 'best_step': 9}, best=True)
  ck.wait()
  ck.close()
  _flip_bytes(src / 'best' / '9', r, int(r.integers(1, 4)))
  try:
    got, meta, _ = read_source(str(src))
  except CheckpointCorruptError as e:
    assert f"config.train.init_from='{src}'" in str(e) and f'{src}/best/9' in str(e), str(e)
    return
  # Loaded: only when the flips hit no byte that holds a value (orbax bookkeeping files).
  for k, v in state['params'].items():
    np.testing.assert_array_equal(got['params'][k], v, err_msg=k)
  assert (meta['best'], meta['best_step']) == (0.75, 9)


# ---------------------------------------------------------------- multi-run keys (issue 28)

MULTIRUN_FAULTS = [  # (key, value, words the error must contain), each refused before any work
    ('train.runs', 0, 'integer >= 1'),
    ('train.runs', -2, 'integer >= 1'),
    ('train.run_seeds', (1.5, 2), 'list of integer seeds'),
    ('train.loss_weights', ('a',), 'finite numbers >= 0'),
    ('train.loss_weights', (float('nan'),), 'finite numbers >= 0'),
    ('train.loss_weights', (-1.0,), 'finite numbers >= 0'),
    ('train.vary', '{"optim.learning_rate": [NaN]}', 'finite number > 0'),
    ('train.vary', '{"optim.learning_rate": [0]}', 'finite number > 0'),
    ('train.vary', '{"optim.weight_decay": ["x"]}', 'finite number >= 0'),
    ('train.vary', '{"model.mba_lambda": [-1]}', 'finite number >= 0'),
    ('train.vary', '{"train.loss_weights": [["w"]]}', 'finite numbers >= 0'),
    ('train.vary', '{"optim.learning_rate": []}', 'non-empty list'),
    ('train.vary', '{"model.embed_dim": [4, 8]}', 'changes shapes'),
    ('train.vary', '[1, 2]', 'JSON object'),
    ('train.vary', '{"optim.learning_rate": [1e-3', 'not a JSON object'),
]


@pytest.mark.parametrize('key,value,words', MULTIRUN_FAULTS,
                         ids=[f'{k}={v}' for k, v, _ in MULTIRUN_FAULTS])
def test_each_multirun_fault_is_refused_before_any_work(tiny_config, tmp_path, key, value,
                                                        words):
  from seqrec_jax.configs import set_path  # pylint: disable=g-import-not-at-top
  from seqrec_jax.configs.validate import ConfigError  # pylint: disable=g-import-not-at-top
  set_path(tiny_config, key, value)
  wd = tmp_path / 'wd'
  with pytest.raises(ConfigError) as err:
    train.train_and_evaluate(tiny_config, str(wd))
  assert f'config.{key}' in str(err.value) and words in str(err.value), str(err.value)
  assert not wd.exists()


# ---------------------------------------------------------------- data files (issue 28.9)
# Random corruptions of raw files: each is a DataError naming the file (and zip member),
# never a raw zlib / EOF / BadZipFile / Overflow / Recursion / OS error. Row faults are
# counted with skip_bad_rows=True; file faults stay errors.
AMZ = os.path.join(ROOT, 'tests', 'fixtures', 'amazon')
BAD_TIMES = ['1e999', '-1e999', '1' + '0' * 30, '-1', '1.5', 'NaN', 'Infinity', 'true', '"5"']


def _amazon_cfg(path, **kw):
  from seqrec_jax.data import amazon  # pylint: disable=g-import-not-at-top
  return dict(amazon.DEFAULTS, path=str(path), category='Toys', max_len=4, **kw)


def _flip(data: bytes, r, lo: int = 0) -> bytes:
  b = bytearray(data)
  for i in r.integers(max(lo, len(b) // 4), len(b) - 8, 8):
    b[i] ^= 0xA5
  return bytes(b)


def _row_fault(d, r):
  """A malformed review line (a bad time or deep nesting) in the JSON fixture."""
  lines = (d / 'reviews_Toys_5.json').read_text().splitlines()
  i = int(r.integers(len(lines)))
  if r.random() < 0.5:
    lines[i] = re.sub(r'"unixReviewTime": \d+', f'"unixReviewTime": {r.choice(BAD_TIMES)}',
                      lines[i])
  else:
    depth = int(r.integers(2000, 200000))
    lines[i] = lines[i][:-1] + ', "x": ' + '[' * depth + ']' * depth + '}'
  (d / 'reviews_Toys_5.json').write_text('\n'.join(lines) + '\n')
  return str(d / 'reviews_Toys_5.json'), i + 1


def _amazon_file_fault(d, r, tmp_path):
  name = str(r.choice(['reviews_Toys_5.json.gz', 'meta_Toys.json.gz']))
  kind = str(r.choice(['truncate', 'flip', 'dangling', 'loop']))
  data = (d / name).read_bytes()
  (d / name).unlink()
  if kind == 'truncate':
    (d / name).write_bytes(data[:int(r.integers(1, len(data) - 8))])
  elif kind == 'flip':
    (d / name).write_bytes(_flip(data, r, 10))
  elif kind == 'dangling':
    os.symlink(tmp_path / 'gone', d / name)
  else:
    os.symlink(d / name, d / name)
  return str(d / name), kind


def _movielens_file_fault(tmp_path, r):
  import zipfile  # pylint: disable=g-import-not-at-top
  kind = str(r.choice(['zip_flip', 'zip_truncate', 'dangling', 'loop']))
  if kind.startswith('zip'):
    z = tmp_path / 'ml.zip'
    with zipfile.ZipFile(z, 'w', zipfile.ZIP_DEFLATED) as zf:
      for name in ('ratings.csv', 'movies.csv'):
        zf.write(os.path.join(FIX, name), f'ml/{name}')
    data = z.read_bytes()
    if kind == 'zip_flip':     # inside the ratings member's compressed bytes
      start = data.find(b'ml/ratings.csv') + 30
      data = data[:start] + _flip(data[start:start + 200], r) + data[start + 200:]
    else:
      data = data[:int(r.integers(10, len(data) - 10))]
    z.write_bytes(data)
    return z, str(z), kind
  d = tmp_path / 'ml'
  shutil.copytree(FIX, d)
  name = str(r.choice(['ratings.csv', 'movies.csv']))
  (d / name).unlink()
  os.symlink(tmp_path / 'gone' if kind == 'dangling' else d / name, d / name)
  return d, str(d / name), kind


@pytest.mark.parametrize('seed', range(16))
def test_random_data_file_faults_are_data_errors_naming_the_file(tmp_path, seed):
  from seqrec_jax.data import amazon  # pylint: disable=g-import-not-at-top
  r = np.random.default_rng(seed)
  which = ['amazon_row', 'amazon_file', 'movielens_file'][seed % 3]
  if which == 'amazon_row':
    d = tmp_path / 'amz'
    shutil.copytree(os.path.join(AMZ, 'json'), d)
    name, line = _row_fault(d, r)
    with pytest.raises(DataError, match=re.escape(f'{name}, line {line}: ')):
      amazon.prepare(_amazon_cfg(d))
    assert amazon.prepare(_amazon_cfg(d, skip_bad_rows=True)).info['bad_rows_skipped'] == 1
    return
  if which == 'amazon_file':
    d = tmp_path / 'amz'
    shutil.copytree(os.path.join(AMZ, 'literal'), d)
    name, kind = _amazon_file_fault(d, r, tmp_path)
    calls = [lambda: amazon.source_fingerprint(_amazon_cfg(d))] if 'link' in kind or kind in (
        'dangling', 'loop') else []
    calls += [lambda s=s: amazon.prepare(_amazon_cfg(d, skip_bad_rows=s)) for s in (0, 1)]
  else:
    path, name, kind = _movielens_file_fault(tmp_path, r)
    calls = [lambda: movielens.source_fingerprint(_cfg(path))]
    calls += [lambda s=s: movielens.prepare(_cfg(path, skip_bad_rows=bool(s))) for s in (0, 1)]
  for call in calls:
    try:
      call()
    except DataError as e:
      assert name in str(e), (kind, str(e))
    else:
      # Only a flip that leaves the data decodable is allowed through (rows then checked).
      assert kind in ('flip', 'zip_flip'), kind
