"""Per-rank parameters at true size, measured from megatron-core's own GPTModel on the meta device.

One process plays every (pipeline, tensor) rank in turn: it joins a fake process group of the real world size
(torch's "fake" backend: collectives do nothing, ranks and groups are real), lets megatron-core set up its
model-parallel groups, builds the rank's chunks with `hpc_instruct.train.megatron.model.build_model` (the
training code's builder, `on_meta=True`) inside `torch.device("meta")`, and counts what was built. Nothing is
allocated and CUDA is never touched, so a 70B model at world size 64 takes seconds on a laptop.

The fake backend lives in `torch.testing._internal`: private API, pinned by tests/train/test_scale_simulate.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hpc_instruct.train.scale.ranks import LayoutKey, RankParams


def simulate(key: LayoutKey, dp: int = 1, every_tensor_rank: bool = True) -> tuple[RankParams, ...]:
    """Every rank's parameters, ordered by (pp_rank, tp_rank), in a fake world of tp*pp*dp ranks.

    `every_tensor_rank=False` builds TP ranks 0 and tp-1 of each pipeline rank and, after checking they hold
    the same counts, gives the others the same (megatron splits every tensor evenly; this saves time in
    sweeps). Raises ValueError for a layout megatron-core cannot build, RuntimeError inside a process that
    already has a process group (a training job).
    """
    import torch

    if key.problems():
        raise ValueError("cannot simulate: " + "; ".join(key.problems()))
    if torch.distributed.is_initialized():
        raise RuntimeError("simulate() needs a process without a process group (it creates fake ones)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # megatron warns about Apex/TE fallbacks on import and every build
        out = _simulate(key, dp, every_tensor_rank)
    return tuple(out[k] for k in sorted(out))


def _simulate(key: LayoutKey, dp: int, every_tensor_rank: bool) -> dict[tuple[int, int], RankParams]:
    world = key.tp * key.pp * dp
    ranks = _world_ranks(key, dp)
    out: dict[tuple[int, int], RankParams] = {}
    for p in range(key.pp):
        tensor_ranks = range(key.tp) if every_tensor_rank else sorted({0, key.tp - 1})
        for t in tensor_ranks:
            with _fake_world(ranks[(p, t)], world, key) as (got_p, got_t):
                if (got_p, got_t) != (p, t):  # our rank choice must agree with megatron's groups
                    raise AssertionError(f"world rank {ranks[(p, t)]} is ({got_p}, {got_t}), expected ({p}, {t})")
                out[(p, t)] = _count(key, p, t)
        if not every_tensor_rank:
            first, last = out[(p, 0)], out[(p, key.tp - 1)]
            if (first.params, first.largest) != (last.params, last.largest):
                raise AssertionError(f"TP ranks of stage {p} differ: {first} vs {last}")
            for t in range(key.tp):
                out.setdefault((p, t), _with_tp_rank(first, t))
    return out


def _world_ranks(key: LayoutKey, dp: int) -> dict[tuple[int, int], int]:
    """(pp_rank, tp_rank) -> a world rank holding it (DP rank 0), from megatron-core's own rank generator."""
    from megatron.core.parallel_state import RankGenerator

    gen = RankGenerator(tp=key.tp, ep=1, dp=dp, pp=key.pp, cp=1, order="tp-cp-ep-dp-pp")
    tp_of = {r: i for group in gen.get_ranks("tp") for i, r in enumerate(group)}
    pp_of = {r: i for group in gen.get_ranks("pp") for i, r in enumerate(group)}
    chosen: dict[tuple[int, int], int] = {}
    for r in range(key.tp * key.pp * dp):
        chosen.setdefault((pp_of[r], tp_of[r]), r)
    return chosen


@contextmanager
def _fake_world(rank: int, world: int, key: LayoutKey) -> Iterator[tuple[int, int]]:
    import torch
    from megatron.core import parallel_state
    from torch.testing._internal.distributed.fake_pg import FakeStore

    torch.distributed.init_process_group("fake", store=FakeStore(), rank=rank, world_size=world)
    try:
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=key.tp,
            pipeline_model_parallel_size=key.pp,
            virtual_pipeline_model_parallel_size=key.vpp if key.vpp > 1 else None,
            create_gloo_process_groups=False,  # the fake backend has no gloo side groups
        )
        yield (parallel_state.get_pipeline_model_parallel_rank(), parallel_state.get_tensor_model_parallel_rank())
    finally:
        if parallel_state.model_parallel_is_initialized():
            parallel_state.destroy_model_parallel()
        torch.distributed.destroy_process_group()


def _count(key: LayoutKey, pp_rank: int, tp_rank: int) -> RankParams:
    import torch

    from hpc_instruct.train.megatron.model import ModelOptions, ParallelLayout, build_model

    layout = ParallelLayout(key.tp, key.pp, key.vpp if key.vpp > 1 else None)
    options = ModelOptions(dtype="bfloat16", vocab_multiple=key.vocab_multiple)
    with torch.device("meta"), _meta_stays_on_meta():
        chunks = build_model(key.shape, layout, options, on_meta=True)
    parts = {"embedding": 0, "output_layer": 0, "final_norm": 0, "decoder": 0}
    largest = 0
    tensors, shared = [], []
    for chunk in chunks:
        named = list(chunk.named_parameters())
        tensors.append(tuple(param.numel() for _, param in named))
        flagged = [i for i, (_, param) in enumerate(named) if getattr(param, "shared_embedding", False)]
        shared.append(flagged[0] if flagged else -1)
        for name, tensor in [*chunk.named_parameters(), *chunk.named_buffers()]:
            if tensor.device.type != "meta":
                raise AssertionError(f"{name} was allocated on {tensor.device}, not on the meta device")
        for name, param in chunk.named_parameters():
            parts[_part(name)] += param.numel()
            largest = max(largest, param.numel())
    tied = parts["output_layer"] if key.shape.tie_embeddings else 0
    return RankParams(pp_rank, tp_rank, tuple(len(c.decoder.layers) for c in chunks), sum(parts.values()),
                      parts["embedding"], parts["output_layer"], parts["final_norm"], parts["decoder"], tied, largest,
                      tuple(tensors), tuple(shared))


def _part(name: str) -> str:
    if name.startswith("embedding."):
        return "embedding"
    if name.startswith("output_layer."):
        return "output_layer"
    if name.startswith("decoder.final_layernorm."):
        return "final_norm"
    if name.startswith("decoder.layers."):
        return "decoder"
    raise AssertionError(f"unexpected parameter {name}")


def _with_tp_rank(rank: RankParams, tp_rank: int) -> RankParams:
    import dataclasses

    return dataclasses.replace(rank, tp_rank=tp_rank)


def _meta_stays_on_meta() -> Any:
    """A torch function mode, scoped to one build, under which `.cuda()` of a meta tensor returns it unchanged.

    With tied embeddings and pp > 1 megatron-core moves the last stage's embedding copy to the GPU
    (`weight.data.cuda()` in `LanguageModule.setup_embeddings_and_output_layer`) to all-reduce it; the
    simulation has no GPU and needs none. (A class inside a function: torch is imported only when simulating.)
    """
    import torch
    from torch.overrides import TorchFunctionMode

    class MetaStaysOnMeta(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func is torch.Tensor.cuda and args and getattr(args[0], "is_meta", False):
                return args[0]
            return func(*args, **(kwargs or {}))

    return MetaStaysOnMeta()
