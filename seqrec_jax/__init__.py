"""seqrec_jax: JAX/Flax ranking models (DIN, multi-task, DCN)."""
from seqrec_jax import xla_cpu as _xla_cpu

_xla_cpu.apply_defaults()  # before any JAX computation: see seqrec_jax/xla_cpu.py
