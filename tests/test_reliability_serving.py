"""Serving validates every request (issue 14.5): ids against the vocabularies, dtypes,
shapes and lengths; each error names the field, the value and its position."""
import dataclasses

import jax
import numpy as np
import pytest

from seqrec_jax import models
from seqrec_jax.configs import default
from seqrec_jax.data.features import DataSpec, FeatureSpec

USERS, ITEMS, CATES, LEN, N = 30, 40, 6, 7, 5
SPEC = DataSpec(num_users=USERS, num_items=ITEMS, num_cates=CATES, max_len=LEN,
                sparse=(FeatureSpec('city', 5),), dense_dim=2)


@pytest.fixture(scope='module')
def scorer():
  from seqrec_jax.serving import CandidateScorer  # pylint: disable=g-import-not-at-top
  c = default.get_config()
  c.model.embed_dim, c.model.hidden, c.model.attention.hidden = 4, (8, 4), (6, 3)
  c.model.use_user_embedding = True
  model = models.build_model(c.model, SPEC)
  v = model.init(jax.random.key(0), _batch(good_request()), train=False)
  return CandidateScorer(model, v)


def _batch(req):
  from seqrec_jax.serving import make_request_batch  # pylint: disable=g-import-not-at-top
  return make_request_batch(req, tile_history=True)


def good_request():
  return {'hist_items': np.array([0, 0, 3, 9, 1, 39, 2]),
          'hist_cates': np.array([0, 0, 1, 5, 2, 3, 4]),
          'hist_mask': np.array([0, 0, 1, 1, 1, 1, 1], bool),
          'target_item': np.array([1, 2, 3, 39, 0]), 'target_cate': np.array([1, 1, 2, 5, 0]),
          'user_id': 7, 'sparse': np.array([4]), 'dense': np.array([0.5, -1.0], np.float32)}


BAD = [  # (field, value, expected message part)
    ('target_item', [1, 2, ITEMS, 3, 4], r"\['target_item'\]\[2\] = 40 is outside \[0, 40\)"),
    ('target_item', [1, 2, 3, 10**6, 4], r"\['target_item'\]\[3\] = 1000000 is outside"),
    ('target_item', [1, -1, 3, 4, 5], r"\['target_item'\]\[1\] = -1 is outside"),
    ('target_item', [1, 2, 3, 4, 2**31 + 5], r"\['target_item'\]\[4\] = 2147483653 is outside"),
    ('target_item', [1.0, 2.0, 3.0, 4.0, 5.0], r"'target_item'\] has dtype float64"),
    ('target_item', [[1, 2, 3, 4, 5]], r"'target_item'\] has shape \(1, 5\); expected \[N\]"),
    ('target_item', ['a', 'b', 'c', 'd', 'e'], r"'target_item'\] has dtype <U1"),
    ('target_cate', [1, 2, 3], r"'target_cate'\] has shape \(3,\); expected \(5,\)"),
    ('target_cate', [1, 2, 3, CATES, 1], r"\['target_cate'\]\[3\] = 6 is outside \[0, 6\)"),
    ('hist_items', [0, 0, 3, 9, 1, 40, 2], r"\['hist_items'\]\[5\] = 40 is outside"),
    ('hist_cates', [0, 0, 1, 5, 2, 3, 99], r"\['hist_cates'\]\[6\] = 99 is outside"),
    ('hist_items', list(range(1, LEN + 2)), r"'hist_items'\] has length 8, more than .* 7"),
    ('hist_items', [[1, 2, 3, 4, 5, 6, 7]] * 2, r"'hist_items'\] has shape \(2, 7\)"),
    ('hist_mask', [0, 0, 1, 1, np.nan, 1, 1], r"\['hist_mask'\]\[4\] = nan; mask values"),
    ('hist_mask', [0, 1, 1], r"'hist_mask'\] has shape \(3,\); expected \(7,\)"),
    ('user_id', USERS, r"\['user_id'\]\[\] = 30 is outside \[0, 30\)"),
    ('user_id', [1, 2], r"'user_id'\] has shape \(2,\)"),
    ('sparse', [5], r"\['sparse'\]\[0\] = 5 is outside \[0, 5\) \(field 'city'"),
    ('dense', [0.5, np.inf], r"'dense'\] must hold finite numbers.*inf at \[1\]"),
    ('dense', [0.5], r"'dense'\] has shape \(1,\); expected \[2\]"),
    ('label', [1], r"unknown fields \['label'\]"),
]


