"""Peer DIN implementations for benchmarks only (PyTorch, DeepCTR-Torch, torch-rechub, DeepCTR/TF).

Nothing under seqrec_jax imports these; they need the `peers` extra (`pip install -e .[peers]`).
"""
