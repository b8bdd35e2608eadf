"""The Megatron-core backend: GPTModel in the Llama/Qwen2 shape with TP x PP x DP, on GPUs or CPU (gloo).

- `model`: `ParallelLayout`, `ModelOptions`, `build_model` (one GPTModel per virtual pipeline stage), packing masks.
- `convert`: HF <-> Megatron weights (sharded on load, merged on export), `ModelShape` <-> HF config.
- `parallel`: process groups (`initialize`, `teardown`), `Trainer` (megatron DDP + optimizer, one step),
  `forward_logits`.
- `checkpoint`: `dist_checkpointing` save/load of model weights, and of weights + optimizer state for resumes,
  reshardable across layouts.
- `backend`: `MegatronBackend`, the training loop's `hpc_instruct.train.backend.Backend` on the modules above.
- `cpu_compat`: the patches that let megatron-core run without CUDA (installed by `parallel.initialize`).

Importing this package imports nothing heavy; the submodules import torch and megatron-core.
"""
