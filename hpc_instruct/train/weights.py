"""Initial weights, in HF tensor names, that every backend and every parallel layout starts from.

A trial starts either from a base model's HF folder (`model.path`) or, for the size presets, from a seeded
random init. Both are presented as a lazy mapping from HF names to full tensors: the Megatron backend reads
only the tensors of its pipeline stage and slices its TP shard, the HF backends load the whole state dict.
Because the init is defined per tensor, not by a module's construction order, TP=1, TP=2, PP=2, HF and
DeepSpeed start from bit-identical weights, so their loss curves are comparable.

Random init: each tensor is drawn from its own generator seeded by (seed, tensor name): normal(0, std) for
matrices (HF's `initializer_range`, 0.02), ones for norms, zeros for biases.

Vocabulary growth: the DoIT template adds `<user>`, `<assistant>`, `<eot>` to a base model's tokenizer; the
embedding and output rows for new tokens are the mean of the existing rows (HF's `mean_resizing`, without
its random noise, so it is deterministic).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from hpc_instruct.train.presets import ModelShape

VOCAB_TENSORS = ("model.embed_tokens.weight", "lm_head.weight")


def hf_tensor_shapes(shape: ModelShape) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the HF Llama/Qwen2 model of `shape` (tied output layer omitted)."""
    h, f, v, hd = shape.hidden_size, shape.ffn_hidden_size, shape.vocab_size, shape.head_dim
    q, kv = shape.num_attention_heads * hd, shape.num_query_groups * hd
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for i in range(shape.num_layers):
        p = f"model.layers.{i}."
        out.update({
            p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q),
            p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h), p + "mlp.down_proj.weight": (h, f),
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
        })  # fmt: skip
        if shape.family == "qwen2":
            out.update({p + "self_attn.q_proj.bias": (q,), p + "self_attn.k_proj.bias": (kv,),
                        p + "self_attn.v_proj.bias": (kv,)})  # fmt: skip
    out["model.norm.weight"] = (h,)
    if not shape.tie_embeddings:
        out["lm_head.weight"] = (v, h)
    return out


class SeededInit(Mapping[str, torch.Tensor]):
    """The random init of `shape` for `seed`: each tensor generated on access, identically on every rank."""

    def __init__(self, shape: ModelShape, seed: int, std: float = 0.02) -> None:
        self.shape, self.seed, self.std = shape, seed, std
        self._shapes = hf_tensor_shapes(shape)

    def __getitem__(self, name: str) -> torch.Tensor:
        size = self._shapes[name]
        if name.endswith("norm.weight"):
            return torch.ones(size)
        if name.endswith(".bias"):
            return torch.zeros(size)
        key = int.from_bytes(hashlib.sha256(f"{self.seed}:{name}".encode()).digest()[:8], "little") >> 1
        return torch.randn(size, generator=torch.Generator().manual_seed(key)) * self.std

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)


class VocabResized(Mapping[str, torch.Tensor]):
    """`weights` with the embedding (and output) rows grown to `vocab` by mean rows; other tensors as is."""

    def __init__(self, weights: Mapping[str, torch.Tensor], vocab: int) -> None:
        self.weights, self.vocab = weights, vocab

    def __getitem__(self, name: str) -> torch.Tensor:
        tensor = self.weights[name]
        if name in VOCAB_TENSORS and tensor.shape[0] < self.vocab:
            extra = self.vocab - tensor.shape[0]
            mean = tensor.float().mean(0, keepdim=True).to(tensor.dtype)
            tensor = torch.cat([tensor, mean.expand(extra, -1)])
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self.weights)

    def __len__(self) -> int:
        return len(self.weights)


def base_shape(path: str | Path) -> ModelShape:
    """The shape of the HF model folder at `path` (its config.json)."""
    import json

    from hpc_instruct.train.megatron.convert import shape_from_hf_config

    config = Path(path) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{path} has no config.json: model.path must be an HF model folder")
    return shape_from_hf_config(json.loads(config.read_text()))


def initial_weights(shape: ModelShape, seed: int, path: str | Path | None) -> Mapping[str, torch.Tensor]:
    """What a trial starts from: the folder's weights (grown to `shape.vocab_size`), or the seeded init."""
    if path is None:
        return SeededInit(shape, seed)
    from hpc_instruct.train.megatron.convert import HFWeights

    weights: Mapping[str, torch.Tensor] = HFWeights(path)
    return VocabResized(weights, shape.vocab_size)
