"""The GPU a recipe plans for: memory per GPU and peak dense TFLOP/s per training precision.

Presets are the data-sheet figures of the SXM parts (dense, no sparsity). Memory is what `nvidia-smi` reports
as total (A100 80GB: 81920 MiB = 80 GiB; H100 80GB: 81559 MiB; H200: 143771 MiB); what a process can use is
less, which the memory model's fixed overhead and margin account for (`memory.Overheads`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

Precision = Literal["fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model.

    Args:
        name: preset name, or "custom" for explicit values.
        memory_gib: device memory in GiB (2^30 bytes).
        bf16_tflops / fp16_tflops: dense tensor-core peak.
        fp32_tflops: the peak fp32 training gets: TF32 tensor cores (megatron enables TF32 matmuls).
        gpus_per_node: GPUs in one node of this kind (DGX/HGX: 8); tensor parallelism stays inside a node.
        memory_tbps: HBM bandwidth, TB/s (what bounds a decode step: `hpc_instruct.evaluate.throughput`).
    """

    name: str
    memory_gib: float
    bf16_tflops: float
    fp16_tflops: float
    fp32_tflops: float
    gpus_per_node: int = 8
    memory_tbps: float = 2.0

    def peak_tflops(self, precision: Precision) -> float:
        return {"bf16": self.bf16_tflops, "fp16": self.fp16_tflops, "fp32": self.fp32_tflops}[precision]


GPU_PRESETS: dict[str, GpuSpec] = {
    "a100-40g": GpuSpec("a100-40g", 40.0, 312.0, 312.0, 156.0, 8, 1.555),
    "a100-80g": GpuSpec("a100-80g", 80.0, 312.0, 312.0, 156.0, 8, 2.039),
    "h100-80g": GpuSpec("h100-80g", 81559 / 1024, 989.0, 989.0, 494.5, 8, 3.35),
    "h200-141g": GpuSpec("h200-141g", 143771 / 1024, 989.0, 989.0, 494.5, 8, 4.8),
}


def gpu_preset(name: str) -> GpuSpec:
    """A preset by name; a KeyError names the nearest preset."""
    if name not in GPU_PRESETS:
        close = difflib.get_close_matches(name, list(GPU_PRESETS), n=1, cutoff=0.4)
        hint = f"did you mean {close[0]!r}?" if close else "presets: " + ", ".join(GPU_PRESETS)
        raise KeyError(f"unknown GPU {name!r} ({hint})")
    return GPU_PRESETS[name]


def larger_presets(than: GpuSpec) -> list[GpuSpec]:
    """Presets with more memory than `than`, smallest first (the 'bigger GPU' suggestions)."""
    return sorted((g for g in GPU_PRESETS.values() if g.memory_gib > than.memory_gib), key=lambda g: g.memory_gib)
