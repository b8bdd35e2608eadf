"""Memory of a training rank, a training node and an eval GPU, in bytes, by part.

Static GPU memory follows what `hpc_instruct.train.megatron.parallel.Trainer` allocates (megatron-core DDP with
`grad_reduce_in_fp32=True` and `get_megatron_optimizer`, Adam):
- weights: 2 bytes/param in bf16/fp16, 4 in fp32 (with the distributed optimizer they live in DDP's param
  buffer, which is not a second copy);
- gradients: DDP's contiguous fp32 buffer; with the distributed optimizer its end is padded to a multiple of
  lcm(dp, 128) (megatron pads each parameter's start to 64 elements too: < 64 elements per tensor, ignored);
- optimizer: fp32 main parameters (bf16/fp16 only) + Adam's two fp32 moments: 12 (or 8) bytes/param, divided
  over the data-parallel ranks by the distributed optimizer.

Activations follow Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models"
(arXiv 2205.05198): per layer and micro-batch of b sequences of s tokens, their GPT layer stores
sbh(34/t + 5as/(ht)) bytes with tensor parallelism t and sequence parallelism; selective recomputation drops
the 5as/h term (the attention scores), full recomputation keeps only the layer input (2sbh/t). We redo the
count for the layer this project builds (RMSNorm, SwiGLU with ffn width f, grouped-query attention expanded to
a heads inside megatron's local attention, softmax in fp32, no dropout), q = bytes per activation value:
    norms/linear inputs   4·q·sbh / t_sp       (input norm, QKV input, pre-MLP norm, FC1 input; t_sp = t with SP)
    attention             4·q·sbh / t          (q, expanded k, expanded v, context)
    SwiGLU MLP            4·q·sbf / t          (FC1 output 2f, silu output, product = FC2 input)
    scores                (4 + q)·a·s²·b / t   (fp32 softmax output, probabilities in q)
Selective recomputation keeps the attention inputs (q, k, v at their own widths) instead of the scores;
full recomputation keeps q·sbh/t_sp per layer plus one layer's full set while it is recomputed. Under the 1F1B
schedule pipeline rank i holds min(pp - i, m) micro-batches in flight (interleaved: megatron's warm-up count
(pp - i - 1)·2 + (v - 1)·pp, plus one, chunks of L/(pp·v) layers; Korthikanti's L(1 + (p-1)/(pv)) for i = 0).
The last stage adds the logits (q·sbV/t) and the fp32 cross entropy (2·4·sbV/t).

Fixed costs are stated, not measured here: FRAMEWORK_GIB per GPU (CUDA context, NCCL communicators, cuBLAS
workspace) and a FRAGMENTATION share of the modelled tensors for the caching allocator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

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
    h, f, a = shape.hidden_size, shape.ffn_hidden_size, shape.num_attention_heads
    kv = shape.num_query_groups * shape.head_dim
    t_sp = t if setup.sequence_parallel else 1
    mode = setup.recompute if recompute is None else recompute
    if mode == "full":
        return q * s * b * h // t_sp
    inputs = 4 * q * s * b * h // t_sp
    mlp = 4 * q * s * b * f // t
    if mode == "selective":
        return inputs + mlp + q * s * b * (2 * h + 2 * kv) // t
    return inputs + mlp + 4 * q * s * b * h // t + (4 + q) * a * s * s * b // t


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
    n, q, dp = rank.params, setup.value_bytes, setup.dp
    shape, key = setup.key.shape, setup.key
    s, b = setup.seq_len, setup.micro_batch
    t_sp = key.tp if setup.sequence_parallel else 1
    buffer = n
    if setup.distributed_optimizer:
        step = math.lcm(dp, 128)
        buffer = -(-n // step) * step
    shard = dp if setup.distributed_optimizer else 1
    optimizer = (12 if setup.precision != "fp32" else 8) * buffer // shard
    per_chunk = rank.chunk_layers[0] if rank.chunk_layers else 0
    held = in_flight(setup, rank.pp_rank) * per_chunk * layer_activation_bytes(setup)
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
    tensors = q * n + 4 * buffer + optimizer + held + logits + comm
    return Breakdown((
        ("weights", q * n),
        ("grads", 4 * buffer),
        ("optimizer", optimizer),
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
    """One eval task: the model on one GPU in bf16, generating for `batch_size` prompts."""

    shape_params: int  # the HF model's parameters (unpadded vocabulary)
    num_layers: int
    kv_width: int  # key/value groups x head dim
    hidden_size: int
    ffn_hidden_size: int
    vocab_size: int
    batch_size: int
    max_length: int  # prompt tokens at most (the training max_length)
    max_new_tokens: int


def gpu_eval(setup: EvalSetup) -> Breakdown:
    """Weights + KV cache at the eval batch size and the longest prompt plus reply, on one GPU (bf16).

    KV cache: 2 (keys, values) x layers x kv_width x 2 bytes per token, for batch x (max_length +
    max_new_tokens) tokens. Working set: one layer's prefill (SwiGLU intermediate, 3 x f wide, bf16) and the
    last position's fp32 logits.
    """
    tokens = setup.batch_size * (setup.max_length + setup.max_new_tokens)
    weights = 2 * setup.shape_params
    kv = 2 * setup.num_layers * setup.kv_width * 2 * tokens
    work = 3 * 2 * setup.batch_size * setup.max_length * setup.ffn_hidden_size + 4 * setup.batch_size * setup.vocab_size
    tensors = weights + kv + work
    return Breakdown((("weights", weights), ("kv cache", kv), ("prefill", work),
                      ("framework", int(FRAMEWORK_GIB * GIB)), ("margin", int(FRAGMENTATION * tensors))))


SAVE_MARGIN_S = 60  # the step in flight when the signal arrives, and the ranks agreeing to save


def save_seconds(setup: TrainSetup, rank: RankParams, filesystem_gbps: float) -> float:
    """Time of a synchronous resume save: a node's bytes (every rank writes its own) over the node's bandwidth."""
    return setup.ranks_per_node * checkpoint_bytes(setup, rank) / (filesystem_gbps * 1e9)
