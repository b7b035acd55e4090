"""The MMoE paper's synthetic two-task regression data with controlled task correlation.

Construction (Ma et al., KDD'18, Sec. 3.2), generated on the fly from `seed` (nothing on disk):
  1. u1, u2 in R^d: two orthogonal unit vectors (QR of a Gaussian [d, 2] matrix).
  2. w1 = c * u1,  w2 = c * (p * u1 + sqrt(1 - p^2) * u2), so cos(w1, w2) = p (`correlation`)
     exactly (up to float rounding).
  3. x ~ N(0, I_d).
  4. y_k = w_k^T x + sum_{i=1..m} sin(alpha_i * w_k^T x + beta_i) + eps_k, eps_k ~ N(0, sigma^2).
  5. Repeat 3-4 "until enough data are generated": `num_train`, `num_valid`, `num_test` rows.

Pinned constants (the paper calls alpha_i, beta_i "given parameters" and gives neither them,
c nor m; only d = 100, from Sec. 5.1's parameter count):
  d = 100 (`dim`), c = 1 (`scale`, so w_k^T x ~ N(0, 1)), m = 10 (`num_sin`),
  alpha_i, beta_i = ALPHAS, BETAS below: one draw of N(0, 1) each, written out literally
    (`np.random.default_rng([0, 1]).normal(size=10)` twice, rounded to 6 decimals; the values
    the earlier version of this module drew with shape_seed=0), the same for every `seed`, so
    every dataset has the same label shape; `num_sin` < 10 uses the first `num_sin` of them.
  sigma = 0.1 (`noise_std`): the paper writes eps ~ N(0, 0.01), read as (mean, variance). The
    other reading (std 0.01) only moves the Bayes floor from 0.01 to 1e-4 per task; the label
    variance is ~1.30, so both are far below any model's MSE.
`seed` draws u1, u2 and, from independent streams per split, x and the noise; the correlation
only enters w2, so one `seed` gives the same u1, u2, x and noise at every correlation (runs are
paired across correlations). Train/valid/test sizes do not change each other's rows.

The label Pearson correlation falls with p but is not p itself (the sinusoids are non-linear):
with the constants above it is ~0.18, 0.47, 0.68, 0.99 at p = 0.5, 0.8, 0.9, 1.0
(`expected_label_pearson` computes it by quadrature); `info` reports the measured one per
split, each task's label variance (the MSE of predicting the mean) and the noise variance
(the Bayes-optimal MSE).

Batch: dense [N, d] float32, labels [N, 2] float32 (tasks y1, y2, kind 'regression'),
user_id [N] zeros. No items or history (num_items = 0, max_len = 0).
"""
from __future__ import annotations

import numpy as np

from seqrec_jax.configs.keys import Key, defaults, integer, number
from seqrec_jax.data.features import DataSpec, Task
from seqrec_jax.data.pipeline import ArraySplit, Dataset

# alpha_i, beta_i (i = 1..10): np.random.default_rng([0, 1]).normal(size=10), then the next 10.
ALPHAS = (0.102968, -0.980527, -0.817478, -1.027882, -0.574459,
          1.971130, 0.393357, -0.002309, -2.675402, 1.942593)
BETAS = (0.019483, -2.262205, 0.073403, 0.215109, 1.221374,
         0.030731, -1.274874, 0.226384, -0.385422, -1.409182)

# Sizes: the paper trains "until enough data"; >= 200k rows make every step of the paper study
# see rows no earlier step saw (one pass, i.e. fresh samples each step).
KEYS = (
    Key('dim', 100, 'input width d', integer(1)),
    Key('correlation', 0.5, 'p: cosine similarity of the two tasks\' weight vectors',
        number(-1, 1)),
    Key('scale', 1.0, 'c: scale of the task weight vectors', number()),
    Key('num_sin', 10, 'sinusoids in each label (the paper: 10)', integer(1)),
    Key('noise_std', 0.1, 'label noise standard deviation', number(0)),
    Key('num_train', 200_000, 'train rows', integer(1)),
    Key('num_valid', 50_000, 'valid rows', integer(1)),
    Key('num_test', 50_000, 'test rows', integer(1)),
    Key('seed', 0, 'generator seed', integer()),
)
DEFAULTS = defaults(KEYS)
SPLITS = ('train', 'valid', 'test')