@pytest.mark.parametrize('field,value,want', BAD, ids=[f'{b[0]}-{i}' for i, b in enumerate(BAD)])
def test_bad_request_is_an_error_naming_field_value_position(scorer, field, value, want):
  from seqrec_jax.serving import RequestError  # pylint: disable=g-import-not-at-top
  req = dict(good_request(), **{field: np.asarray(value) if field != 'user_id' else value})
  with pytest.raises(RequestError, match=want):
    scorer(req)


def test_missing_candidates_and_valid_requests(scorer):
  from seqrec_jax.serving import RequestError  # pylint: disable=g-import-not-at-top
  req = good_request()
  del req['target_cate']
  with pytest.raises(RequestError, match="no 'target_cate'"):
    scorer(req)
  with pytest.raises(RequestError, match='dict of arrays'):
    scorer([1, 2, 3])
  got = np.asarray(scorer(good_request()))
  assert got.shape == (N,) and np.isfinite(got).all()
  # Python lists and an int mask are valid inputs; a shorter history too.
  req = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in good_request().items()}
  req['hist_mask'] = [int(x) for x in req['hist_mask']]
  np.testing.assert_allclose(np.asarray(scorer(req)), got, rtol=1e-6)
  short = dict(good_request(), hist_items=np.array([3, 9]), hist_cates=np.array([1, 5]),
               hist_mask=np.array([True, True]))
  assert np.asarray(scorer(short)).shape == (N,)


# Issue 28.6: every input the model reads is required (a RequestError naming it, not a
# KeyError from inside the model), and dense values must be finite in the model's float32.
REQUIRED = ['target_item', 'target_cate', 'hist_items', 'hist_cates', 'hist_mask', 'user_id',
            'sparse', 'dense']


@pytest.mark.parametrize('field', REQUIRED)
def test_missing_field_the_model_reads_is_a_request_error(scorer, field):
  from seqrec_jax.serving import RequestError  # pylint: disable=g-import-not-at-top
  req = good_request()
  del req[field]
  with pytest.raises(RequestError, match=f"no '{field}'"):
    scorer(req)


@pytest.mark.parametrize('value,pos', [([1e300, 0.5], 0), ([0.5, -3.5e38], 1),
                                       ([[0.5, 1.0]] * 4 + [[0.5, 1e39]], 9)])
def test_dense_overflowing_float32_is_a_request_error(scorer, value, pos):
  from seqrec_jax.serving import RequestError  # pylint: disable=g-import-not-at-top
  x = np.asarray(value, np.float64)
  where = list(np.unravel_index(pos, x.shape))
  want = (rf"'dense'\] must hold finite numbers in float32.*float64, "
          rf"{x.ravel()[pos]:g} at \[{', '.join(map(str, where))}\]")
  with pytest.raises(RequestError, match=want.replace('+', r'\+')):
    scorer(dict(good_request(), dense=x))
  ok = np.asarray(scorer(dict(good_request(), dense=np.clip(x, -1e30, 1e30))))
  assert ok.shape == (N,)


def test_item_side_columns_must_be_per_candidate():
  from seqrec_jax.serving import RequestError, validate_request  # pylint: disable=g-import-not-at-top
  spec = dataclasses.replace(SPEC, sparse=(FeatureSpec('city', 5, side='user'),
                                           FeatureSpec('shop', 4, side='item')))
  req = dict(good_request(), sparse=np.array([4, 2]))
  with pytest.raises(RequestError, match=r"\['shop'\] are item-side.*\[5, 2\]"):
    validate_request(req, spec)
  validate_request(dict(req, sparse=np.array([[4, 1], [4, 2], [4, 3], [4, 1], [4, 0]])), spec)
