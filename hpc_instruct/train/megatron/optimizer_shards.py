"""Distributed-optimizer state on disk without a gather: every rank writes its own shard, in model space.

megatron-core 0.16 offers two formats for the distributed optimizer: "fully_reshardable" gathers the fp32 main
weights and Adam moments of a whole model-parallel shard (12 bytes/param) onto DP rank 0 (its default) or onto
every DP rank, on GPU and then on host: ~1 TB per node at 7B TP1/DP8; "dp_reshardable" writes without a gather
but in the optimizer's internal bucket layout, so it reshards over DP only. This module writes what each rank
holds, keyed like the model's own `dist_checkpointing` tensors, so a resume may change TP, PP and DP:

- a DP rank's shard of a parameter is a contiguous range of that parameter's flattened TP-local tensor; the
  range is cut into at most 3 rectangular boxes per dimension level (a partial row, whole rows, a partial row)
  and each box is placed in the *global* tensor with the parameter's `ShardedTensor` offsets (the fused SwiGLU
  FC1 counts as its two halves, as megatron's own factory splits it);
- each rank writes `rank-NNNNN-KKK.safetensors` (its boxes of `param`, `exp_avg`, `exp_avg_sq`, fp32, in
  files of ~1 GiB) and the box list `rank-NNNNN.json`; a tensor replicated across TP or pipeline stages (norms, a tied output layer) is
  written by its main replica only, so every element is on disk once;
- on load every rank reads the box lists, then for each box of its own new shard reads just the overlapping
  parts of the saved boxes (safetensors slices), and fails if any element is missing.

Host memory: one rank's own shard (12 bytes x params / dp) on save (plus one file's serialisation) and on
load; nothing is gathered. The
non-tensor state (param groups with the step, the fp16 loss scaler) comes from the optimizer's own
`state_dict()` and is written once by global rank 0; loading it lets megatron-core allocate the per-parameter
state its inner optimizer uses (torch AdamW: a `step`; TE/apex FusedAdam: none), so nothing is added here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

STATE_KEYS = ("param", "exp_avg", "exp_avg_sq")
Box = tuple[tuple[int, ...], tuple[int, ...]]  # (offsets, sizes)


def flat_range_boxes(shape: tuple[int, ...], start: int, end: int) -> list[tuple[int, Box]]:
    """Rectangular boxes covering the flat range [start, end) of a C-contiguous tensor of `shape`, in order.

    Returns (flat start of the box, (offsets, sizes)) per box; every box is contiguous in flat order.
    """
    if start >= end:
        return []
    if len(shape) <= 1:
        return [(start, ((start,), (end - start,)))]
    inner = math.prod(shape[1:])
    first, r0 = divmod(start, inner)
    last, r1 = divmod(end, inner)
    out: list[tuple[int, Box]] = []
    if first == last:  # inside one row
        return [(first * inner + f, ((first, *o), (1, *s))) for f, (o, s) in flat_range_boxes(shape[1:], r0, r1)]
    if r0:
        out += [(first * inner + f, ((first, *o), (1, *s))) for f, (o, s) in flat_range_boxes(shape[1:], r0, inner)]
        first += 1
    if last > first:
        out.append((first * inner, ((first, *(0,) * (len(shape) - 1)), (last - first, *shape[1:]))))
    if r1:
        out += [(last * inner + f, ((last, *o), (1, *s))) for f, (o, s) in flat_range_boxes(shape[1:], 0, r1)]
    return out


def _parts(sharded: Any) -> list[Any]:
    """The ShardedTensor(s) of one parameter: itself, or the halves of a factory (the fused SwiGLU FC1)."""
    from megatron.core.dist_checkpointing.mapping import ShardedTensorFactory

    if isinstance(sharded, ShardedTensorFactory):
        built = sharded.build()
        return list(built) if isinstance(built, list | tuple) else [built]
    return [sharded]


def param_metadata(chunks: list) -> dict[int, list[Any]]:
    """id(model parameter) -> its ShardedTensor parts, from the chunks' own sharded state dicts."""
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory

    out: dict[int, list[Any]] = {}
    for chunk in chunks:
        for value in nested_values(chunk.sharded_state_dict()):
            if isinstance(value, ShardedTensor | ShardedTensorFactory):
                out[id(value.data)] = _parts(value)
    return out