def task_weights(dim: int, correlation: float, scale: float, rng) -> np.ndarray:
  """[2, dim] weights with cosine similarity `correlation` and norm `scale` (steps 1-2)."""
  if not -1.0 <= correlation <= 1.0:
    raise ValueError(f'mmoe_synthetic: correlation={correlation} must be in [-1, 1] '
                     '(config.data.mmoe_synthetic.correlation)')
  if dim < 2:
    raise ValueError(f'mmoe_synthetic: dim={dim} must be >= 2 (two orthogonal vectors; '
                     'config.data.mmoe_synthetic.dim)')
  q, _ = np.linalg.qr(rng.normal(size=(dim, 2)))                   # orthonormal columns
  u1, u2 = q[:, 0], q[:, 1]
  w1 = scale * u1
  w2 = scale * (correlation * u1 + np.sqrt(1.0 - correlation ** 2) * u2)
  return np.stack([w1, w2])


def shape_params(num_sin: int) -> tuple[np.ndarray, np.ndarray]:
  """(alphas [m], betas [m]): the first `num_sin` pinned constants."""
  if not 0 <= num_sin <= len(ALPHAS):
    raise ValueError(f'mmoe_synthetic: num_sin={num_sin} must be in [0, {len(ALPHAS)}] (the '
                     'pinned alpha_i, beta_i; config.data.mmoe_synthetic.num_sin)')
  return np.array(ALPHAS[:num_sin]), np.array(BETAS[:num_sin])


def label_fn(z, alphas, betas) -> np.ndarray:
  """The noise-free label of step 4 as a function of z = w_k^T x (any shape)."""
  z = np.asarray(z, np.float64)
  return z + np.sin(alphas.reshape((-1,) + (1,) * z.ndim) * z + betas.reshape(
      (-1,) + (1,) * z.ndim)).sum(0)


def labels(x, w, alphas, betas, noise_std, rng) -> np.ndarray:
  """x [N, d], w [T, d] -> y [N, T] (paper step 4)."""
  z = x @ w.T.astype(x.dtype)                                       # [N, T]
  return label_fn(z, alphas, betas) + noise_std * rng.standard_normal(z.shape)


def expected_label_pearson(correlation: float, scale: float = 1.0, num_sin: int = 10,
                           noise_std: float = 0.1, points: int = 80) -> float:
  """Population Pearson correlation of y1 and y2 by Gauss-Hermite quadrature: (z1, z2) are
  jointly Gaussian with std `scale` and correlation `correlation`."""
  alphas, betas = shape_params(num_sin)
  t, q = np.polynomial.hermite_e.hermegauss(points)
  q = q / q.sum()
  a, b = np.meshgrid(t, t, indexing='ij')
  wq = np.outer(q, q)
  f1 = label_fn(scale * a, alphas, betas)
  f2 = label_fn(scale * (correlation * a + np.sqrt(1.0 - correlation ** 2) * b), alphas, betas)
  m1, m2 = (wq * f1).sum(), (wq * f2).sum()
  var = (wq * (f1 - m1) ** 2).sum()          # the same for both tasks (same marginal law)
  return float((wq * (f1 - m1) * (f2 - m2)).sum() / (var + noise_std ** 2))


def generate(dim, correlation, scale, num_sin, noise_std, num_train, num_valid, num_test,
             seed) -> Dataset:
  alphas, betas = shape_params(num_sin)
  w_seq, *split_seqs = np.random.SeedSequence(seed).spawn(1 + len(SPLITS))
  w = task_weights(dim, correlation, scale, np.random.default_rng(w_seq))
  splits, info = {}, {'generator': 'mmoe-synthetic', 'seed': seed, 'correlation': correlation,
                      'cosine(w1,w2)': float(w[0] @ w[1] / np.linalg.norm(w, axis=1).prod())}
  for name, n, ss in zip(SPLITS, (num_train, num_valid, num_test), split_seqs):
    rng = np.random.default_rng(ss)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    y = labels(x, w, alphas, betas, noise_std, rng)
    splits[name] = ArraySplit({
        'user_id': np.zeros(n, np.int32), 'dense': x, 'labels': y.astype(np.float32)})
    info[f'{name}/rows'] = n
    if n > 1:
      info[f'{name}/label_pearson'] = float(np.corrcoef(y[:, 0], y[:, 1])[0, 1])
      for k in range(2):
        info[f'{name}/y{k + 1}_var'] = float(y[:, k].var())
  info['noise_var'] = noise_std ** 2        # the Bayes-optimal MSE per task
  spec = DataSpec(num_users=1, num_items=0, num_cates=0, max_len=0, dense_dim=dim,
                  tasks=(Task('y1', 'regression'), Task('y2', 'regression')))
  return Dataset('mmoe_synthetic', spec, splits, info)


def load(cfg) -> Dataset:
  """Builds the dataset from `config.data.mmoe_synthetic` (a ConfigDict with DEFAULTS' keys)."""
  return generate(**{k: cfg[k] for k in DEFAULTS})
