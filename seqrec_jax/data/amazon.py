"""Amazon reviews (e.g. Electronics 5-core + metadata) with the original DIN code's protocol
(github.com/zhougr1993/DeepInterestNetwork, utils/ and din/build_dataset.py).

* Behaviours: each user's reviews sorted by unixReviewTime (asin breaks ties, deterministic).
  For a user with n reviews at positions 0..n-1, position k >= 1 yields two examples that share
  the history "first k reviews" (newest `max_len`, right-aligned): the k-th item (label 1)
  and one negative (label 0) drawn uniformly from the item vocabulary, never an item the user
  ever reviewed (the DIN code's `gen_neg`), seeded by `neg_seed`.
* Splits (positions): test = the last review (k = n-1), as in the DIN code; valid = the
  second-to-last (k = n-2), which the DIN code trains on but we hold out so that model
  selection never sees test; train = k in 1..n-3. Users with 2 reviews only have a test pair.
* History ties: the DIN code's history is the sorted prefix, so reviews written the same day
  (timestamps have day resolution) count as history; `same_time_history=False` keeps only
  strictly earlier ones.
* Category: the last entry of the last `categories` list of the item's metadata (DIN code:
  `x[-1][-1]`), or the last of a 2018-style `category` list; no metadata -> id 0 (counted).
* Vocabularies: items (and their categories) that occur in positions 0..n-3, i.e. visible in
  training, with `min_item_count`; valid/test-only items map to 0 (OOV).
* Input: `path` is a directory with reviews_<Cat>_5.json[.gz] and meta_<Cat>.json[.gz]
  (strict JSON lines or the older python-literal lines, detected per line).
* Parsing (issue 25): reviews are read by pyarrow.json block by block (only the three needed
  columns); meta lines (and reviews pyarrow cannot read) are matched per line by a bounded
  grammar (`_LineGrammar`). What these fast paths cannot certify goes to the exact reader
  (raw.read_records), so rows, errors and skip counts are the exact reader's
  (tests/test_data_amazon.py compares both paths).
"""
from __future__ import annotations

import io
import json
import os
import re

import numpy as np

from seqrec_jax.configs.keys import Key, defaults, integer, text
from seqrec_jax.data import common, raw
from seqrec_jax.data.common import Prepared
from seqrec_jax.data.features import DataError, DataSpec, Task

KEYS = (
    Key('path', '', 'directory with reviews_<category>_5.json(.gz) + meta_<category>.json(.gz)',
        text()),
    Key('category', 'Electronics', 'DIN paper: Electronics 5-core', text()),
    Key('max_len', 50, 'L: newest behaviours kept', integer(1)),
    Key('neg_seed', 1234, 'negative sampling (the DIN code seeds random with 1234)', integer()),
    Key('same_time_history', True,
        'DIN code: sorted prefix (same-day reviews count as history)'),
    Key('min_item_count', 1, 'items seen fewer times at training-visible positions -> id 0',
        integer(0)),
    Key('skip_bad_rows', False, 'True: count and skip malformed rows instead of failing'),
)
DEFAULTS = defaults(KEYS)
HOMEPAGE = 'https://jmcauley.ucsd.edu/data/amazon/'
CITATION = ('R. He and J. McAuley. Ups and downs: Modeling the visual evolution of fashion '
            'trends with one-class collaborative filtering. WWW 2016. / J. McAuley et al. '
            'Image-based recommendations on styles and substitutes. SIGIR 2015.')


def fields(cfg) -> dict:
  return common.sequence_fields(int(cfg['max_len']))


