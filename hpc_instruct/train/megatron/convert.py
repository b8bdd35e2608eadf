"""HF <-> Megatron weights for the Llama and Qwen2 families, a direct name/shape mapping.

Import (`load_hf_weights`): every rank copies its own TP shard of the layers its pipeline stage holds, reading
only those tensors (lazily, from safetensors, for big models). Export (`save_hf_folder`): the TP group of DP
rank 0 gathers its shards (cast to the export dtype on the device first), and one writer per pipeline stage
streams them into safetensors files of at most 5 GB of a standard sharded HF folder
(`model-0000k-of-0000n.safetensors` + index + `config.json`), so no rank ever holds the whole model and
DP replicas hold nothing.

Layouts (megatron-core local spec, per layer):
- `self_attention.linear_qkv`: q, k, v fused per query group: for each of the `g` groups, its `heads/g` query
  heads, then its key head, then its value head. TP splits whole groups, so shards are contiguous.
- `mlp.linear_fc1`: gate and up fused; each TP shard is [gate shard; up shard] (silu applies to the first half).
- `linear_proj`, `linear_fc2`: row-parallel (split along the input dim); embeddings and output layer:
  vocab-parallel (rows, padded to `padded_vocab_size`); norms replicated (with Transformer Engine layers they
  live inside `linear_qkv` / `linear_fc1` as `layer_norm_weight`).
Megatron's default (non-interleaved) RoPE is HF's `rotate_half`, so q/k need no permutation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hpc_instruct.train.presets import ModelShape

if TYPE_CHECKING:
    from megatron.core.models.gpt import GPTModel

# megatron-core is imported inside the functions that shard or gather: the HF-only parts (`hf_config`,
# `shape_from_hf_config`, `HFWeights`) also serve the hf and deepspeed backends, which do not need it.

_HF_LAYER = "model.layers.{}."
# Per-layer tensors that map one to one (megatron name -> HF name, both relative to the layer).
_ONE_TO_ONE = {
    "input_layernorm.weight": "input_layernorm.weight",
    "pre_mlp_layernorm.weight": "post_attention_layernorm.weight",
    "self_attention.linear_proj.weight": "self_attn.o_proj.weight",
    "mlp.linear_fc2.weight": "mlp.down_proj.weight",
    # Transformer Engine spec (`te`): the same norms, folded into the linear layer that follows them.
    "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
    "mlp.linear_fc1.layer_norm_weight": "post_attention_layernorm.weight",
}


def shape_from_hf_config(config: Any) -> ModelShape:
    """The `ModelShape` of a transformers Llama/Qwen2 config (object or config.json dict)."""
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    family = get("model_type")
    if family not in ("llama", "qwen2"):
        raise ValueError(f"unsupported model_type {family!r}: the Megatron backend converts llama and qwen2")
    if family == "llama" and (get("attention_bias") or get("mlp_bias")):
        raise ValueError("Llama variants with attention/MLP biases are not supported")
    # transformers 5 keeps RoPE settings in `rope_parameters` (`rope_scaling` is its alias); 4.x has
    # `rope_theta` plus an optional `rope_scaling`.
    rope = get("rope_parameters") or get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ValueError("RoPE scaling (Llama 3.1 style, YaRN) is not supported by this converter")
    heads = get("num_attention_heads")
    head_dim = get("head_dim") or get("hidden_size") // heads
    if head_dim * heads != get("hidden_size"):
        raise ValueError("head_dim x heads != hidden_size is not expressible as a ModelShape")
    rope_theta = rope.get("rope_theta") or get("rope_theta") or 10000.0
    return ModelShape(
        family=family,
        num_layers=get("num_hidden_layers"),
        hidden_size=get("hidden_size"),
        num_attention_heads=heads,
        num_query_groups=get("num_key_value_heads") or heads,
        ffn_hidden_size=get("intermediate_size"),
        vocab_size=get("vocab_size"),
        max_position_embeddings=get("max_position_embeddings"),
        rotary_base=float(rope_theta),
        norm_epsilon=get("rms_norm_eps"),
        tie_embeddings=bool(get("tie_word_embeddings", False)),
    )


def hf_config(shape: ModelShape, dtype: torch.dtype = torch.float32) -> Any:
    """A transformers config (LlamaConfig / Qwen2Config) describing `shape`."""
    from transformers import LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.ffn_hidden_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_query_groups,
        max_position_embeddings=shape.max_position_embeddings,
        rms_norm_eps=shape.norm_epsilon,
        rope_theta=shape.rotary_base,
        tie_word_embeddings=shape.tie_embeddings,
        hidden_act="silu",
    )
    if shape.family == "qwen2":
        config = Qwen2Config(**common, use_sliding_window=False)
    else:
        config = LlamaConfig(**common, head_dim=shape.head_dim, attention_bias=False, mlp_bias=False)
    config.architectures = ["Qwen2ForCausalLM" if shape.family == "qwen2" else "LlamaForCausalLM"]
    # The dtype the weights are stored in: `dtype` since transformers 4.56, `torch_dtype` before.
    setattr(config, "dtype" if hasattr(config, "dtype") else "torch_dtype", dtype)
    return config


class HFWeights(Mapping[str, torch.Tensor]):
    """The tensors of an HF model folder (single or sharded safetensors), read one at a time on access."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        index = folder / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            self._files = {name: folder / file for name, file in weight_map.items()}
        elif (folder / "model.safetensors").exists():
            from safetensors import safe_open

            with safe_open(folder / "model.safetensors", framework="pt") as f:
                self._files = {name: folder / "model.safetensors" for name in f.keys()}
        else:
            raise FileNotFoundError(f"{folder} has no model.safetensors(.index.json): not an HF model folder")

    def __getitem__(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(self._files[name], framework="pt") as f:
            return f.get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


def _layers(chunk: GPTModel) -> dict[str, int]:
    """Local layer prefix in this chunk -> global (0-based) layer index."""
    return {f"decoder.layers.{j}.": layer.layer_number - 1 for j, layer in enumerate(chunk.decoder.layers)}


def _split_name(name: str, layers: dict[str, int]) -> tuple[str, int | None]:
    for prefix, index in layers.items():
        if name.startswith(prefix):
            return name[len(prefix) :], index
    return name, None


def _pad_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """Vocabulary padding: zero rows up to the padded size (their logits are masked in model.py)."""
    if rows <= len(weight):
        return weight
    return torch.cat([weight, weight.new_zeros(rows - len(weight), weight.shape[1])])


def _full_from_hf(
    name: str, layer: int | None, shape: ModelShape, hf: Mapping[str, torch.Tensor], tp: int, rows: int
) -> torch.Tensor:
    """The unsharded megatron tensor `name`, in the order megatron's TP shards concatenate to."""
    if layer is None:
        if name == "embedding.word_embeddings.weight":
            return _pad_rows(hf["model.embed_tokens.weight"], rows)
        if name == "output_layer.weight":
            source = "model.embed_tokens.weight" if shape.tie_embeddings else "lm_head.weight"
            return _pad_rows(hf[source], rows)
        if name == "decoder.final_layernorm.weight":
            return hf["model.norm.weight"]
        raise KeyError(f"no HF source for megatron parameter {name}")
    p = _HF_LAYER.format(layer)
    if name in ("self_attention.linear_qkv.weight", "self_attention.linear_qkv.bias"):
        kind = name.rsplit(".", 1)[1]
        groups = shape.num_query_groups
        q, k, v = (hf[f"{p}self_attn.{x}_proj.{kind}"] for x in "qkv")
        tail = q.shape[1:]
        fused = torch.cat(
            [q.reshape(groups, -1, *tail), k.reshape(groups, -1, *tail), v.reshape(groups, -1, *tail)], 1
        )
        return fused.reshape(-1, *tail)
    if name == "mlp.linear_fc1.weight":
        gate, up = hf[f"{p}mlp.gate_proj.weight"].chunk(tp), hf[f"{p}mlp.up_proj.weight"].chunk(tp)
        return torch.cat([torch.cat([g, u]) for g, u in zip(gate, up, strict=True)])
    if name not in _ONE_TO_ONE:
        raise KeyError(f"no HF source for megatron parameter {name}")
    return hf[p + _ONE_TO_ONE[name]]


def _hf_from_full(
    name: str, layer: int | None, shape: ModelShape, full: torch.Tensor, tp: int
) -> dict[str, torch.Tensor]:
    """Inverse of `_full_from_hf`: the HF tensors held in the unsharded megatron tensor `name`."""
    if layer is None:
        if name == "embedding.word_embeddings.weight":
            return {"model.embed_tokens.weight": full[: shape.vocab_size]}
        if name == "output_layer.weight":  # a tied copy (last stage of PP>1) is the embedding: not exported
            return {} if shape.tie_embeddings else {"lm_head.weight": full[: shape.vocab_size]}
        return {"model.norm.weight": full}
    p = _HF_LAYER.format(layer)
    if name in ("self_attention.linear_qkv.weight", "self_attention.linear_qkv.bias"):
        kind = name.rsplit(".", 1)[1]
        groups, hd = shape.num_query_groups, shape.head_dim
        per_group = full.reshape(groups, -1, *full.shape[1:])
        q, k, v = per_group.split([per_group.shape[1] - 2 * hd, hd, hd], dim=1)
        return {
            f"{p}self_attn.{x}_proj.{kind}": t.reshape(-1, *full.shape[1:])
            for x, t in zip("qkv", (q, k, v), strict=True)
        }
    if name == "mlp.linear_fc1.weight":
        halves = [shard.chunk(2) for shard in full.chunk(tp)]
        return {
            f"{p}mlp.gate_proj.weight": torch.cat([g for g, _ in halves]),
            f"{p}mlp.up_proj.weight": torch.cat([u for _, u in halves]),
        }
    return {p + _ONE_TO_ONE[name]: full}


@torch.no_grad()
def load_hf_weights(chunks: list[GPTModel], shape: ModelShape, hf: Mapping[str, torch.Tensor]) -> None:
    """Copy HF weights (a state dict or `HFWeights(folder)`) into this rank's model chunks, sharding on the way.

    Every parameter of every chunk is written; a missing HF tensor or a shape mismatch raises.
    """
    from megatron.core import parallel_state

    tp = parallel_state.get_tensor_model_parallel_world_size()
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    for chunk in chunks:
        layers = _layers(chunk)
        for name, param in chunk.named_parameters():
            local, layer = _split_name(name, layers)
            sharded = getattr(param, "tensor_model_parallel", False)
            rows = param.shape[0] * tp if sharded else param.shape[0]
            full = _full_from_hf(local, layer, shape, hf, tp, rows)
            piece = full.chunk(tp, dim=param.partition_dim)[tp_rank] if sharded else full
            if piece.shape != param.shape:
                raise ValueError(f"{name}: HF gives {tuple(piece.shape)}, model has {tuple(param.shape)}")
            param.copy_(piece)


@torch.no_grad()
def gather_hf_state(chunks: list[GPTModel], shape: ModelShape) -> dict[str, torch.Tensor]:
    """The HF tensors (fp32, on CPU) of this rank's pipeline stage; collective over the TP group."""
    from megatron.core import parallel_state

    tp = parallel_state.get_tensor_model_parallel_world_size()
    group = parallel_state.get_tensor_model_parallel_group()
    state: dict[str, torch.Tensor] = {}
    for chunk in chunks:
        layers = _layers(chunk)
        for name, param in chunk.named_parameters():
            local, layer = _split_name(name, layers)
            full = param.detach().float()
            if getattr(param, "tensor_model_parallel", False) and tp > 1:
                shards = [torch.empty_like(full) for _ in range(tp)]
                torch.distributed.all_gather(shards, full.contiguous(), group=group)
                full = torch.cat(shards, dim=param.partition_dim)
            state.update(_hf_from_full(local, layer, shape, full.cpu(), tp))
    return state


MAX_SHARD_BYTES = 5 * 10**9  # transformers' own default shard size for save_pretrained


def _export_tensors(chunks: list[GPTModel], shape: ModelShape, dtype: torch.dtype, keep: bool
                    ) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF name, CPU tensor in `dtype`) of this pipeline stage, on the rank that `keep`s them; collective over
    the TP group. Each tensor is cast on its device before the TP gather and the copy to host."""
    from megatron.core import parallel_state

    tp = parallel_state.get_tensor_model_parallel_world_size()
    group = parallel_state.get_tensor_model_parallel_group()
    for chunk in chunks:
        layers = _layers(chunk)
        for name, param in chunk.named_parameters():
            local, layer = _split_name(name, layers)
            full = param.detach().to(dtype)
            if getattr(param, "tensor_model_parallel", False) and tp > 1:
                shards = [torch.empty_like(full) for _ in range(tp)]
                torch.distributed.all_gather(shards, full.contiguous(), group=group)
                full = torch.cat(shards, dim=param.partition_dim)
            if keep:
                for hf_name, tensor in _hf_from_full(local, layer, shape, full, tp).items():
                    yield hf_name, tensor.contiguous().cpu()
            del full


@torch.no_grad()
def save_hf_folder(chunks: list[GPTModel], shape: ModelShape, folder: str | Path,
                   dtype: torch.dtype = torch.float32, max_shard_bytes: int = MAX_SHARD_BYTES) -> None:
    """Write the model as an HF folder (collective over all ranks) in safetensors files of <= max_shard_bytes.

    Only the writer of each pipeline stage (TP rank 0 of DP rank 0) holds tensors on the host, one file's
    worth at a time; the other TP ranks of its group take part in the gathers; other DP replicas do nothing.
    One file is `model.safetensors`; more are `model-0000k-of-0000n.safetensors` with
    `model.safetensors.index.json` (what `from_pretrained` reads). Tokenizer files: the caller's.
    """
    from megatron.core import parallel_state
    from safetensors.torch import save_file

    folder = Path(folder)
    stage = parallel_state.get_pipeline_model_parallel_rank()
    replica = parallel_state.get_data_parallel_rank() == 0
    writer = replica and parallel_state.get_tensor_model_parallel_rank() == 0
    files: list[tuple[str, list[str], int]] = []  # (temporary file name, tensor names, bytes)
    if writer:
        folder.mkdir(parents=True, exist_ok=True)
    group: dict[str, torch.Tensor] = {}

    def flush() -> None:
        if group:
            tmp = f".stage{stage:03d}-{len(files):05d}.safetensors.tmp"
            save_file(group, str(folder / tmp), metadata={"format": "pt"})
            files.append((tmp, sorted(group), sum(t.numel() * t.element_size() for t in group.values())))
            group.clear()

    if replica:
        for name, tensor in _export_tensors(chunks, shape, dtype, keep=writer):
            size = tensor.numel() * tensor.element_size()
            if group and sum(t.numel() * t.element_size() for t in group.values()) + size > max_shard_bytes:
                flush()
            group[name] = tensor
        flush()
    listing: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(listing, (stage, files) if writer else None)
    if torch.distributed.get_rank() == 0:
        ordered = [f for entry in sorted(e for e in listing if e is not None) for f in entry[1]]
        count, weight_map = len(ordered), {}
        for k, (tmp, names, _) in enumerate(ordered):
            final = "model.safetensors" if count == 1 else f"model-{k + 1:05d}-of-{count:05d}.safetensors"
            (folder / tmp).rename(folder / final)
            weight_map.update(dict.fromkeys(names, final))
        if count > 1:
            index = {"metadata": {"total_size": sum(b for _, _, b in ordered)},
                     "weight_map": dict(sorted(weight_map.items()))}
            (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        hf_config(shape, dtype).save_pretrained(folder)
    torch.distributed.barrier()
