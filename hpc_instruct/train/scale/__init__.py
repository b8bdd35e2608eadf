"""Training and evaluation at true size, checked without a GPU: per-rank shapes, memory, and what fits.

- `gpu`: the GPU a recipe runs on (`GpuSpec`: memory, peak dense TFLOP/s per precision), with presets.
- `ranks`: `LayoutKey` (what decides the parameters each rank holds) and `RankParams`; closed-form counts.
- `simulate`: builds megatron-core's GPTModel of every pipeline/tensor rank on the meta device inside a fake
  process group of the real world size, in one process: the per-rank shapes come from megatron-core itself.
- `cache`: simulated layouts stored by content hash, so a repeated plan never imports torch.
- `memory`: the per-rank GPU memory model (weights, gradients, optimizer state, activations, buffers, margin),
  host memory of checkpoints and HF export, and the eval task's GPU (weights + KV cache).
- `fit`: does a layout fit its GPU and node; if not, the smallest change that does.

- `buffers`: megatron's gradient-buffer layout and optimizer shards: exact static bytes per DP rank.
- `measure`: what a real rank holds (storages after a step; saved tensors of a forward), for the tests.

Only `simulate` and `measure` import torch (megatron-core: `simulate`, only when called).
"""
