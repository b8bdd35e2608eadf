"""Does a training layout fit its GPUs and nodes, and if not, what is the smallest change that does.

`check_train` uses the simulated per-rank parameters (`cache.rank_params`). `smallest_fix` tries many layouts,
so it ranks candidates with the closed-form counts (equal to the simulation, tested) and confirms the one it
names with `cache.rank_params` before returning it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from hpc_instruct.train.scale.cache import rank_params
from hpc_instruct.train.scale.gpu import GpuSpec, larger_presets
from hpc_instruct.train.scale.memory import Breakdown, TrainSetup, gpu_train, host_train
from hpc_instruct.train.scale.ranks import LayoutKey, RankParams, closed_form


@dataclass(frozen=True)
class TrainFit:
    """The memory verdict of one training layout."""

    setup: TrainSetup
    gpu: GpuSpec
    node_mem_gib: float
    per_stage: tuple[Breakdown, ...]  # GPU memory of each pipeline rank (tensor ranks are equal)
    host: Breakdown  # per node

    @property
    def fullest(self) -> tuple[int, Breakdown]:
        """(pipeline rank, breakdown) of the rank with the most GPU memory."""
        return max(enumerate(self.per_stage), key=lambda kv: kv[1].total)

    @property
    def gpu_ok(self) -> bool:
        return self.fullest[1].gib <= self.gpu.memory_gib

    @property
    def host_ok(self) -> bool:
        return self.host.gib <= self.node_mem_gib

    @property
    def ok(self) -> bool:
        return self.gpu_ok and self.host_ok


def check_train(setup: TrainSetup, gpu: GpuSpec, node_mem_gib: float,
                params: Callable[[LayoutKey], tuple[RankParams, ...]] = rank_params) -> TrainFit:
    """GPU memory of every pipeline rank and host memory of a node for `setup`."""
    ranks = [r for r in params(setup.key) if r.tp_rank == 0]
    stages = tuple(gpu_train(setup, r) for r in ranks)
    host = max((host_train(setup, r) for r in ranks), key=lambda b: b.total)
    return TrainFit(setup, gpu, node_mem_gib, stages, host)


@dataclass(frozen=True)
class Fix:
    """A change of the layout (recipe model keys -> new values) and the verdict under it."""

    changes: tuple[tuple[str, object], ...]
    fit: TrainFit
    gpus: int

    def describe(self) -> str:
        return ", ".join(f"{k}: {_yaml(v)}" for k, v in self.changes)


def _yaml(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def smallest_fix(setup: TrainSetup, gpu: GpuSpec, node_mem_gib: float) -> Fix | None:
    """The cheapest layout change that fits: the fewest GPUs first, then the fewest changed keys.

    Candidates vary tp (up to a node's GPUs), pp, vpp, dp (keeping global_batch divisible), micro batch,
    recomputation, sequence parallelism and the distributed optimizer. The node memory is left alone (a host
    shortfall is reported with the memory it needs instead).
    """
    best: tuple[tuple, TrainSetup] | None = None
    for cand in _candidates(setup, gpu):
        if not check_train(cand, gpu, node_mem_gib, closed_form).gpu_ok:
            continue
        changes = _changes(setup, cand)
        rank = (cand.world, len(changes), cand.key.tp * cand.key.pp, -cand.micro_batch)
        if best is None or rank < best[0]:
            best = (rank, cand)
    if best is None:
        return None
    chosen = best[1]
    return Fix(_changes(setup, chosen), check_train(chosen, gpu, node_mem_gib), chosen.world)


def bigger_gpu(setup: TrainSetup, gpu: GpuSpec, node_mem_gib: float) -> GpuSpec | None:
    """The smallest preset with more memory on which the same layout fits, if any."""
    for other in larger_presets(gpu):
        if check_train(setup, other, node_mem_gib, closed_form).gpu_ok:
            return other
    return None


def host_needed_gib(fit: TrainFit) -> int:
    """Node memory (GiB, rounded up to 16) the layout needs."""
    return 16 * math.ceil(fit.host.gib / 16)


def _candidates(setup: TrainSetup, gpu: GpuSpec) -> Iterator[TrainSetup]:
    shape, key = setup.key.shape, setup.key
    heads = math.gcd(shape.num_attention_heads, shape.num_query_groups)
    tps = [t for t in (1, 2, 4, 8, 16) if heads % t == 0 and t <= gpu.gpus_per_node]
    pps = [p for p in range(1, min(shape.num_layers, 32) + 1) if shape.num_layers % p == 0]
    micros = sorted({m for m in (1, 2, 4, 8, setup.micro_batch) if m <= setup.micro_batch})
    recomputes = sorted({setup.recompute, "full"})
    for tp, pp, micro, recompute in itertools.product(tps, pps, micros, recomputes):
        vpp = key.vpp if pp > 1 and shape.num_layers % (pp * key.vpp) == 0 else 1
        rows = setup.global_batch // micro if setup.global_batch % micro == 0 else 0
        for dp in sorted({d for d in (1, 2, 4, 8, 16, 32, 64, setup.dp) if d <= max(setup.dp, 1)}):
            if not rows or rows % dp:
                continue
            world = tp * pp * dp
            if world > gpu.gpus_per_node and world % gpu.gpus_per_node:
                continue
            nodes = max(1, world // gpu.gpus_per_node)
            for sp, dist in itertools.product(sorted({setup.sequence_parallel, tp > 1}),
                                              sorted({setup.distributed_optimizer, True})):
                if sp and tp == 1:
                    continue
                yield replace(setup, key=replace(key, tp=tp, pp=pp, vpp=vpp), dp=dp, nodes=nodes,
                              micro_batch=micro, recompute=recompute, sequence_parallel=sp,
                              distributed_optimizer=dist)


def _changes(old: TrainSetup, new: TrainSetup) -> tuple[tuple[str, object], ...]:
    """The recipe model keys that differ (`activation_checkpointing` is a training key)."""
    pairs = [("tp", old.key.tp, new.key.tp), ("pp", old.key.pp, new.key.pp), ("vpp", old.key.vpp, new.key.vpp),
             ("dp", old.dp, new.dp), ("nodes", old.nodes, new.nodes), ("micro_batch", old.micro_batch, new.micro_batch),
             ("sequence_parallel", old.sequence_parallel, new.sequence_parallel),
             ("distributed_optimizer", old.distributed_optimizer, new.distributed_optimizer),
             ("activation_checkpointing", old.recompute, new.recompute)]
    return tuple((k, b) for k, a, b in pairs if a != b)
