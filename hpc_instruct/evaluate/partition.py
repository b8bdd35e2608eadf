"""Shard planning for evaluation: item ranges per eval set sized by what the items cost, and array packing.

Torch-free and data-free (planning runs on a login node from set sizes only). Two steps:

1. `plan_shards` cuts each set into contiguous, near-equal item ranges that cover it exactly once. A set is
   split when its estimated cost exceeds the per-shard budget, so expensive sets (greedy generation, above all
   chain-of-thought math) get more shards than cheap ones (ranking three candidates is one batched forward
   pass). A shard never holds fewer than `min_items` items (a GPU batch) unless its set is smaller: cutting
   below a batch only adds model loads.
2. `pack_shards` groups shards into array elements of about one budget each (first-fit decreasing, in a
   deterministic order), so many small shards (a 40-item out-of-domain set, a ranking set) share one job and
   one model load instead of one Slurm element each; the launcher runs an element's task ids in order.

Cost units are "one ranked item" (three candidates scored in a batched forward). A generated item costs one
prefill plus `DECODE_STEP_COST` per new token; the expected number of new tokens per format is a planning
assumption (`EXPECTED_NEW_TOKENS`, capped by `max_new_tokens`): a tuned model answers an MC item in a couple of
tokens, a math chain of thought runs to hundreds. The step cost is an assumption for GPUs, where a decode step
of a batch takes about one forward's latency while a ranking forward holds several times more items; on a
CPU, where both are compute-bound, generation is relatively cheaper (`benchmarks/bench_eval.py` on the `mini`
preset: ~110 ranked, ~170 eight-token MC and ~70 sixty-four-token generated items per second). Pass measured
per-set `costs` to override.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hpc_instruct.data.abilities import CLOZE, MATH, MC, MULTI_SELECT, RANK3, REGISTRY, TRUE_FALSE

RANK_ITEM_COST = 1.0
DECODE_STEP_COST = 0.25  # one decode step of one item, in ranked items (a GPU assumption, see above)
EXPECTED_NEW_TOKENS = {MC: 4, TRUE_FALSE: 6, CLOZE: 8, MULTI_SELECT: 8, MATH: 300, RANK3: 0}
UNKNOWN_FORMAT_TOKENS = 64  # a user's own ability whose formats the registry does not know


@dataclass(frozen=True)
class ShardRange:
    """One shard of one eval set: items [start, stop) of `eval_set`, shard `shard` of `shards`."""

    eval_set: str
    shard: int
    shards: int
    start: int
    stop: int
    cost: float  # estimated, in ranked-item units

    @property
    def items(self) -> int:
        return self.stop - self.start


def split_range(n: int, k: int) -> list[tuple[int, int]]:
    """`k` contiguous near-equal ranges covering 0..n exactly once (sizes differ by at most one)."""
    if n < 0 or k < 1:
        raise ValueError(f"cannot split {n} items into {k} shards")
    k = min(k, max(n, 1))
    return [(i * n // k, (i + 1) * n // k) for i in range(k)]


def item_cost(formats: Sequence[str], max_new_tokens: int) -> float:
    """Estimated cost of one item of an ability with these formats (the mean over them, in ranked-item units)."""
    if not formats:
        return 1.0 + DECODE_STEP_COST * min(max_new_tokens, UNKNOWN_FORMAT_TOKENS)
    costs = []
    for fmt in formats:
        if fmt == RANK3:
            costs.append(RANK_ITEM_COST)
        else:
            tokens = min(max_new_tokens, EXPECTED_NEW_TOKENS.get(fmt, UNKNOWN_FORMAT_TOKENS))
            costs.append(1.0 + DECODE_STEP_COST * tokens)
    return sum(costs) / len(costs)


def set_item_cost(eval_set: str, max_new_tokens: int) -> float:
    """`item_cost` of `<ability>/<split>` from the ability registry (a user's own ability: unknown format)."""
    ability = eval_set.split("/")[0]
    formats = REGISTRY[ability].formats if ability in REGISTRY else ()
    return item_cost(formats, max_new_tokens)


def plan_shards(
    sizes: Mapping[str, int],
    budget: float,
    *,
    max_new_tokens: int = 1024,
    min_items: int = 1,
    costs: Mapping[str, float] | None = None,
) -> dict[str, list[ShardRange]]:
    """Item ranges per eval set: ceil(set cost / budget) shards, each of at least `min_items` items.

    Args:
        sizes: eval set ("<ability>/<split>") -> number of items (the file's records).
        budget: cost one shard should hold, in ranked-item units.
        max_new_tokens: caps the expected generation length of each format.
        min_items: smallest shard worth a model load (use the eval batch size).
        costs: per-set cost of one item, overriding the registry estimate (e.g. measured).
    Returns sets in the order given; a set of 0 items gets one empty shard (its file is still written).
    """
    if budget <= 0:
        raise ValueError(f"shard budget must be positive, got {budget}")
    out: dict[str, list[ShardRange]] = {}
    for name, n in sizes.items():
        per_item = costs[name] if costs and name in costs else set_item_cost(name, max_new_tokens)
        wanted = math.ceil(n * per_item / budget) if n else 1
        most = max(1, n // max(1, min_items))  # every shard keeps at least min_items items
        k = max(1, min(wanted, most))
        ranges = split_range(n, k)
        out[name] = [
            ShardRange(name, i, len(ranges), a, b, (b - a) * per_item) for i, (a, b) in enumerate(ranges)
        ]
    return out


def count_shards(sizes: Mapping[str, int], items_per_shard: int) -> dict[str, list[ShardRange]]:
    """The count-only rule (every item costs the same): ceil(n / items_per_shard) near-equal shards per set.

    This is what `hpc_instruct.recipe.expand` plans today; `plan_shards` with equal costs and
    `budget = items_per_shard` gives the same ranges.
    """
    return plan_shards(sizes, float(items_per_shard), costs={name: 1.0 for name in sizes})


def pack_shards(costs: Mapping[str, float], budget: float) -> list[list[str]]:
    """Group tasks (id -> cost) into elements of about `budget` each, first-fit decreasing, deterministic.

    A task costlier than the budget gets an element of its own. Ties in cost are broken by id, so the same plan
    always packs the same way; each element lists its ids in descending cost (the longest runs first).
    """
    elements: list[list[str]] = []
    loads: list[float] = []
    for tid in sorted(costs, key=lambda t: (-costs[t], t)):
        c = costs[tid]
        for j, load in enumerate(loads):
            if load + c <= budget:
                elements[j].append(tid)
                loads[j] += c
                break
        else:
            elements.append([tid])
            loads.append(c)
    return elements
