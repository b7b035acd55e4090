"""PyTorch systems behind the benchmark interface: train(n) / serve(request) / score(batch).

Systems: 'torch' (plain PyTorch DIN, eager), 'torch_compile' (the same under torch.compile),
'deepctr_torch' (DeepCTR-Torch 0.3 DIN), 'torch_rechub' (torch-rechub DIN). All train with
BCE + Adam(lr 1e-3) on the same numpy batches (converted with torch.from_numpy each step,
the analogue of the JAX host-to-device transfer; moved to `device` when that is a GPU) and
score under torch.inference_mode.
A serving request (one user, N candidates) is scored as a batch whose history is the user's
history expanded (a view, no copy) to N rows, the way these libraries are called.
"""
from __future__ import annotations

import numpy as np
import torch

from benchmarks import data as bd


def _tensors(batch, device='cpu'):
  t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
  return t if device == 'cpu' else {k: v.to(device, non_blocking=True) for k, v in t.items()}


def _expand(req, device='cpu'):
  """Request -> batch with the history expanded (view) to N rows."""
  n = len(req['target_item'])
  t = _tensors(req, device)
  for k in ('user_id', 'hist_items', 'hist_cates', 'hist_mask'):
    t[k] = t[k].expand(n, *t[k].shape[1:])
  return t


class TorchSystem:
  """Wraps a module `forward(tensors) -> logits [B]` with an input adapter."""
  framework = 'torch'

  def __init__(self, module, adapt=lambda t: t, compile_model: bool = False,
               seq_len: int = 50, device: str = 'cpu'):
    torch.manual_seed(0)
    self.device = device
    self.module = module.to(device)
    self.adapt = adapt
    self.fwd = torch.compile(module) if compile_model else module
    self.opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    self.loss = torch.nn.BCEWithLogitsLoss()
    self.batches = bd.make_batches(seq_len)
    self._i = 0

  def train(self, num_steps: int) -> float:
    self.module.train()
    loss = None
    for _ in range(num_steps):
      b = _tensors(self.batches[self._i % len(self.batches)], self.device)
      self._i += 1
      self.opt.zero_grad(set_to_none=True)
      loss = self.loss(self.fwd(self.adapt(b)), b['label'])
      loss.backward()
      self.opt.step()
    return float(loss.detach())

  def serve(self, request) -> np.ndarray:
    self.module.eval()
    with torch.inference_mode():
      return torch.sigmoid(self.fwd(self.adapt(_expand(request, self.device)))).cpu().numpy()

  def score(self, batch) -> np.ndarray:
    self.module.eval()
    with torch.inference_mode():
      return torch.sigmoid(self.fwd(self.adapt(_tensors(batch, self.device)))).cpu().numpy()


def _ids(t):
  """int32 -> int64 ids (nn.Embedding wants long)."""
  return {k: (v.long() if v.dtype == torch.int32 else v) for k, v in t.items()}


def make_torch(seq_len: int, activation: str = 'dice', compile_model: bool = False,
               device: str = 'cpu'):
  from benchmarks.peers.torch_din import TorchDin  # pylint: disable=g-import-not-at-top
  m = TorchDin(bd.NUM_ITEMS, bd.NUM_CATES, bd.EMBED_DIM, bd.ATT_HIDDEN, bd.HIDDEN, activation)
  return TorchSystem(m, _ids, compile_model, seq_len, device)