def _find(cfg) -> tuple[str, str]:
  path, cat = cfg['path'], cfg['category']
  if not path:
    raise DataError('config.data.amazon.path is empty: point it at a directory holding '
                    f'reviews_{cat}_5.json(.gz) and meta_{cat}.json(.gz) from {HOMEPAGE} '
                    '(nothing is downloaded at run time)')
  if not os.path.isdir(path):
    raise DataError(f'config.data.amazon.path={path!r} is not a directory')
  found = []
  for names in ([f'reviews_{cat}_5.json', f'{cat}_5.json'], [f'meta_{cat}.json']):
    hits = [os.path.join(path, n + gz) for n in names for gz in ('', '.gz')
            if os.path.lexists(os.path.join(path, n + gz))]
    if not hits:
      raise DataError(f'{path}: none of {[n + "(.gz)" for n in names]} found '
                      f'(config.data.amazon.category={cat!r}); '
                      f'it holds {sorted(os.listdir(path))[:10]}')
    try:
      os.stat(hits[0])                  # a link that dangles or loops is named
    except OSError as e:
      raise raw.unreadable_error(hits[0], e) from e
    found.append(hits[0])
  return found[0], found[1]


def source_fingerprint(cfg) -> list:
  return raw.fingerprint(list(_find(cfg)))


def tag(cfg) -> str:
  return cfg['category']


def _str(rec, key):
  v = rec[key] if key in rec else None
  if not isinstance(v, str) or not v:
    raise ValueError(f'{key!r} is {v!r}, expected a non-empty string')
  return v


def _review(rec):
  t = rec.get('unixReviewTime')
  if (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < 2**63
      or t != int(t)):   # range first: int(inf) and 1e999 would raise OverflowError
    raise ValueError(f"'unixReviewTime' is {t!r}, expected a non-negative integer below 2^63")
  return _str(rec, 'reviewerID'), _str(rec, 'asin'), int(t)


def _meta(rec):
  cats = rec.get('categories')
  if cats is not None:
    if not (isinstance(cats, list) and all(isinstance(c, list) for c in cats)):
      raise ValueError(f"'categories' is {cats!r}, expected a list of lists of strings")
    last = cats[-1][-1] if cats and cats[-1] else None
  else:
    cats = rec.get('category')
    if cats is not None and not isinstance(cats, list):
      raise ValueError(f"'category' is {cats!r}, expected a list of strings")
    last = cats[-1] if cats else None
  if last is not None and not isinstance(last, str):
    raise ValueError(f'category {last!r} is not a string')
  return _str(rec, 'asin'), (last or None)


# ---------------------------------------------------------------- fast, exact parsing
# A bounded grammar of one record line, in two dialects. A line it matches is a valid JSON
# object (json.loads succeeds) or python literal (ast.literal_eval succeeds): strings with
# only escapes valid in both readers, no NUL or line break, numbers of at most 100 digits, at
# most three levels of nesting. The named fields are captured (a repeated key: the last one,
# as both readers keep); other keys are plain identifiers, and a record holding a field's
# alternative key (meta's 'category') is left to the exact reader.
_NUM = r'-?(?:0|[1-9]\d{0,99})(?:\.\d{1,100})?(?:[eE][+-]?\d{1,3})?'
_INT = r'0|[1-9]\d{0,17}'          # < 10^18 < 2^63
_PY_ESC = (r'\\(?:[\\\'"abfnrtv]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U000[0-9a-fA-F]{5}'
           r'|U0010[0-9a-fA-F]{4})')
_JSON_ESC = r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})'


def _string(quote: str, plain: str, esc: str) -> str:
  """A quoted string: runs of plain characters between escapes (unrolled: fast in `re`)."""
  return f'{quote}{plain}*+(?:{esc}{plain}*+)*+{quote}'


_DIALECTS = {
    'python': dict(str=(_string("'", r"[^'\\\n\r\x00]", _PY_ESC) + '|' +
                        _string('"', r'[^"\\\n\r\x00]', _PY_ESC)),
                   plain=r"'[^'\\\n\r\x00]*+'", lit='True|False|None', quotes='\'"'),
    'json': dict(str=_string('"', r'[^"\\\x00-\x1f]', _JSON_ESC), plain=r'"[^"\\\x00-\x1f]*+"',
                 lit='true|false|null', quotes='"'),
}


