"""Model shapes: size presets from tiny CPU models up to 70B, in the Llama / Qwen2 decoder shape.

Torch-free on purpose: `hpci plan` reads shapes to validate parallelism (TP must divide heads and query
groups, PP must divide layers) and to estimate FLOPs, on a login node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer (RMSNorm, SwiGLU, RoPE, grouped-query attention, untied embeddings)."""

    family: str  # "llama" | "qwen2" (qwen2 adds biases on q/k/v)
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_query_groups: int  # = heads for multi-head attention, fewer for GQA
    ffn_hidden_size: int
    vocab_size: int
    max_position_embeddings: int = 4096
    rotary_base: float = 10000.0
    norm_epsilon: float = 1e-6
    tie_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_parameters(self) -> int:
        """Exact parameter count of the shape (embeddings and output layer counted once each unless tied)."""
        h, f, v = self.hidden_size, self.ffn_hidden_size, self.vocab_size
        kv = self.num_query_groups * self.head_dim
        attn = h * h + 2 * h * kv + h * h  # q, k, v, o
        if self.family == "qwen2":
            attn += h + 2 * kv  # q/k/v biases
        mlp = 3 * h * f  # gate, up, down
        norms = 2 * h
        embed = v * h * (1 if self.tie_embeddings else 2)
        return self.num_layers * (attn + mlp + norms) + embed + h

    @property
    def matmul_parameters(self) -> int:
        """Weights that take part in a matrix product per token: every layer's projections and the output layer.

        The input embedding is a table lookup (no FLOPs), so it is left out even when tied to the output
        layer (then the one matrix is counted once, as the output layer); norms and biases are elementwise.
        """
        h, kv = self.hidden_size, self.num_query_groups * self.head_dim
        per_layer = 2 * h * h + 2 * h * kv + 3 * h * self.ffn_hidden_size  # q, o; k, v; gate, up, down
        return self.num_layers * per_layer + self.vocab_size * h

    def training_flops(self, tokens: int, squares: int) -> float:
        """Model FLOPs of one training pass (forward + backward = 3 x forward) over `tokens` tokens.

        Matmuls: 2 FLOPs per weight per token forward, so 6 x `matmul_parameters` x tokens. Attention scores
        and their weighted sum: 2 x 2·l²·h per layer forward for a sample of length l, halved by the causal
        mask, x3 for training: 6·L·h·l². Packed rows hold several samples that attend only within
        themselves, so `squares` is the sum of l² over the samples, not the rows.
        """
        return 6.0 * self.matmul_parameters * tokens + 6.0 * self.num_layers * self.hidden_size * squares

    def flops_per_token(self, seq_len: int) -> float:
        """`training_flops` per token when every sample is `seq_len` long (planning, before the data exists)."""
        return self.training_flops(1, seq_len)


_LLAMA1_VOCAB = 49953  # Chinese-LLaMA-Plus (DoIT's base models)

PRESETS: dict[str, ModelShape] = {
    # Tiny CPU models for the embedded default and the tests (vocab is replaced by the tokenizer's size).
    "micro": ModelShape("llama", 2, 32, 2, 2, 88, 512, 512),
    "tiny": ModelShape("llama", 2, 64, 4, 4, 176, 512, 512),
    "tiny-gqa": ModelShape("llama", 4, 64, 4, 2, 176, 512, 512),
    "mid": ModelShape("llama", 3, 96, 4, 4, 256, 512, 512),
    "mini": ModelShape("llama", 4, 128, 8, 4, 352, 512, 1024),
    "small": ModelShape("llama", 8, 256, 8, 4, 688, 512, 1024),
    # LLaMA-1 shapes as used by DoIT (Chinese-LLaMA-Plus vocabulary).
    "7b": ModelShape("llama", 32, 4096, 32, 32, 11008, _LLAMA1_VOCAB, 2048, norm_epsilon=1e-6),
    "13b": ModelShape("llama", 40, 5120, 40, 40, 13824, _LLAMA1_VOCAB, 2048, norm_epsilon=1e-6),
    "33b": ModelShape("llama", 60, 6656, 52, 52, 17920, _LLAMA1_VOCAB, 2048, norm_epsilon=1e-6),
    "70b": ModelShape("llama", 80, 8192, 64, 8, 28672, 32000, 4096, norm_epsilon=1e-5),
    # Qwen2 shapes for modern base models.
    "qwen2-0.5b": ModelShape("qwen2", 24, 896, 14, 2, 4864, 151936, 32768, 1e6, 1e-6, True),
    "qwen2-1.5b": ModelShape("qwen2", 28, 1536, 12, 2, 8960, 151936, 32768, 1e6, 1e-6, True),
    "qwen2-7b": ModelShape("qwen2", 28, 3584, 28, 4, 18944, 152064, 32768, 1e6, 1e-6, False),
}


def preset(name: str, family: str | None = None, vocab_size: int | None = None) -> ModelShape:
    """The shape of a preset, optionally with another family or vocabulary size (a tokenizer's)."""
    shape = PRESETS[name]
    if family is not None and family != shape.family:
        shape = replace(shape, family=family)
    if vocab_size is not None:
        shape = replace(shape, vocab_size=vocab_size)
    return shape


def padded_vocab_size(vocab_size: int, tensor_parallel: int, multiple: int) -> int:
    """Vocabulary rounded up so each TP rank holds an equal slice (e.g. 49953 -> 50048 with multiple 128).

    Torch-free so the at-scale planner (`hpc_instruct.train.scale`) counts the same rows megatron builds.
    """
    step = math.lcm(multiple, tensor_parallel)
    return -(-vocab_size // step) * step
