"""A small valid recipe that the recipe tests vary."""

BASE = """\
study:
  name: t
  output_root: {out}
models:
  - name: m
    size: tiny
    device: cpu
    micro_batch: 4
    global_batch: 8
data:
  generate: {{pool_size: 50, synthetic_size: 100}}
sweep:
  seeds: [0, 1]
  curated:
    samples_per_ability: [1, 4]
  synthetic:
    total_samples: [10]
training:
  epochs: 2
  precision: fp32
  lr: 1.0e-3
  max_length: 256
"""