def _record_pattern(dialect: str, fields: dict[str, str], other_names: tuple[str, ...]):
  """fields: {key: 'str' | 'int' | 'list' (of strings) | 'lists' (of lists of strings)},
  captured as groups f0, f1, ...; other_names: keys that send a line to the exact reader."""
  d = _DIALECTS[dialect]
  s, plain = f'(?:{d["str"]})', d['plain']
  sc = f'(?:{s}|{_NUM}|{d["lit"]})'
  l1 = rf'\[ *(?:{sc}(?: *, *{sc})*+)? *\]'
  plain_list = rf'\[(?:{plain}(?:, {plain})*+)?\]'    # the common case, tried first (speed)
  l2 = rf'(?:{plain_list}|\[ *(?:(?:{sc}|{l1})(?: *, *(?:{sc}|{l1}))*+)? *\])'
  d1 = rf'\{{ *(?:{s} *: *(?:{sc}|{l2})(?: *, *{s} *: *(?:{sc}|{l2}))*+)? *\}}'
  lists = rf'\[ *(?:{s}(?: *, *{s})*+)? *\]'
  value = {'str': s, 'int': f'(?:{_INT})', 'list': lists,
           'lists': rf'\[ *(?:{lists}(?: *, *{lists})*+)? *\]'}

  def key(names, exclude=False):
    alts = '|'.join(re.escape(n) for n in names)
    if exclude:
      return '|'.join(f'{q}(?!(?:{alts}){q})[A-Za-z_]\\w*{q}' for q in d['quotes'])
    return '|'.join(f'{q}(?:{alts}){q}' for q in d['quotes'])

  kvs = [f'(?:{key([k])}) *: *(?P<f{i}>{value[kind]})'
         for i, (k, kind) in enumerate(fields.items())]
  other = f'(?:{key(tuple(fields) + other_names, True)}) *: *(?:{sc}|{l2}|{d1})'
  kv = '|'.join([other] + kvs)
  quote = '|'.join(re.escape(q) for q in d['quotes'])
  return re.compile(rf'\{{ *(?:(?:{kv})(?: *, *(?={quote})|(?= *\}})))*+ *\}}', re.ASCII)


class _LineGrammar:
  """`match(text)`: the raw texts of `fields` (None = absent), or None when the line is not
  in the grammar (then the exact reader reads it)."""

  def __init__(self, fields: dict[str, str], other_names: tuple[str, ...] = ()):
    self.n = len(fields)
    self.patterns = [_record_pattern(d, fields, other_names) for d in _DIALECTS]

  def match(self, text: str):
    for pat in self.patterns:
      m = pat.fullmatch(text)
      if m:
        return m.groups()[:self.n]
    return None


