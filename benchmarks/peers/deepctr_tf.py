"""DeepCTR (TensorFlow/Keras) DIN behind the benchmark interface.

Runs in its own virtualenv (`.venv-tf`, made by `launch.sh bench`): with TensorFlow importable,
tensorflow-datasets switches to its TensorFlow code paths, so TF never goes into the project's
venv. DeepCTR 0.9.4 needs Keras 2: with TensorFlow 2.21 it runs only through tf-keras
(TF_USE_LEGACY_KERAS=1, set here before TensorFlow is imported); under Keras 3 it fails in
`deepctr/layers/utils.py` compute_mask ("'tuple' object has no attribute 'rank'").
Configuration: item/cate embeddings 64 (shared by target and history), attention MLP 80-40
with Dice, main MLP 200-80 with Dice (or PReLU for activation='prelu'), Adam(1e-3), BCE,
trained with `train_on_batch` and scored with `predict_on_batch` (both compiled tf.functions).
"""
from __future__ import annotations

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks import data as bd  # pylint: disable=g-import-not-at-top,wrong-import-position


def _inputs(b):
  return {'item': b['target_item'], 'cate': b['target_cate'], 'hist_item': b['hist_items'],
          'hist_cate': b['hist_cates'], 'seq_length': b['hist_mask'].sum(1).astype(np.int32)}


class DeepCtrTf:
  framework = 'tensorflow'

  def __init__(self, seq_len: int, activation: str = 'dice'):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from deepctr.feature_column import SparseFeat, VarLenSparseFeat  # pylint: disable=g-import-not-at-top
    from deepctr.models import DIN  # pylint: disable=g-import-not-at-top
    tf.config.threading.set_intra_op_parallelism_threads(os.cpu_count() or 2)
    d = bd.EMBED_DIM
    cols = [SparseFeat('item', bd.NUM_ITEMS, d), SparseFeat('cate', bd.NUM_CATES, d),
            VarLenSparseFeat(SparseFeat('hist_item', bd.NUM_ITEMS, d, embedding_name='item'),
                             maxlen=seq_len, length_name='seq_length'),
            VarLenSparseFeat(SparseFeat('hist_cate', bd.NUM_CATES, d, embedding_name='cate'),
                             maxlen=seq_len, length_name='seq_length')]
    # DeepCTR takes 'dice' or a Keras layer class; Keras' PReLU keeps one slope per
    # non-batch entry (per position and unit inside the attention).
    act = 'dice' if activation == 'dice' else tf.keras.layers.PReLU
    self.model = DIN(cols, ['item', 'cate'], dnn_hidden_units=bd.HIDDEN,
                     att_hidden_size=bd.ATT_HIDDEN, att_activation=act, dnn_activation=act,
                     l2_reg_embedding=0.0)
    self.model.compile(tf.keras.optimizers.Adam(1e-3), 'binary_crossentropy')
    self.batches = [(_inputs(b), b['label']) for b in bd.make_batches(seq_len)]
    self._i = 0

  def train(self, num_steps: int) -> float:
    loss = None
    for _ in range(num_steps):
      x, y = self.batches[self._i % len(self.batches)]
      self._i += 1
      loss = self.model.train_on_batch(x, y)
    return float(loss)

  def serve(self, request) -> np.ndarray:
    return self.model.predict_on_batch(_inputs(bd.tile_request(request)))[:, 0]

  def score(self, batch) -> np.ndarray:
    return self.model.predict_on_batch(_inputs(batch))[:, 0]
