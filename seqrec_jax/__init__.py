"""seqrec_jax: JAX/Flax ranking models (DIN, multi-task, DCN).

Importing the package has no side effects on the process: the CPU runtime defaults
(seqrec_jax/xla_cpu.py) are applied by the entry points or by `xla_cpu.apply_defaults()`.
"""
