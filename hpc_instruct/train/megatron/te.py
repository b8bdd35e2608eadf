"""Transformer Engine layers when they import: fused attention over packed rows in THD format, no dense masks.

megatron-core's local layers (what runs on CPU and wherever TE is missing) compute attention unfused: the full
[batch, heads, s, s] score matrix, with a dense block-diagonal mask to keep the samples of a packed row apart
(`model.packed_attention_mask`). With TE, megatron-core's TE layer spec
(`get_gpt_layer_with_transformer_engine_spec`: fused QKV/MLP linears with their RMSNorm folded in, TE's fused
attention, TENorm at the end of the block) runs the samples of a micro-batch as variable-length sequences:
the micro-batch's rows are laid end to end into one sequence of rows x width tokens (batch 1, megatron's
`thd` layout, which squeezes the batch dimension away) and `PackedSeqParams` carries the sample boundaries
(`cu_seqlens`, built by `hpc_instruct.train.batching` from the boundaries the packing stage stored). Each
sample attends causally within itself; the kernel never forms the s x s matrix. RoPE restarts per sample
(megatron applies it per THD sequence), which changes nothing: the scores depend only on relative positions.

The choice is made once per model (`ModelOptions.attention`): "auto" takes TE when it imports and CUDA is
present, "te" demands it, "local" never uses it. `te_importable` is the one seam the tests replace.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

import torch
from megatron.core.packed_seq_params import PackedSeqParams

Attention = Literal["auto", "te", "local"]
PACKED_FORMAT = "packed_format"  # attribute set on each built GPTModel: "thd" (TE) or "mask" (local)


def te_importable() -> bool:
    """Whether Transformer Engine and megatron-core's TE extension import (TE needs CUDA to install)."""
    try:
        importlib.import_module("transformer_engine")
        importlib.import_module("megatron.core.extensions.transformer_engine")
    except Exception:  # ImportError, or TE's own errors when its CUDA libraries are missing
        return False
    return True


def use_te(attention: Attention, cuda: bool | None = None) -> bool:
    """Whether the model gets TE layers: "auto" = TE importable and CUDA present; "te" refuses to fall back."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if attention == "local":
        return False
    available = cuda and te_importable()
    if attention == "te" and not available:
        raise RuntimeError(
            "attention 'te' needs Transformer Engine and a GPU: pip install --no-build-isolation "
            "'transformer_engine[pytorch]' on the GPU node, or use attention 'auto'/'local'"
        )
    return available


def te_layer_spec() -> tuple[Any, Any]:
    """(layer spec, final norm) from megatron-core's TE spec provider: the Llama shape (RMSNorm is chosen
    by `TransformerConfig.normalization`, SwiGLU by `gated_linear_unit`, no biases by `add_bias_linear`)."""
    from megatron.core.extensions.transformer_engine import TENorm
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_with_transformer_engine_spec

    return get_gpt_layer_with_transformer_engine_spec(), TENorm


def thd_params(cu_seqlens: torch.Tensor, device: torch.device | str | None = None) -> PackedSeqParams:
    """`PackedSeqParams` for one micro-batch laid end to end, from its boundaries (int32, [sequences + 1]).

    `max_seqlen` is read on the host, before the boundaries move to the GPU, so no device sync is needed.
    """
    cu = cu_seqlens.to(torch.int32)
    if cu.dim() != 1 or len(cu) < 2 or int(cu[0]) != 0 or bool((cu[1:] <= cu[:-1]).any()):
        raise ValueError(f"cu_seqlens must rise strictly from 0, got {cu.tolist()}")
    longest = int((cu[1:] - cu[:-1]).max())
    cu = cu.to(device) if device is not None else cu
    return PackedSeqParams(
        qkv_format="thd",
        cu_seqlens_q=cu,
        cu_seqlens_kv=cu,
        max_seqlen_q=longest,
        max_seqlen_kv=longest,
    )


def cu_seqlens_from_segments(segment_ids: torch.Tensor) -> torch.Tensor:
    """Boundaries of a [rows, width] micro-batch laid end to end, from its segment ids (negative = padding).

    For batches built outside `batching.StepData` (evaluation, tests); gives what StepData stores: a new
    sequence wherever the segment changes or a row starts.
    """
    rows, width = segment_ids.shape
    change = torch.ones_like(segment_ids, dtype=torch.bool)
    change[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    starts = torch.nonzero(change.flatten()).flatten()
    end = torch.tensor([rows * width], dtype=starts.dtype, device=starts.device)
    return torch.cat([starts, end]).to(torch.int32).cpu()


def flatten_rows(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """[rows, width] tensors -> [1, rows x width] (the THD layout); 1-D entries (cu_seqlens) unchanged."""
    return {k: v.reshape(1, -1) if v.dim() == 2 else v for k, v in batch.items()}