_STR_TOKEN = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\]""")
_REVIEW_LINE = _LineGrammar({'reviewerID': 'str', 'asin': 'str', 'unixReviewTime': 'int'})
_META_LINE = _LineGrammar({'asin': 'str', 'categories': 'lists', 'category': 'list'})


def _plain(literal: str | None) -> str | None:
  """The value of a matched string literal; None when absent or holding an escape (JSON and
  python decode some differently: the exact reader decides)."""
  if literal is None or '\\' in literal:
    return None
  return literal[1:-1]


def _review_fast(text: str):
  got = _REVIEW_LINE.match(text)
  if got is None or got[2] is None:
    return None
  user, item = _plain(got[0]), _plain(got[1])
  return (user, item, int(got[2])) if user and item else None


def _meta_fast(text: str):
  """_meta of a line the grammar matches: the last string of the last 'categories' list
  (else of the 2018-style 'category' list)."""
  got = _META_LINE.match(text)
  if got is None:
    return None
  asin = _plain(got[0])
  if not asin:
    return None
  cats = got[1] if got[1] is not None else got[2]
  if cats is None:
    return asin, None
  tokens = _STR_TOKEN.findall(cats)          # strings and list ends, in order
  k = -3 if got[1] is not None else -2       # skip the closing ']]' or ']'
  if len(tokens) < -k or tokens[k] == ']':   # no list, or an empty last one
    return asin, None
  last = _plain(tokens[k])
  return None if last is None else (asin, last or None)


def _read_exact(path, bad, extract):
  with raw.open_binary(path) as f:
    return [x for _, x in raw.read_records(raw.iter_lines(f, path, bad), path, bad, extract)]


def _read_lines(path, bad, fast, extract):
  """Per line: `fast(text)` where the grammar certifies the line, else the exact reader."""
  out = []
  with raw.open_binary(path) as f:
    for lineno, text in raw.iter_lines(f, path, bad):
      got = fast(text)
      if got is None:
        got = next((x for _, x in raw.read_records(iter([(lineno, text)]), path, bad, extract)),
                   None)
      if got is not None:
        out.append(got)
  return out


# Reviews: pyarrow.json over blocks of whole lines. A block is certified when its bytes are
# UTF-8, every non-empty line starts with '{' and ends with '}' (so no record spans lines),
# pyarrow yields one row per such line, and the three columns are non-null, non-empty and
# >= 0. Lines pyarrow may read unlike Python's json (NaN/Inf spellings, deep nesting) are
# re-read with json.loads and must agree. Otherwise None: the caller reads the file per line.
_BLOCK = 1 << 24
_MAX_OPEN = 100            # '[' + '{' bytes of a line read without a Python check


def _suspect_lines(block: bytes, buf: np.ndarray, ends: np.ndarray) -> list[int]:
  """Indices of the lines Python's json may read unlike pyarrow: more than _MAX_OPEN
  brackets (json's recursion limit), or NaN / Inf after ':', ',' or '[' (pyarrow also takes
  'Inf' and '-NaN', which json refuses)."""
  opens = np.flatnonzero((buf == ord('[')) | (buf == ord('{')))
  per_line = np.bincount(np.searchsorted(ends, opens), minlength=len(ends))
  out = set(np.flatnonzero(per_line > _MAX_OPEN).tolist())
  for token in (b'NaN', b'Inf'):
    pos = block.find(token)
    while pos >= 0:
      k = pos - 1
      while k >= 0 and block[k] in b' \t-':
        k -= 1
      if k >= 0 and block[k] in b':,[':
        out.add(int(np.searchsorted(ends, pos)))
      pos = block.find(token, pos + 1)
  return sorted(out)


def _blocks(f):
  rest = b''
  while True:
    data = f.read(_BLOCK)
    if not data:
      break
    data = rest + data
    cut = data.rfind(b'\n') + 1
    rest = data[cut:]
    if cut:
      yield data[:cut]
  if rest:
    yield rest + b'\n'


def _line_bounds(block: bytes):
  """(buf, starts, ends) of the non-empty lines of a block of whole lines, or None."""
  buf = np.frombuffer(block, np.uint8)
  ends = np.flatnonzero(buf == 10)
  starts = np.concatenate([[0], ends[:-1] + 1])
  full = ends > starts
  starts, ends = starts[full], ends[full]
  if len(starts) and ((buf[starts] != ord('{')).any() or (buf[ends - 1] != ord('}')).any()):
    return None
  return buf, starts, ends


def _arrow_block(block: bytes):
  """(reviewerID, asin: pyarrow string arrays, unixReviewTime int64 [n]) of a certified block
  of whole lines, else None."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.compute as pc  # pylint: disable=g-import-not-at-top
  import pyarrow.json as pj  # pylint: disable=g-import-not-at-top
  if b'\r' in block:
    block = block.replace(b'\r\n', b'\n')
    if b'\r' in block:
      return None
  try:
    block.decode('utf-8')
  except UnicodeDecodeError:
    return None
  bounds = _line_bounds(block)
  if bounds is None:
    return None
  buf, starts, ends = bounds
  schema = pa.schema([('reviewerID', pa.string()), ('asin', pa.string()),
                      ('unixReviewTime', pa.int64())])
  if not len(starts):
    return pa.array([], pa.string()), pa.array([], pa.string()), np.zeros(0, np.int64)
  try:
    t = pj.read_json(io.BytesIO(block), read_options=pj.ReadOptions(block_size=1 << 22),
                     parse_options=pj.ParseOptions(explicit_schema=schema,
                                                   unexpected_field_behavior='ignore'))
  except (pa.ArrowInvalid, ValueError):
    return None
  if t.num_rows != len(starts) or any(c.null_count for c in t.columns):
    return None
  user, item = (t.column(k).combine_chunks() for k in ('reviewerID', 'asin'))
  ts = t.column('unixReviewTime').to_numpy()
  if (ts < 0).any() or any(pc.min(pc.binary_length(c)).as_py() == 0 for c in (user, item)):
    return None
  for i in _suspect_lines(block, buf, ends):
    try:
      want = _review(json.loads(block[starts[i]:ends[i]]))
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
      return None
    if want != (user[i].as_py(), item[i].as_py(), int(ts[i])):
      return None
  return user, item, ts


def _reviews_arrow(path):
  parts = []
  try:
    with raw.open_binary(path) as f:
      for block in _blocks(f):
        got = _arrow_block(block)
        if got is None:
          return None
        parts.append(got)
  except DataError:          # a damaged file: the exact reader reports it where it reads it
    return None
  if not parts:
    return None
  return (_str_array([p[0] for p in parts]), _str_array([p[1] for p in parts]),
          np.concatenate([p[2] for p in parts]).astype(np.int64))


def _str_array(chunks) -> np.ndarray:
  """pyarrow string chunks -> what np.array(list_of_str) makes (fixed-width str), built
  through the distinct values."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.compute as pc  # pylint: disable=g-import-not-at-top
  enc = pc.dictionary_encode(pa.chunked_array(chunks, pa.string()).combine_chunks())
  return np.array(enc.dictionary.to_pylist(), str)[enc.indices.to_numpy()]


FAST_PARSE = True   # False: the exact reader only (tests compare the two)


def read_reviews(path: str, bad: raw.BadRows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(reviewerID str [N], asin str [N], unixReviewTime int64 [N]) in file order."""
  got = _reviews_arrow(path) if FAST_PARSE else None
  if got is not None:
    return got
  rows = (_read_lines(path, bad, _review_fast, _review) if FAST_PARSE else
          _read_exact(path, bad, _review))
  if not rows:
    return np.array([], str), np.array([], str), np.zeros(0, np.int64)
  user, item, ts = zip(*rows)
  return np.array(user, str), np.array(item, str), np.array(ts, np.int64)


def read_meta(path: str, bad: raw.BadRows) -> dict[str, str | None]:
  """{asin: category or None}; a repeated asin keeps its last record."""
  return dict(_read_lines(path, bad, _meta_fast, _meta) if FAST_PARSE else
              _read_exact(path, bad, _meta))


def sample_negatives(user: np.ndarray, owned_keys: np.ndarray, num_items: int, stride: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, int]:
  """Uniform ids in [1, num_items] with (user * stride + id) not in the sorted `owned_keys`."""
  neg = rng.integers(1, num_items + 1, size=len(user))
  todo = np.arange(len(user))
  redraws = 0
  for _ in range(1000):
    keys = user[todo] * stride + neg[todo]
    pos = np.minimum(np.searchsorted(owned_keys, keys), len(owned_keys) - 1)
    todo = todo[owned_keys[pos] == keys]
    if not len(todo):
      return neg, redraws
    redraws += len(todo)
    neg[todo] = rng.integers(1, num_items + 1, size=len(todo))
  raise DataError(f'amazon: could not sample negatives for {len(todo)} examples: their users '
                  'reviewed (almost) every item in the vocabulary')


def prepare(cfg) -> Prepared:
  L = int(cfg['max_len'])
  rpath, mpath = _find(cfg)
  bad = raw.BadRows(bool(cfg['skip_bad_rows']), 'config.data.amazon.skip_bad_rows')
  user_raw, item_raw, ts = read_reviews(rpath, bad)
  if not len(ts):
    raise DataError(f'{rpath}: no reviews')
  meta = read_meta(mpath, bad)
  users, uinv = np.unique(user_raw, return_inverse=True)
  order = np.lexsort((item_raw, ts, uinv))
  user_raw, item_raw, ts, uidx = user_raw[order], item_raw[order], ts[order], uinv[order]
  seq_start = common.group_starts(uidx)
  k = np.arange(len(uidx)) - seq_start
  n = np.bincount(uidx)[uidx]
  split = np.full(len(k), -1, np.int8)
  split[(k >= 1) & (k <= n - 3)] = common.TRAIN
  split[(k >= 1) & (k == n - 2)] = common.VALID
  split[(k >= 1) & (k == n - 1)] = common.TEST
  visible = k <= n - 3

  items, item_inv = np.unique(item_raw, return_inverse=True)
  item_cat = np.array([meta.get(a) or '' for a in items.tolist()], dtype=str)[item_inv]
  item_vocab = common.build_vocab(item_raw[visible], cfg['min_item_count'])
  cate_vocab = common.build_vocab(item_cat[visible & (item_cat != '')])
  item_id = common.lookup(item_vocab, item_raw)
  cate_id = np.where(item_cat != '', common.lookup(cate_vocab, item_cat), 0).astype(np.int32)
  V = len(item_vocab)
  if V < 2:
    raise DataError(f'{rpath}: only {V} items visible in training; too few for negatives')
  cate_of_id = np.zeros(V + 1, np.int32)
  known = item_id > 0                    # every vocab item occurs, so every id gets its category
  cate_of_id[item_id[known]] = cate_id[known]

  ex = np.flatnonzero(split >= 0)        # review index of each positive target
  stride = V + 1
  owned = np.unique(uidx.astype(np.int64) * stride + item_id)
  neg, redraws = sample_negatives(uidx[ex].astype(np.int64), owned, V, stride,
                                  np.random.default_rng(int(cfg['neg_seed'])))
  two = np.repeat(ex, 2)                 # pos, neg, pos, neg, ...
  target = np.stack([item_id[ex], neg], 1).ravel().astype(np.int32)
  if cfg['same_time_history']:
    hist_end = two
  else:
    hist_end = common.group_starts(uidx * (ts.max() + 1) + ts)[two]
  columns = {'user_id': (uidx[two] + 1).astype(np.int32), 'target_item': target,
             'target_cate': np.stack([cate_id[ex], cate_of_id[neg]], 1).ravel(),
             'label': np.tile(np.array([1, 0], np.float32), len(ex))}
  ex_split = split[two]
  starts = seq_start[two]

  def gen(split_id):
    rows = np.flatnonzero(ex_split == split_id)
    return lambda: common.window_chunks(rows, hist_end, starts, columns)

  info = {'reviews_file': rpath, 'meta_file': mpath, 'reviews': int(len(order)),
          'users': int(len(users)), 'items_reviewed': int(len(items)),
          'meta_records': len(meta), 'item_vocab': V + 1, 'cate_vocab': int(len(cate_vocab)) + 1,
          'reviews_without_category': int((item_cat == '').sum()),
          'negative_redraws': int(redraws),
          'reviews_per_user': common.hist_len_summary(np.bincount(uidx).astype(np.float64)),
          'positions': 'train k=1..n-3, valid k=n-2, test k=n-1 (pos + sampled neg each)'}
  info.update(bad.report())
  spec = DataSpec(num_users=len(users) + 1, num_items=V + 1, num_cates=len(cate_vocab) + 1,
                  max_len=L, tasks=(Task('click'),))
  return Prepared(spec, {s: gen(i) for s, i in common.SPLIT_IDS.items()}, info,
                  behaviours={'hist_items': item_id, 'hist_cates': cate_id})
