"""hpc_instruct: instruction-tuning dynamics studies on HPC clusters.

Importing this package must stay cheap (no torch): login nodes run `hpci plan` and `hpci status`.
"""

__version__ = "0.1.0"
