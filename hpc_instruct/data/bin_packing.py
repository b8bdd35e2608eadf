"""Bin packing of tokenized samples into rows of at most `max_length` tokens (the packing stage's layout step).

Deterministic for a seed, so a packed mixture is a pure function of its samples, tokenizer, template and config.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pack_bins(
    lengths: Sequence[int], max_length: int, strategy: str = "ffd", seed: int = 0
) -> list[list[int]]:
    """Group sample indices into rows of at most `max_length` tokens; deterministic for a seed.

    Samples are shuffled by `seed` first; "ffd" then sorts by length, longest first (stable, so ties keep
    the shuffled order) and puts each into the first row with room; "greedy" fills rows in shuffled order.
    The rows themselves are returned in a seeded random order.
    """
    lens = np.asarray(lengths, dtype=np.int64)
    if len(lens) and (lens.max() > max_length or lens.min() < 1):
        raise ValueError(f"sample lengths must be in 1..{max_length} (truncate or drop before packing)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lens))
    if strategy == "ffd":
        order = order[np.argsort(-lens[order], kind="stable")]
        bins = _first_fit(lens[order].tolist(), order.tolist(), max_length)
    elif strategy == "greedy":
        bins, room = [], 0
        for i in order.tolist():
            if lens[i] > room:
                bins.append([])
                room = max_length
            bins[-1].append(i)
            room -= int(lens[i])
    else:
        raise ValueError(f"packing strategy must be 'ffd' or 'greedy', got {strategy!r}")
    return [bins[b] for b in rng.permutation(len(bins)).tolist()]


def _first_fit(lengths: list[int], items: list[int], capacity: int) -> list[list[int]]:
    """First fit in O(n log n): a max-tree over the room left in an unbounded row of bins (leftmost wins)."""
    size = 1 << max(1, (len(items) - 1).bit_length())
    tree = [capacity] * (2 * size)
    bins: list[list[int]] = []
    for length, item in zip(lengths, items, strict=True):
        node = 1
        while node < size:  # descend to the leftmost leaf with room >= length
            node = 2 * node if tree[2 * node] >= length else 2 * node + 1
        b = node - size
        if b == len(bins):
            bins.append([])
        bins[b].append(item)
        tree[node] -= length
        node //= 2
        while node:  # refresh the maxima above, stopping where they no longer change
            best = tree[2 * node] if tree[2 * node] >= tree[2 * node + 1] else tree[2 * node + 1]
            if tree[node] == best:
                break
            tree[node] = best
            node //= 2
    return bins
