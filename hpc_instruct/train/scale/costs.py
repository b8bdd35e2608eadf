"""Time and cost from the per-rank shapes: training FLOPs per token, and how long a resume checkpoint takes to save.

FLOPs (`train_flops_per_token`) count the matmuls every token passes through in the model megatron builds
(`RankParams` of every tensor x pipeline rank of one replica, i.e. with the vocabulary padded for TP): 2 FLOPs
per weight element forward, 4 backward, over QKV, attention projection, FC1 and FC2 of every layer and the
output layer (with tied embeddings and one stage, the embedding is the output layer); the token embedding is a
lookup, norms and biases are element-wise (not counted). Attention adds, per layer and token of a sequence of
length s, QK^T and probabilities x V over the causal half: 2·s·(heads x head dim) forward, x3 with backward
(the same convention as `ModelShape.training_flops`, which the plan uses per sample). Recomputation is not
counted: it is hardware work, not model FLOPs, and MFU is defined on model FLOPs.

Checkpoint save (`checkpoint_save`): a resume checkpoint (`dist_checkpointing`, distributed optimizer) writes
every parameter once (TP-replicated norms and the tied embedding copy once) in the training precision, plus its
fp32 main copy (16-bit training) and Adam's two fp32 moments. At an aggregate filesystem write bandwidth it
takes bytes / bandwidth; on preemption it must fit into the scheduler's warning (submitit signals 90 s before
the end by default).
"""

from __future__ import annotations

from dataclasses import dataclass

from hpc_instruct.train.scale.memory import GIB, SAVE_MARGIN_S
from hpc_instruct.train.scale.ranks import LayoutKey, RankParams

FS_WRITE_GBPS = 2.0  # stated assumption: aggregate write bandwidth (GB/s, 1e9 bytes) one training job gets
SUBMITIT_WARNING_S = 90  # submitit's default slurm_signal_delay_s: SIGUSR2 this long before the end


def unique_params(key: LayoutKey, ranks: tuple[RankParams, ...]) -> int:
    """Parameters of one model replica as megatron holds them (padded vocabulary), each stored once."""
    h = key.shape.hidden_size
    copies = sum(2 * h * r.layers + r.final_norm for r in ranks if r.tp_rank > 0)  # replicated norms
    return sum(r.params - r.tied_copy for r in ranks) - copies


def train_flops_per_token(key: LayoutKey, ranks: tuple[RankParams, ...], seq_len: int) -> float:
    """Model FLOPs (forward + backward) per trained token; see the module docstring."""
    s, h = key.shape, key.shape.hidden_size
    bias = (s.num_attention_heads + 2 * s.num_query_groups) * s.head_dim // key.tp if s.family == "qwen2" else 0
    tied_one_stage = s.tie_embeddings and key.pp == 1  # the embedding doubles as the output layer
    matmul = sum(r.decoder - r.layers * (2 * h + bias) + r.output_layer + (r.embedding if tied_one_stage else 0)
                 for r in ranks)
    attention = 2 * seq_len * s.num_attention_heads * s.head_dim * s.num_layers  # causal half
    return 3.0 * (2.0 * matmul + attention)


@dataclass(frozen=True)
class CheckpointSave:
    """A resume checkpoint's size and save time against the preemption warning."""

    bytes: int
    fs_gbps: float
    warning_s: float
    node_seconds: float | None = None  # when every node writes its own ranks' shards at fs_gbps (megatron's save)

    @property
    def seconds(self) -> float:
        return self.node_seconds if self.node_seconds is not None else self.bytes / (self.fs_gbps * 1e9)

    @property
    def needed_warning_s(self) -> int:
        """What the warning signal must leave: 1.5x the estimate plus the step in flight (validate's rule)."""
        return int(1.5 * self.seconds + SAVE_MARGIN_S)

    @property
    def fits_warning(self) -> bool:
        return self.needed_warning_s <= self.warning_s

    def describe(self) -> str:
        verdict = "within" if self.fits_warning else "LONGER THAN"
        return (f"{self.bytes / GIB:.0f} GiB, ~{self.seconds:.0f} s at {self.fs_gbps:g} GB/s, {verdict} the "
                f"{self.warning_s:g} s preemption warning")


def checkpoint_save(key: LayoutKey, ranks: tuple[RankParams, ...], value_bytes: int,
                    fs_gbps: float = FS_WRITE_GBPS, warning_s: float = SUBMITIT_WARNING_S,
                    node_seconds: float | None = None) -> CheckpointSave:
    """Size and save time of a resume checkpoint (weights of `value_bytes`, fp32 main params, Adam moments).
    `node_seconds`: the time when nodes write in parallel (`memory.save_seconds` of the fullest node)."""
    per_param = value_bytes + (4 if value_bytes < 4 else 0) + 8
    return CheckpointSave(per_param * unique_params(key, ranks), fs_gbps, warning_s, node_seconds)
