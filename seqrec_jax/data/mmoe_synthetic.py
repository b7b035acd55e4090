"""The MMoE paper's synthetic two-task regression data with controlled task correlation.

Construction (Ma et al., KDD'18, Sec. 3.2):
  1. u1, u2 in R^d: two orthogonal unit vectors.
  2. w1 = c * u1,  w2 = c * (p * u1 + sqrt(1 - p^2) * u2), so cos(w1, w2) = p (`correlation`).
  3. x ~ N(0, I_d).
  4. y_k = w_k^T x + sum_{i=1..m} sin(alpha_i * w_k^T x + beta_i) + eps_k, eps_k ~ N(0, noise^2).
The paper does not give alpha_i, beta_i ("given parameters"); here they are drawn from
N(0, alpha_std^2) and N(0, beta_std^2) with `shape_seed`, fixed across `seed`s so every
dataset has the same label shape (and label variance); `seed` draws u1, u2, x and the noise. The
label Pearson correlation falls with p but is not p itself (the sinusoids are non-linear); it is
reported in `info`, with each task's label variance (the MSE of predicting the mean).

Batch: dense [N, d] float32, labels [N, 2] float32 (tasks y1, y2, kind 'regression'),
user_id [N] zeros. No items or history (num_items = 0, max_len = 0).
"""
from __future__ import annotations

import numpy as np

from seqrec_jax.data.features import DataSpec, Task
from seqrec_jax.data.pipeline import ArraySplit, Dataset

DEFAULTS = dict(
    dim=100, correlation=0.5, scale=1.0, num_sin=10, alpha_std=1.0, beta_std=1.0,
    noise_std=0.01, num_train=10000, num_valid=2000, num_test=2000, seed=0, shape_seed=0)


def task_weights(dim: int, correlation: float, scale: float, rng) -> np.ndarray:
  """[2, dim] weights with cosine similarity `correlation` and norm `scale`."""
  if not -1.0 <= correlation <= 1.0:
    raise ValueError(f'mmoe_synthetic: correlation={correlation} must be in [-1, 1] '
                     '(config.data.mmoe_synthetic.correlation)')
  if dim < 2:
    raise ValueError(f'mmoe_synthetic: dim={dim} must be >= 2 (two orthogonal vectors)')
  q, _ = np.linalg.qr(rng.normal(size=(dim, 2)))                   # orthonormal columns
  u1, u2 = q[:, 0], q[:, 1]
  w1 = scale * u1
  w2 = scale * (correlation * u1 + np.sqrt(1.0 - correlation ** 2) * u2)
  return np.stack([w1, w2])


def labels(x, w, alphas, betas, noise_std, rng) -> np.ndarray:
  """x [N, d], w [T, d] -> y [N, T] (paper step 4)."""
  z = x @ w.T                                                       # [N, T]
  y = z + np.sin(alphas[:, None, None] * z[None] + betas[:, None, None]).sum(0)
  return y + noise_std * rng.normal(size=y.shape)


def generate(dim, correlation, scale, num_sin, alpha_std, beta_std, noise_std, num_train,
             num_valid, num_test, seed, shape_seed) -> Dataset:
  shape_rng = np.random.default_rng([shape_seed, 1])
  alphas = shape_rng.normal(scale=alpha_std, size=num_sin)
  betas = shape_rng.normal(scale=beta_std, size=num_sin)
  rng = np.random.default_rng(seed)
  w = task_weights(dim, correlation, scale, rng)
  splits, info = {}, {'generator': 'mmoe-synthetic', 'seed': seed, 'shape_seed': shape_seed,
                      'correlation': correlation,
                      'cosine(w1,w2)': float(w[0] @ w[1] / np.linalg.norm(w, axis=1).prod())}
  for name, n in (('train', num_train), ('valid', num_valid), ('test', num_test)):
    x = rng.normal(size=(n, dim))
    y = labels(x, w, alphas, betas, noise_std, rng)
    splits[name] = ArraySplit({
        'user_id': np.zeros(n, np.int32), 'dense': x.astype(np.float32),
        'labels': y.astype(np.float32)})
    info[f'{name}/rows'] = n
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
