"""The checkpoint-selection rule, in one place: the eval writer (`selected` shards) and the analysis
(`hpc_instruct.analyze.selection`) both choose with it.

The paper did not record which checkpoint it reported. We take the epoch with the highest mean valid accuracy
over the study's abilities; ties go to the later epoch (more training at equal validation score). Accuracies
are compared rounded to 9 decimals, so the same scores read from Parquet or recomputed choose the same epoch.
"""

from __future__ import annotations

from collections.abc import Iterable

SELECTION_RULE = "max mean valid accuracy over abilities (ties: later epoch)"


def best_epoch(scores: Iterable[tuple[int, float]]) -> tuple[int, float]:
    """(epoch, mean valid accuracy) of the winner among (epoch, mean valid accuracy) pairs."""
    ranked = sorted((round(float(acc), 9), int(epoch)) for epoch, acc in scores)
    if not ranked:
        raise ValueError("no epoch to choose from")
    acc, epoch = ranked[-1]
    return epoch, acc