def _global_boxes(parts: list[Any], start: int, end: int) -> Iterator[tuple[str, int, Box, bool]]:
    """(key, offset of the box in the shard, global box, main replica) for the flat range [start, end)."""
    base = 0
    for part in parts:
        numel = part.data.numel()
        lo, hi = max(start, base), min(end, base + numel)
        pre = part.prepend_axis_num
        main = all(r == 0 for r in (part.replica_id if isinstance(part.replica_id, tuple) else (part.replica_id,))[:-1])
        for flat, (offsets, sizes) in flat_range_boxes(tuple(part.local_shape), lo - base, hi - base):
            g_off = tuple(part.global_offset[:pre]) + tuple(
                o + part.global_offset[pre + i] for i, o in enumerate(offsets))
            yield part.key, base + flat - start, (g_off, (1,) * pre + tuple(sizes)), main
        base += numel


def _inner(optimizer) -> list:
    return list(getattr(optimizer, "chained_optimizers", [optimizer]))


def _shards(optimizer, chunks: list) -> Iterator[tuple[Any, Any, int, int, list[Any]]]:
    """(inner optimizer, model param, start, end, ShardedTensor parts) for every param range this rank owns."""
    meta = param_metadata(chunks)
    for opt in _inner(optimizer):
        for gbuf_range_maps in opt.gbuf_ranges:
            for per_bucket in gbuf_range_maps.values():
                for bucket in per_bucket:
                    for model_param, ranges in bucket["param_map"].items():
                        r = ranges["param"]
                        yield opt, model_param, r.start, r.end, meta[id(model_param)]


def _rank_name(rank: int) -> str:
    return f"rank-{rank:05d}"


@torch.no_grad()
def snapshot(optimizer, chunks: list) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """This rank's boxes on the host: ({tensor name: fp32 CPU tensor}, box list). Collective-free."""
    tensors: dict[str, torch.Tensor] = {}
    boxes: list[dict] = []
    for opt, model_param, start, end, parts in _shards(optimizer, chunks):
        states = opt._get_main_param_and_optimizer_states(model_param)
        for key, at, (offsets, sizes), main in _global_boxes(parts, start, end):
            if not main:
                continue
            n, name = math.prod(sizes), f"{len(boxes)}"
            for s in STATE_KEYS:
                tensors[f"{s}/{name}"] = states[s].detach()[at:at + n].to("cpu", torch.float32).reshape(sizes)
            boxes.append({"key": key, "offsets": list(offsets), "sizes": list(sizes), "name": name})
    return tensors, boxes


FILE_BYTES = 2**30  # a rank's shard is written in files of ~1 GiB: serialising one holds a copy of it


def write(directory: Path, rank: int, tensors: dict[str, torch.Tensor], boxes: list[dict]) -> None:
    """Write one rank's snapshot (safe to run in a writer process: no collectives).

    Boxes go into `rank-NNNNN-KKK.safetensors` files of about FILE_BYTES each, so the serialisation buffer
    stays small next to the snapshot; the box list names each box's file.
    """
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    group: dict[str, torch.Tensor] = {}
    size, part = 0, 0

    def flush() -> None:
        nonlocal group, size, part
        if group:
            save_file(group, str(directory / f"{_rank_name(rank)}-{part:03d}.safetensors"))
            group, size, part = {}, 0, part + 1

    for box in boxes:
        names = [f"{s}/{box['name']}" for s in STATE_KEYS]
        box_bytes = sum(tensors[n].numel() * 4 for n in names)
        if size and size + box_bytes > FILE_BYTES:
            flush()
        box["file"] = f"{_rank_name(rank)}-{part:03d}.safetensors"
        group.update({n: tensors[n].contiguous() for n in names})
        size += box_bytes
    flush()
    (directory / f"{_rank_name(rank)}.json").write_text(json.dumps(boxes))


