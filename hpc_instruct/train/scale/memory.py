"""Memory of a training rank, a training node and an eval GPU, in bytes, by part.

Static GPU memory (weights, gradient buffers, optimizer state) is exact: `buffers` lays the parameters out
the way megatron-core's DDP and distributed optimizer do (`hpc_instruct.train.megatron.parallel.Trainer`:
`grad_reduce_in_fp32=True`, `get_megatron_optimizer`, Adam), per-parameter and per-bucket padding included,
and takes the DP rank whose shard holds the most; a real training step matches it byte for byte
(tests/train/test_scale_measure.py).

Activations follow the method of Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models" (arXiv 2205.05198): count every tensor autograd keeps for backward, per layer and
micro-batch of b sequences of s tokens, with tensor parallelism t (t_sp = t under sequence parallelism, else
1). Their GPT layer keeps sbh(34/t + 5as/(ht)) bytes in 16-bit; the layer this project builds (megatron-core's
local spec: torch RMSNorm, SwiGLU of width f, grouped-query attention expanded to a heads, fp32 softmax, no
dropout) keeps, with q bytes per 16-bit value, d the head dim and kv = groups·d (counted tensor by tensor with
`measure.saved_activations`; the tests hold the formulas to within ±20% of a real forward, measured ≤ 1%):
    2 RMSNorms        2·(8·sbh + 4·sb) / t_sp   (torch's RMSNorm keeps its fp32 input, fp32 normalised value, rstd)
    QKV, FC1 inputs   2·q·sbh / t_sp
    attention         q·sb(2h + v) / t + q·sbh / t  (q and k after RoPE, v, the context = projection input;
                      v = h expanded with grouped-query attention, with multi-head attention a view that keeps
                      the whole fused QKV output, v = h + 2kv)
    RoPE              4·q·s·d                   (cos and sin, for q and k)
    scores            (4 + q)·a·s²·b / t + s²   (fp32 softmax output, probabilities, the bool causal mask)
    SwiGLU MLP        5·q·sbf / t               (FC1 output 2f, silu output, megatron's `x_linear + 0` copy, FC2 input)
Selective recomputation (megatron's core-attention checkpoint) keeps the checkpoint's inputs instead of the
scores: q and k after RoPE (q·sb(h + kv)/t) and v, a view that keeps the whole fused QKV output
(q·sb(h + 2kv)/t) alive. Full recomputation keeps each layer's input (q·sbh/t_sp) and, in backward, one layer's
no-recompute set while it is recomputed. The last stage keeps the final norm's and the output layer's inputs
and the cross entropy's fp32 softmax (4·sbV/t) with its targets (9·sb); the first keeps the token ids (8·sb).
Under the 1F1B schedule pipeline rank i holds min(pp - i, m) micro-batches in flight (interleaved: megatron's
warm-up count (pp - i - 1)·2 + (v - 1)·pp, plus one, chunks of L/(pp·v) layers; Korthikanti's
L(1 + (p-1)/(pv)) for i = 0). The last stage's logits peak at (q + 8)·sbV/t during the loss (16-bit logits,
their fp32 copy, the shifted fp32 copy that becomes the saved softmax).

Fixed costs are stated, not measured here: FRAMEWORK_GIB per GPU (CUDA context, NCCL communicators, cuBLAS
workspace) and a FRAGMENTATION share of the modelled tensors for the caching allocator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from hpc_instruct.train.scale.buffers import fullest_static
from hpc_instruct.train.scale.gpu import Precision
from hpc_instruct.train.scale.ranks import LayoutKey, RankParams

GIB = 2**30
FRAMEWORK_GIB = 2.0  # per GPU process: CUDA context ~0.5, NCCL buffers ~0.5-1, cuBLAS/allocator workspaces
FRAGMENTATION = 0.05  # share of modelled GPU tensors lost to the caching allocator
HOST_RANK_GIB = 3.0  # per training process on the host: Python, torch + CUDA libraries, data loader, pinned buffers

Recompute = Literal["none", "selective", "full"]


@dataclass(frozen=True)
class Breakdown:
    """A memory figure and its parts, in bytes."""

    parts: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(b for _, b in self.parts)

    @property
    def gib(self) -> float:
        return self.total / GIB

    def describe(self) -> str:
        return f"{self.gib:.1f} GiB = " + " + ".join(f"{name} {b / GIB:.1f}" for name, b in self.parts if b)


@dataclass(frozen=True)
class TrainSetup:
    """What, besides the parameters, decides a training rank's memory."""

    key: LayoutKey
    dp: int = 1
    nodes: int = 1
    micro_batch: int = 1
    global_batch: int = 1
    seq_len: int = 2048
    precision: Precision = "bf16"
    recompute: Recompute = "full"
    sequence_parallel: bool = False
    distributed_optimizer: bool = True

    @property
    def world(self) -> int:
        return self.key.tp * self.key.pp * self.dp

    @property
    def ranks_per_node(self) -> int:
        return self.world // self.nodes

    @property
    def micro_batches(self) -> int:
        """Micro-batches per optimizer step on each DP rank (gradient accumulation)."""
        return max(1, self.global_batch // (self.micro_batch * self.dp))

    @property
    def value_bytes(self) -> int:
        return 4 if self.precision == "fp32" else 2


def layer_activation_bytes(setup: TrainSetup, recompute: Recompute | None = None) -> int:
    """Bytes one decoder layer keeps for backward per micro-batch (see the module docstring)."""
    s, b, q, t = setup.seq_len, setup.micro_batch, setup.value_bytes, setup.key.tp
    shape = setup.key.shape
    h, f, a, d = shape.hidden_size, shape.ffn_hidden_size, shape.num_attention_heads, shape.head_dim
    kv = shape.num_query_groups * d
    t_sp = t if setup.sequence_parallel else 1
    mode = setup.recompute if recompute is None else recompute
    sb = s * b
    if mode == "full":
        return q * sb * h // t_sp
    norms = 2 * (8 * sb * h + 4 * sb) // t_sp + 2 * q * sb * h // t_sp
    mlp = 5 * q * sb * f // t
    context = q * sb * h // t + 4 * q * s * d
    if mode == "selective":
        return norms + mlp + context + q * sb * (2 * h + 3 * kv) // t
    # q and k after RoPE are copies; v is expanded to a heads (a copy) only with grouped-query attention,
    # with multi-head attention it stays a view of the fused QKV output, which then stays alive whole.
    v = h if kv < h else h + 2 * kv
    return norms + mlp + context + q * sb * (2 * h + v) // t + (4 + q) * a * s * s * b // t + s * s


def head_activation_bytes(setup: TrainSetup) -> int:
    """Bytes the last stage keeps after the layers per micro-batch: final norm, output-layer input, loss."""
    q, t = setup.value_bytes, setup.key.tp
    h, sb = setup.key.shape.hidden_size, setup.seq_len * setup.micro_batch
    t_sp = t if setup.sequence_parallel else 1
    return (8 * sb * h + 4 * sb + q * sb * h) // t_sp + 4 * sb * setup.key.padded_vocab // t + 9 * sb


def embedding_activation_bytes(setup: TrainSetup) -> int:
    """Bytes the first stage keeps before the layers per micro-batch: the token ids (int64)."""
    return 8 * setup.seq_len * setup.micro_batch


def in_flight(setup: TrainSetup, pp_rank: int) -> int:
    """Chunk-micro-batches whose activations pipeline rank `pp_rank` holds at its peak (megatron's schedules)."""
    pp, v, m = setup.key.pp, setup.key.vpp, setup.micro_batches
    if pp == 1:
        return 1
    if v == 1:
        return min(pp - pp_rank, m)
    return min((pp - pp_rank - 1) * 2 + (v - 1) * pp + 1, m * v)


def gpu_train(setup: TrainSetup, rank: RankParams) -> Breakdown:
    """Peak GPU memory of one training rank during a step."""
    q = setup.value_bytes
    shape, key = setup.key.shape, setup.key
    s, b = setup.seq_len, setup.micro_batch
    t_sp = key.tp if setup.sequence_parallel else 1
    static = fullest_static(rank.tensors, rank.shared, setup.dp, q, setup.distributed_optimizer)
    per_chunk = rank.chunk_layers[0] if rank.chunk_layers else 0
    flight = in_flight(setup, rank.pp_rank)
    held = flight * per_chunk * layer_activation_bytes(setup)
    if rank.embedding:
        held += flight * embedding_activation_bytes(setup)
    if rank.final_norm:  # the softmax it keeps is part of the logits peak below
        held += head_activation_bytes(setup) - 4 * s * b * key.padded_vocab // key.tp
    if setup.recompute == "full" and rank.layers:
        held += layer_activation_bytes(setup, "none")  # the layer being recomputed in backward
    logits = 0
    if rank.output_layer or rank.final_norm:
        logits = (q + 8) * s * b * key.padded_vocab // key.tp
    comm = 0
    if key.pp > 1:
        comm += 2 * q * s * b * shape.hidden_size // t_sp  # p2p send + receive buffers
    if setup.sequence_parallel:
        comm += q * s * b * shape.hidden_size  # all-gathered sequence for the column-parallel inputs
    tensors = static.total + held + logits + comm
    return Breakdown((
        ("weights", static.weights),
        ("grads", static.grads),
        ("optimizer", static.optimizer),
        ("activations", held),
        ("logits", logits),
        ("comm", comm),
        ("framework", int(FRAMEWORK_GIB * GIB)),
        ("margin", int(FRAGMENTATION * tensors)),
    ))


WRITE_FILE_BYTES = 2**30  # resume checkpoint: optimizer shard files of ~1 GiB (`optimizer_shards.FILE_BYTES`)
EXPORT_SHARD_BYTES = 5 * 10**9  # HF export: safetensors files of at most 5 GB (`train.megatron.convert`)


def host_train(setup: TrainSetup, rank: RankParams, export_bytes: int = 2) -> Breakdown:
    """Peak host memory of one training node: its processes plus the largest checkpoint/export transient.

    - resume checkpoint save (`train.megatron.checkpoint`, `optimizer_shards`): no gather; every rank stages
      its own shard of the fp32 main parameters and both moments (12/dp bytes/param) on the host, and the
      safetensors writer a serialised copy of one ~1 GiB file of it (`optimizer_shards.FILE_BYTES`); with the distributed optimizer the weights'
      writes are spread over the DP ranks (q/dp bytes/param each). Without it, megatron's model-space
      optimizer state (12 bytes/param, replicated over DP) is spread the same way;
    - load: the rank's own optimizer shard (12/dp) read into host tensors, and its share of the weights
      (q/dp bytes/param: megatron's fully parallel load reads 1/dp per rank and exchanges the rest on device);
    - HF export (`convert.save_hf_folder`): only the writer of each pipeline stage (TP rank 0 of DP rank 0)
      copies tensors to the host, already cast to the export dtype, and writes a file whenever EXPORT_SHARD_BYTES
      are collected: at most one shard in tensors plus its serialisation buffer, plus the largest tensor.
    """
    n, q, tp, dp = rank.params, setup.value_bytes, setup.key.tp, setup.dp
    per_node = setup.ranks_per_node
    writers = max(1, math.ceil(setup.key.pp / setup.nodes))
    shard = 12 * n // dp  # fp32 main weights (or the fp32 weights themselves) + two fp32 moments
    save = per_node * (shard + min(shard, WRITE_FILE_BYTES) + q * n // dp)
    load = per_node * (shard + q * n // dp)
    largest = export_bytes * setup.key.padded_vocab * setup.key.shape.hidden_size
    export = writers * (2 * min(EXPORT_SHARD_BYTES + largest, export_bytes * tp * n) + largest)
    phase, transient = max((("checkpoint save", save), ("checkpoint load", load), ("HF export", export)),
                           key=lambda kv: kv[1])
    return Breakdown((("processes", int(per_node * HOST_RANK_GIB * GIB)), (phase, transient)))


def checkpoint_bytes(setup: TrainSetup, rank: RankParams) -> int:
    """Bytes one rank writes to a resume checkpoint: its share of the weights and of the optimizer state."""
    n, q, dp = rank.params, setup.value_bytes, setup.dp
    return (q * n + 12 * n) // dp  # weights + fp32 main weights (the weights in fp32) and two fp32 moments


@dataclass(frozen=True)
class EvalSetup:
    """One eval task: the model in bf16 over `tp` GPUs (tensor parallel), generating for `batch_size` prompts."""

    shape_params: int  # the HF model's parameters (unpadded vocabulary)
    num_layers: int
    kv_width: int  # key/value groups x head dim
    hidden_size: int
    ffn_hidden_size: int
    vocab_size: int
    batch_size: int
    max_length: int  # prompt tokens at most (the training max_length)
    max_new_tokens: int
    tp: int = 1  # GPUs the model is split over (transformers' tensor-parallel plan, one rank per GPU)


EVAL_TP_SIZES = (1, 2, 4, 8)  # tensor-parallel widths an eval task may use (powers of two inside a node)


def gpu_eval(setup: EvalSetup) -> Breakdown:
    """Weights + KV cache of one eval GPU at the eval batch size and the longest prompt plus reply (bf16).

    Tensor parallelism (`setup.tp`, transformers' plan for Llama/Qwen2): attention and MLP projections and the
    output layer are split over the ranks; the input embedding and the norms are replicated on each
    (an output layer tied to the embedding counts once, replicated). KV cache:
    2 (keys, values) x layers x kv_width / tp x 2 bytes per token, for batch x (max_length + max_new_tokens)
    tokens. Working set: one layer's prefill (SwiGLU intermediate, 3 x f / tp wide, bf16) and the last
    position's fp32 logits (gathered over the ranks, so full width).
    """
    t = setup.tp
    embedding = setup.vocab_size * setup.hidden_size
    weights = 2 * (embedding + (setup.shape_params - embedding) // t) if t > 1 else 2 * setup.shape_params
    tokens = setup.batch_size * (setup.max_length + setup.max_new_tokens)
    kv = 2 * setup.num_layers * setup.kv_width * 2 * tokens // t
    work = (3 * 2 * setup.batch_size * setup.max_length * setup.ffn_hidden_size // t
            + 4 * setup.batch_size * setup.vocab_size)
    tensors = weights + kv + work
    return Breakdown((("weights", weights), ("kv cache", kv), ("prefill", work),
                      ("framework", int(FRAMEWORK_GIB * GIB)), ("margin", int(FRAGMENTATION * tensors))))


def forward_activation_bytes(setup: TrainSetup, layers: int, first: bool = True, last: bool = True) -> int:
    """Bytes saved for backward by one micro-batch's forward through `layers` decoder layers (what
    `measure.saved_activations` counts): the layers, plus the token ids on the first and the head on the last
    stage. The recompute-in-backward extra and the logits' transient peak are not included."""
    return (layers * layer_activation_bytes(setup) + (embedding_activation_bytes(setup) if first else 0)
            + (head_activation_bytes(setup) if last else 0))


def eval_tp(setup: EvalSetup, gpu_gib: float, heads: int, kv_heads: int, per_node: int) -> int | None:
    """The fewest GPUs (a tensor-parallel width in `EVAL_TP_SIZES` dividing the attention heads and key/value
    heads, at most `per_node`) whose fullest rank holds the eval working set; None when no width fits."""
    for t in EVAL_TP_SIZES:
        if t > per_node or heads % t or kv_heads % t:
            continue
        if gpu_eval(replace(setup, tp=t)).gib <= gpu_gib:
            return t
    return None


SAVE_MARGIN_S = 60  # the step in flight when the signal arrives, and the ranks agreeing to save


def save_seconds(setup: TrainSetup, rank: RankParams, filesystem_gbps: float) -> float:
    """Time of a synchronous resume save: a node's bytes (every rank writes its own) over the node's bandwidth."""
    return setup.ranks_per_node * checkpoint_bytes(setup, rank) / (filesystem_gbps * 1e9)
