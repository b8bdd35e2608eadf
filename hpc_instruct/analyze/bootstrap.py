"""Item counts and paired bootstrap replicates of accuracy, per (checkpoint x eval set) group, vectorised.

The bootstrap resamples the *items of an eval set*, once per replicate, and applies the same resample to every
checkpoint evaluated on that set (a paired bootstrap): items are what varies if the benchmark were drawn again,
and pairing keeps comparisons between checkpoints, trials and model sizes as tight as the shared items make
them. For each set, with G groups and n items:
    C[g, i] = 1 if group g answered item i correctly, M[g, i] = 1 if it answered item i at all
    W[b, i] = how often replicate b drew item i (multinomial(n, 1/n), from a seed fixed per set)
    replicate accuracy = (C @ W.T) / (M @ W.T)            -> [G, B], one matrix product per set
Chance is a property of the item set, not of the model, so intervals are for accuracy; the chance-normalised
score's interval is the accuracy interval mapped through (acc - chance) / (100 - chance) with the set's chance.
Rows that repeat an item within a group are counted once here and reported as duplicates by the caller.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GroupItems:
    """Per group: distinct items answered, how many correct, duplicate rows, and bootstrap replicates (0..1)."""

    items: np.ndarray  # int64 [G]
    correct: np.ndarray  # int64 [G]
    duplicates: np.ndarray  # int64 [G]: rows beyond the first for a repeated item
    replicates: np.ndarray  # float64 [G, B]; NaN where a group has no items


def group_items(
    group_set: np.ndarray,
    set_names: list[str],
    set_sizes: np.ndarray,
    row_group: np.ndarray,
    row_item: np.ndarray,
    row_correct: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
) -> GroupItems:
    """Counts and replicates for every group.

    Args:
        group_set: [G] index into `set_names`/`set_sizes` of each group's eval set.
        row_group, row_item, row_correct: one entry per result row (item = index within the set).
        n_boot: bootstrap replicates (0: no intervals).
        seed: base seed; each set's resampling is seeded from (seed, set name) so results do not depend on
            which other sets or groups a study has.
    """
    n_groups = len(group_set)
    items = np.zeros(n_groups, np.int64)
    correct = np.zeros(n_groups, np.int64)
    duplicates = np.zeros(n_groups, np.int64)
    replicates = np.full((n_groups, n_boot), np.nan)
    row_set = group_set[row_group] if len(row_group) else np.zeros(0, np.int64)
    small = np.int16 if len(set_names) < 2**15 else np.int64  # stable sort of int16 is a radix sort: O(rows)
    order = np.argsort(row_set.astype(small), kind="stable")
    bounds = np.searchsorted(row_set[order], np.arange(len(set_names) + 1))
    for s, name in enumerate(set_names):
        members = np.flatnonzero(group_set == s)
        n = int(set_sizes[s])
        if len(members) == 0 or n == 0:
            continue
        local = np.full(n_groups, -1, np.int64)
        local[members] = np.arange(len(members))
        take = order[bounds[s] : bounds[s + 1]]
        slot = local[row_group[take]] * n + row_item[take]
        counts = np.bincount(slot, minlength=len(members) * n).reshape(len(members), n)
        answered = counts > 0
        right = np.zeros(len(members) * n, np.float32)
        right[slot] = row_correct[
            take
        ]  # a repeated item keeps one of its values (the group is flagged anyway)
        right = right.reshape(len(members), n)
        items[members] = answered.sum(axis=1)
        correct[members] = right.sum(axis=1).astype(np.int64)
        duplicates[members] = (counts - answered).sum(axis=1)
        if n_boot:
            replicates[members] = _replicates(right, answered, n, n_boot, _set_seed(seed, name))
    return GroupItems(items, correct, duplicates, replicates)


def _replicates(right: np.ndarray, answered: np.ndarray, n: int, n_boot: int, seed: list[int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    draws += (np.arange(n_boot) * n)[:, None]  # replicate b counts into slots b*n .. b*n + n - 1
    weights = np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float32)
    numerator = (right @ weights.T).astype(np.float64)  # integer counts: exact in float32 below 2**24
    if answered.all():
        return numerator / n
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / (answered.astype(np.float32) @ weights.T).astype(np.float64)


def _set_seed(seed: int, name: str) -> list[int]:
    return [int(seed), int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")]


def interval(replicates: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval and standard error of replicate rows ([G, B] -> lo, hi, se), NaN for empty groups."""
    shape = replicates.shape[:-1]
    lo, hi, se = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    if replicates.shape[-1] < 2:
        return lo, hi, se
    tail = (1 - level) / 2 * 100
    finite = np.isfinite(replicates)
    full = finite.all(axis=-1)
    if full.any():  # the common case: plain percentiles (much faster than nanpercentile)
        lo[full], hi[full] = np.percentile(replicates[full], [tail, 100 - tail], axis=-1)
        se[full] = replicates[full].std(axis=-1, ddof=1)
    some = finite.any(axis=-1) & ~full  # a tiny partial group where some replicate drew none of its items
    if some.any():
        lo[some], hi[some] = np.nanpercentile(replicates[some], [tail, 100 - tail], axis=-1)
        se[some] = np.nanstd(replicates[some], axis=-1, ddof=1)
    return lo, hi, se
