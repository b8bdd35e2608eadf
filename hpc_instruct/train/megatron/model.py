"""Build a megatron-core `GPTModel` in the Llama / Qwen2 shape from a `ModelShape`.

With Transformer Engine (GPU nodes where it imports; see `te`) the layers come from megatron-core's TE spec and
packed rows run as variable-length sequences (THD). Otherwise they come from the local (non-TE) spec, so the
same code runs on CPU (tests, over gloo) and on GPUs without TE; the only replaced module is the norm (see
`RMSNorm`). One `GPTModel` is built per virtual pipeline stage held by this rank; `parallel_state` must be
initialised first (`parallel.initialize`). Each model carries `packed_format` ("thd" or "mask"): how
`parallel.model_inputs` keeps the samples of a packed row apart.

Packed sequences on the local spec: several samples share one row; `packed_attention_mask` builds the
block-diagonal causal mask from per-token segment ids. The local attention has no variable-length kernel (it
rejects `PackedSeqParams`), so the mask is what keeps samples apart. RoPE needs no per-sample positions: the score
between two tokens depends only on their distance, which is the same whether positions restart per sample or
not, so masked attention over the packed row equals running each sample alone (tested).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.transformer_block import (
    TransformerBlockSubmodules,
    get_num_layers_to_build,
)

from hpc_instruct.train.megatron.te import PACKED_FORMAT, Attention, te_layer_spec, use_te
from hpc_instruct.train.presets import ModelShape, padded_vocab_size  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class ParallelLayout:
    """How one model replica is split: tensor (TP) x pipeline (PP) parallel; the rest of the world is DP.

    `virtual_pipeline` > 1 interleaves that many layer chunks per pipeline stage (smaller bubble); it needs
    PP > 1 and layers divisible by PP x virtual_pipeline. `sequence_parallel` shards norms, dropout and
    residuals along the sequence across the TP group (needs TP > 1; saves activation memory).
    """

    tensor: int = 1
    pipeline: int = 1
    virtual_pipeline: int | None = None
    sequence_parallel: bool = False

    def check(self, shape: ModelShape, world_size: int | None = None) -> None:
        """Raise ValueError with an actionable message if this layout cannot split `shape`."""
        problems = []
        if shape.num_attention_heads % self.tensor or shape.num_query_groups % self.tensor:
            problems.append(
                f"TP={self.tensor} must divide the attention heads ({shape.num_attention_heads}) and "
                f"query groups ({shape.num_query_groups})"
            )
        stages = self.pipeline * (self.virtual_pipeline or 1)
        if shape.num_layers % stages:
            problems.append(f"PP x virtual ({stages}) must divide the layers ({shape.num_layers})")
        if self.virtual_pipeline and self.pipeline == 1:
            problems.append("virtual_pipeline needs PP > 1")
        if self.sequence_parallel and self.tensor == 1:
            problems.append("sequence_parallel needs TP > 1")
        if world_size is not None and world_size % (self.tensor * self.pipeline):
            problems.append(f"TP x PP ({self.tensor * self.pipeline}) must divide the world ({world_size})")
        if problems:
            raise ValueError("invalid parallel layout: " + "; ".join(problems))


@dataclass(frozen=True)
class ModelOptions:
    """Training-time model settings that are not part of the architecture.

    Args:
        dtype: parameter/compute dtype; None picks bfloat16 with CUDA and float32 on CPU (CPU bf16 is slow and
            the parity tests need fp32). float16 is trained with fp32 main weights and megatron-core's dynamic
            loss scaling (`parallel.Trainer`).
        recompute: activation recomputation: None, "selective" (attention core only, cheap) or "full" (every
            layer's input is kept, the layer is recomputed in backward).
        dropout: hidden and attention dropout (0 for instruction tuning, as in DoIT).
        init_std: std of the random init (overwritten when weights are loaded from HF).
        vocab_multiple: the embedding rows are padded up to a multiple of this (and of TP); padded logits are
            masked to -inf-like values, so the loss equals the unpadded model's.
        attention: "auto" (Transformer Engine layers and THD packing when TE imports on a GPU, else local),
            "te" (fail without it) or "local" (megatron's plain torch layers and dense masks).
    """

    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    recompute: Literal["selective", "full"] | None = None
    dropout: float = 0.0
    init_std: float = 0.02
    vocab_multiple: int = 128
    attention: Attention = "auto"

    def torch_dtype(self) -> torch.dtype:
        if self.dtype is None:
            return torch.bfloat16 if torch.cuda.is_available() else torch.float32
        return getattr(torch, self.dtype)


def transformer_config(
    shape: ModelShape, layout: ParallelLayout, options: ModelOptions, on_meta: bool = False
) -> TransformerConfig:
    """The megatron-core config for `shape` (Llama/Qwen2 conventions) under `layout`.

    `on_meta`: for the at-scale simulation (`hpc_instruct.train.scale`): parameters are created without a
    device argument (so a `torch.device("meta")` context places them) and not initialised, even with CUDA.
    """
    dtype = options.torch_dtype()
    recompute: dict[str, Any] = {}
    if options.recompute == "full":
        recompute = dict(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1)
    elif options.recompute == "selective":
        recompute = dict(recompute_granularity="selective")
    return TransformerConfig(
        num_layers=shape.num_layers,
        hidden_size=shape.hidden_size,
        num_attention_heads=shape.num_attention_heads,
        num_query_groups=shape.num_query_groups,
        kv_channels=shape.head_dim,
        ffn_hidden_size=shape.ffn_hidden_size,
        # Llama/Qwen2: pre-norm RMSNorm, SwiGLU (silu(gate) * up), no linear biases; Qwen2 has q/k/v biases.
        normalization="RMSNorm",
        layernorm_epsilon=shape.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=shape.family == "qwen2",
        hidden_dropout=options.dropout,
        attention_dropout=options.dropout,
        init_method_std=options.init_std,
        # Parallelism.
        tensor_model_parallel_size=layout.tensor,
        pipeline_model_parallel_size=layout.pipeline,
        virtual_pipeline_model_parallel_size=layout.virtual_pipeline,
        sequence_parallel=layout.sequence_parallel,
        pipeline_dtype=dtype,
        # Interleaved schedules exchange activations and gradients with the same peer in one step (always at
        # PP=2). Batched p2p posts them in an order gloo pairs wrongly (a gradient arrives as an activation);
        # per-op p2p orders them by even/odd rank. Overlapping it with compute (megatron-LM's default for
        # interleaving) gave wrong losses over gloo together with deallocate_pipeline_outputs (an output is
        # freed while gloo's async send still reads it), so it stays off: a GPU-only throughput option.
        batch_p2p_comm=layout.virtual_pipeline is None,
        overlap_p2p_comm=False,
        # Precision.
        params_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        attention_softmax_in_fp32=True,
        # Fused kernels need CUDA/apex/TE; the local spec runs the plain torch ops.
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
        use_cpu_initialization=on_meta or not torch.cuda.is_available(),
        perform_initialization=not on_meta,
        # The loss is a sum over target tokens; gradients are divided by the global token count in
        # finalize_model_grads, so micro-batches with more target tokens weigh more (= one big batch).
        calculate_per_token_loss=True,
        # Free each stage's output activations once sent (megatron-LM's default), and run backward through
        # the autograd engine directly; the latter also keeps cpu_compat's mode active during backward.
        deallocate_pipeline_outputs=True,
        **recompute,
    )


class RMSNorm(torch.nn.RMSNorm):
    """torch's RMSNorm, buildable from a megatron spec, that also works with sequence parallelism.

    megatron's `WrappedTorchNorm` (the local spec's norm) refuses `sequence_parallel=True`. Nothing in the
    norm itself needs to change: under sequence parallelism each TP rank normalises its slice of the sequence,
    so its weight gradient is partial; marking the weight `sequence_parallel` makes `finalize_model_grads`
    all-reduce it over the TP group. This is not CPU-specific, so it lives here, not in cpu_compat.
    """

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-5, **unused: Any) -> None:
        super().__init__(hidden_size, eps=eps, dtype=config.params_dtype)
        self.weight.sequence_parallel = config.sequence_parallel  # type: ignore[attr-defined]


def _block_spec(config: TransformerConfig, vp_stage: int | None, te: bool = False) -> TransformerBlockSubmodules:
    count = get_num_layers_to_build(config, vp_stage=vp_stage)
    if te:  # the norms are folded into linear_qkv / linear_fc1 (their `layer_norm_weight`); TENorm at the end
        layer, final_norm = te_layer_spec()
        return TransformerBlockSubmodules(layer_specs=[layer] * count, layer_norm=final_norm)
    layer = get_gpt_layer_local_spec(normalization="RMSNorm")
    layer = dataclasses.replace(
        layer,
        submodules=dataclasses.replace(layer.submodules, input_layernorm=RMSNorm, pre_mlp_layernorm=RMSNorm),
    )
    return TransformerBlockSubmodules(layer_specs=[layer] * count, layer_norm=RMSNorm)


def build_model(
    shape: ModelShape, layout: ParallelLayout, options: ModelOptions = ModelOptions(), on_meta: bool = False
) -> list[GPTModel]:
    """The model chunks this rank holds: one per virtual pipeline stage (one without interleaving).

    Randomly initialised (megatron's init, std `options.init_std`); for weights that do not depend on the
    layout, load them with `convert.load_hf_weights`. With CUDA the chunks are on the current GPU.
    `on_meta`: build inside `torch.device("meta")` for shapes only (see `transformer_config`); never moved.
    """
    layout.check(shape, torch.distributed.get_world_size() if torch.distributed.is_initialized() else None)
    config = transformer_config(shape, layout, options, on_meta)
    vocab = padded_vocab_size(shape.vocab_size, layout.tensor, options.vocab_multiple)
    te = not on_meta and use_te(options.attention)  # the at-scale simulation sizes the local layers
    stages: list[int | None] = list(range(layout.virtual_pipeline)) if layout.virtual_pipeline else [None]
    chunks = []
    for vp_stage in stages:
        model = GPTModel(
            config=config,
            transformer_layer_spec=_block_spec(config, vp_stage, te),
            vocab_size=vocab,
            max_sequence_length=shape.max_position_embeddings,
            pre_process=parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage),
            post_process=parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage),
            share_embeddings_and_output_weights=shape.tie_embeddings,
            position_embedding_type="rope",
            rotary_base=shape.rotary_base,  # type: ignore[arg-type]  # a float works; HF bases can be 1e6
            vp_stage=vp_stage,
        )
        setattr(model, PACKED_FORMAT, "thd" if te else "mask")
        if model.post_process and vocab > shape.vocab_size:
            _mask_padded_logits(model, shape.vocab_size, vocab)
        if torch.cuda.is_available() and not on_meta:  # megatron allocates most params on the GPU already, not the norms
            model.cuda(torch.cuda.current_device())
        chunks.append(model)
    return chunks


def _mask_padded_logits(model: GPTModel, vocab_size: int, padded: int) -> None:
    """Push the logits of padding rows to the dtype's minimum, so softmax and the loss ignore them.

    A forward hook on the output layer covers both the logits path and GPTModel's internal loss.
    """
    tp_rank = parallel_state.get_tensor_model_parallel_rank()

    def hook(
        module: torch.nn.Module, args: Any, output: tuple[torch.Tensor, Any]
    ) -> tuple[torch.Tensor, Any]:
        logits, bias = output
        width = logits.shape[-1]
        start = 0 if width == padded else tp_rank * width
        column = torch.arange(start, start + width, device=logits.device)
        return logits.masked_fill(column >= vocab_size, torch.finfo(logits.dtype).min), bias

    model.output_layer.register_forward_hook(hook)


def packed_attention_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """Block-diagonal causal mask for packed rows, in megatron's convention (True = may NOT attend).

    Args:
        segment_ids: [batch, seq] integers, one id per sample in the row (0, 1, ...); negative ids mark
            padding, which attends only to itself (no all-masked softmax row; its loss is ignored anyway).
            Same convention as `hpc_instruct.data.packing`.

    Returns:
        [batch, 1, seq, seq] bool.
    """
    seq = segment_ids.shape[-1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=segment_ids.device).tril()
    valid = segment_ids >= 0
    allowed = (segment_ids[:, :, None] == segment_ids[:, None, :]) & causal & valid[:, None, :]
    allowed |= torch.eye(seq, dtype=torch.bool, device=segment_ids.device) & ~valid[:, :, None]
    return ~allowed[:, None]


def packed_position_ids(segment_ids: torch.Tensor) -> torch.Tensor:
    """Positions restarting at 0 at each segment start ([batch, seq]); what HF models expect for packing.

    megatron's RoPE ignores them (relative positions make it unnecessary, see the module docstring); they are
    passed along so the batch layout is the same for every backend.
    """
    seq = segment_ids.shape[-1]
    index = torch.arange(seq, device=segment_ids.device).expand_as(segment_ids)
    start = torch.ones_like(segment_ids, dtype=torch.bool)
    start[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    first = torch.where(start, index, torch.zeros_like(index)).cummax(dim=-1).values
    return index - first
