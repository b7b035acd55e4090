"""DIN in plain PyTorch, the same architecture and mathematics as seqrec_jax's `din` model.

item/cate embeddings [V, d] -> q = [e_item, e_cate] [B, 2d], keys [B, L, 2d];
attention MLP over concat[q, k, q-k, q*k] [B, L, 8d] -> 80 -> 40 -> 1 (Dice with masked batch
statistics, or PReLU), no softmax, masked weighted sum; main MLP over [q, pooled] -> 200 -> 80
-> 1. This is the straightforward port a PyTorch user would write (the concatenation is
materialised); `benchmarks.peers.runner` times it eagerly and under torch.compile.
"""
from __future__ import annotations

import torch
from torch import nn


class Dice(nn.Module):
  """Dice (DIN eq. 8-9) with batch statistics over real positions; same as seqrec_jax's."""

  def __init__(self, features: int, eps: float = 1e-8, momentum: float = 0.99):
    super().__init__()
    self.alpha = nn.Parameter(torch.zeros(features))
    self.register_buffer('ra_mean', torch.zeros(features))
    self.register_buffer('ra_var', torch.ones(features))
    self.eps, self.momentum = eps, momentum

  def forward(self, x, mask=None):
    if self.training:
      xf = x.reshape(-1, x.shape[-1])
      w = (torch.ones(xf.shape[0], 1, device=x.device) if mask is None
           else mask.reshape(-1, 1).to(x.dtype))
      cnt = w.sum().clamp_min(1.0)
      mean = (w * xf).sum(0) / cnt
      var = (w * (xf - mean).square()).sum(0) / cnt
      with torch.no_grad():
        self.ra_mean.mul_(self.momentum).add_((1 - self.momentum) * mean.detach())
        self.ra_var.mul_(self.momentum).add_((1 - self.momentum) * var.detach())
    else:
      mean, var = self.ra_mean, self.ra_var
    p = torch.sigmoid((x - mean) * torch.rsqrt(var + self.eps))
    return p * x + (1 - p) * self.alpha * x


class PReLU(nn.Module):
  def __init__(self, features: int):
    super().__init__()
    self.alpha = nn.Parameter(torch.full((features,), 0.25))

  def forward(self, x, mask=None):
    del mask
    return torch.where(x >= 0, x, self.alpha * x)


def _act(name: str, n: int) -> nn.Module:
  return Dice(n) if name == 'dice' else PReLU(n)


class TorchDin(nn.Module):
  """batch dict of tensors -> logits [B]."""

  def __init__(self, num_items: int, num_cates: int, embed_dim: int = 64,
               att_hidden=(80, 40), hidden=(200, 80), activation: str = 'dice'):
    super().__init__()
    d = 2 * embed_dim
    self.item = nn.Embedding(num_items, embed_dim)
    self.cate = nn.Embedding(num_cates, embed_dim)
    nn.init.normal_(self.item.weight, std=0.05)
    nn.init.normal_(self.cate.weight, std=0.05)
    dims = [4 * d, *att_hidden]
    self.att = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
    self.att_act = nn.ModuleList(_act(activation, n) for n in att_hidden)
    self.att_score = nn.Linear(att_hidden[-1], 1)
    dims = [2 * d, *hidden]
    self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
    self.mlp_act = nn.ModuleList(_act(activation, n) for n in hidden)
    self.logit = nn.Linear(hidden[-1], 1)

  def embed(self, items, cates):
    return torch.cat([self.item(items), self.cate(cates)], dim=-1)

  def attention(self, q, k, mask):
    """q [B, D], k [B, L, D] (B may be 1 and broadcast), mask [B, L] -> [B, D]."""
    n, l = q.shape[0], k.shape[1]
    qb = q[:, None, :].expand(n, l, q.shape[-1])
    kb = k.expand(n, l, k.shape[-1])
    h = torch.cat([qb, kb, qb - kb, qb * kb], dim=-1)
    for lin, act in zip(self.att, self.att_act):
      h = act(lin(h), mask)
    w = torch.where(mask, self.att_score(h)[..., 0], 0.0)
    return torch.einsum('bl,bld->bd', w, kb)

  def forward(self, b):
    q = self.embed(b['target_item'], b['target_cate'])
    k = self.embed(b['hist_items'], b['hist_cates'])
    x = torch.cat([q, self.attention(q, k, b['hist_mask'])], dim=-1)
    for lin, act in zip(self.mlp, self.mlp_act):
      x = act(lin(x))
    return self.logit(x)[:, 0]