def make_deepctr_torch(seq_len: int, activation: str = 'dice'):
  """DeepCTR-Torch DIN: item/cate embeddings 64 (shared by target and history), attention
  MLP 80-40 with Dice (its BatchNorm-based Dice, statistics over all positions), main MLP
  200-80. Its main MLP cannot use Dice (DNN builds Dice for 3-D inputs and the DIN tower is
  2-D), so it uses PReLU there; activation='prelu' uses PReLU in the attention too."""
  from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat  # pylint: disable=g-import-not-at-top
  from deepctr_torch.models import DIN  # pylint: disable=g-import-not-at-top
  d = bd.EMBED_DIM
  cols = [SparseFeat('item', bd.NUM_ITEMS, d), SparseFeat('cate', bd.NUM_CATES, d),
          VarLenSparseFeat(SparseFeat('hist_item', bd.NUM_ITEMS, d, embedding_name='item'),
                           maxlen=seq_len, length_name='seq_length'),
          VarLenSparseFeat(SparseFeat('hist_cate', bd.NUM_CATES, d, embedding_name='cate'),
                           maxlen=seq_len, length_name='seq_length')]
  m = DIN(cols, ['item', 'cate'], dnn_hidden_units=bd.HIDDEN, att_hidden_size=bd.ATT_HIDDEN,
          att_activation='Dice' if activation == 'dice' else 'prelu', dnn_activation='prelu',
          l2_reg_embedding=0.0, device='cpu')
  idx = m.feature_index

  def adapt(t):
    # DeepCTR-Torch reads one float tensor [B, columns] and masks by length (left-aligned);
    # the lengths are the same as ours, the alignment does not change the work done.
    n = t['target_item'].shape[0]
    x = torch.empty(n, max(e for _, e in idx.values()), dtype=torch.float32)
    x[:, idx['item'][0]] = t['target_item']
    x[:, idx['cate'][0]] = t['target_cate']
    x[:, idx['hist_item'][0]:idx['hist_item'][1]] = t['hist_items']
    x[:, idx['hist_cate'][0]:idx['hist_cate'][1]] = t['hist_cates']
    x[:, idx['seq_length'][0]] = t['hist_mask'].sum(1)
    return x

  class Logits(torch.nn.Module):        # DIN.forward returns sigmoid(logit): undo for BCE
    def __init__(self):
      super().__init__()
      self.din = m

    def forward(self, x):
      p = self.din(x)[:, 0].clamp(1e-7, 1 - 1e-7)
      return torch.log(p) - torch.log1p(-p)

  return TorchSystem(Logits(), adapt, False, seq_len)


def make_torch_rechub(seq_len: int, activation: str = 'dice'):
  """torch-rechub DIN: one attention unit per history field (item, cate; 4 x 64 inputs each)
  with MLP 80-40 (BatchNorm + Dice), main MLP 200-80 (BatchNorm + Dice), no padding mask in
  the attention (its implementation). Its forward needs a non-empty list of other features;
  we have none, so a subclass repeats its forward without that lookup (same modules)."""
  from torch_rechub.basic.features import SequenceFeature, SparseFeature  # pylint: disable=g-import-not-at-top
  from torch_rechub.models.ranking import DIN  # pylint: disable=g-import-not-at-top
  d = bd.EMBED_DIM
  target = [SparseFeature('target_item', bd.NUM_ITEMS, d),
            SparseFeature('target_cate', bd.NUM_CATES, d)]
  hist = [SequenceFeature('hist_items', bd.NUM_ITEMS, d, pooling='concat',
                          shared_with='target_item'),
          SequenceFeature('hist_cates', bd.NUM_CATES, d, pooling='concat',
                          shared_with='target_cate')]

  class Din(DIN):
    """DIN.forward without the (here empty) list of other features, which it cannot take."""

    def forward(self, x):
      hist = self.embedding(x, self.history_features)            # [B, 2, L, d]
      tgt = self.embedding(x, self.target_features)              # [B, 2, d]
      pooled = torch.cat([self.attention_layers[i](hist[:, i], tgt[:, i]).unsqueeze(1)
                          for i in range(self.num_history_features)], dim=1)
      y = self.mlp(torch.cat([pooled.flatten(1), tgt.flatten(1)], dim=1))
      return torch.sigmoid(y.squeeze(1))

  m = Din(features=[], history_features=hist, target_features=target,
          mlp_params={'dims': list(bd.HIDDEN)},
          attention_mlp_params={'dims': list(bd.ATT_HIDDEN), 'activation': activation})

  class Logits(torch.nn.Module):        # DIN.forward returns sigmoid(logit): undo for BCE
    def __init__(self):
      super().__init__()
      self.din = m

    def forward(self, t):
      p = self.din(t).clamp(1e-7, 1 - 1e-7)
      return torch.log(p) - torch.log1p(-p)

  return TorchSystem(Logits(), _ids, False, seq_len)


SYSTEMS = {
    'torch': lambda L, act, device='cpu': make_torch(L, act, False, device),
    'torch_compile': lambda L, act, device='cpu': make_torch(L, act, True, device),
    'deepctr_torch': make_deepctr_torch,
    'torch_rechub': make_torch_rechub,
}