def non_tensor_state(optimizer) -> dict:
    """The non-tensor state every rank loads (param groups, step, loss scaler), for global rank 0 to save."""
    return {"inner": [opt.state_dict() for opt in _inner(optimizer)]}


def _saved_boxes(directory: Path) -> dict[str, list[tuple[Path, str, Box]]]:
    index: dict[str, list[tuple[Path, str, Box]]] = {}
    for listing in sorted(directory.glob("rank-*.json")):
        for b in json.loads(listing.read_text()):
            entry = (directory / b["file"], b["name"], (tuple(b["offsets"]), tuple(b["sizes"])))
            index.setdefault(b["key"], []).append(entry)
    return index


@torch.no_grad()
def load(optimizer, chunks: list, directory: Path, non_tensor_state: dict) -> None:
    """Restore the optimizer from `directory`, saved under any TP/PP/DP layout (no collectives)."""
    from safetensors import safe_open

    inner, saved_inner = _inner(optimizer), non_tensor_state["inner"]
    for i, opt in enumerate(inner):  # allocates the per-parameter state the inner optimizer keeps
        opt.load_state_dict(_copy(saved_inner[min(i, len(saved_inner) - 1)]))
        # torch AdamW keeps a per-parameter step; megatron-core sets one shared tensor on all of them, which
        # AdamW would advance once per parameter per step: give each its own (TE/apex keep none).
        for param_state in opt.optimizer.state.values():
            if isinstance(param_state.get("step"), torch.Tensor):
                param_state["step"] = param_state["step"].clone()
    index = _saved_boxes(directory)
    handles: dict[Path, Any] = {}
    try:
        for opt, model_param, start, end, parts in _shards(optimizer, chunks):
            values = {s: torch.empty(end - start, dtype=torch.float32) for s in STATE_KEYS}
            for key, at, (offsets, sizes), _ in _global_boxes(parts, start, end):
                targets = {s: values[s][at:at + math.prod(sizes)].view(sizes) for s in STATE_KEYS}
                got = 0
                for file, name, (s_off, s_size) in index.get(key, ()):
                    lo = [max(a, b) for a, b in zip(offsets, s_off, strict=True)]
                    hi = [min(a + n, b + m) for a, n, b, m in zip(offsets, sizes, s_off, s_size, strict=True)]
                    if any(h <= low for low, h in zip(lo, hi, strict=True)):
                        continue
                    src = tuple(slice(low - b, h - b) for low, h, b in zip(lo, hi, s_off, strict=True))
                    dst = tuple(slice(low - b, h - b) for low, h, b in zip(lo, hi, offsets, strict=True))
                    f = handles.get(file) or handles.setdefault(file, safe_open(str(file), framework="pt"))
                    for s in STATE_KEYS:
                        targets[s][dst] = f.get_slice(f"{s}/{name}")[src]
                    got += math.prod(h - low for low, h in zip(lo, hi, strict=True))
                if got != math.prod(sizes):
                    raise RuntimeError(f"resume checkpoint {directory} lacks optimizer state for {key} at "
                                       f"{offsets} (+{sizes}): {got} of {math.prod(sizes)} elements found")
            current = opt._get_main_param_and_optimizer_states(model_param)
            device = current["param"].device
            opt._set_main_param_and_optimizer_states(
                model_param, {**current, **{s: v.to(device) for s, v in values.items()}})
    finally:
        handles.clear()


def _copy(state: dict) -> dict:
    import copy

    return copy.deepcopy(state)
