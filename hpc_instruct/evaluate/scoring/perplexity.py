"""Candidate perplexity and the 3-candidate ranking rule (DoIT code, creative writing, role-play items).

The inference code computes, for each candidate reply, the cross-entropy of every candidate token given the
dialogue (context masked) plus the `<eot>` that closes the reply; this module turns those numbers into a
perplexity and decides the item. Pure functions on plain sequences (lists, tuples, 1-D numpy arrays).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def perplexity(token_cross_entropies: Iterable[float]) -> float:
    """exp(mean cross-entropy) over a candidate's tokens; the caller includes the closing `<eot>` token.

    Cross-entropies are natural-log values (nats), as torch's `cross_entropy` returns. An overflowing mean gives
    `inf`, which still ranks correctly; an empty candidate is a caller error.
    """
    values = [float(v) for v in token_cross_entropies]
    if not values:
        raise ValueError("perplexity of an empty candidate: include at least the <eot> token's cross-entropy")
    mean = math.fsum(values) / len(values)
    try:
        return math.exp(mean)
    except OverflowError:
        return math.inf


def rank_reference_first(perplexities: Sequence[float]) -> tuple[bool, int | None]:
    """(correct, index of the lowest perplexity) for candidates whose index 0 is the reference.

    Correct only when the reference's perplexity is strictly lower than every other candidate's. A tie counts as
    incorrect: a model that cannot separate the reference from a distractor has not chosen it. (The original
    code compared `min(ppl) == ppl[0]`, which scored ties as correct.) Any NaN makes the item incorrect and the
    winner None, because a NaN perplexity means the numbers were not computed properly.
    """
    values = [float(v) for v in perplexities]
    if len(values) < 2:
        raise ValueError(f"ranking needs the reference and at least one distractor, got {len(values)} values")
    if any(math.isnan(v) for v in values):
        return False, None
    lowest = min(values)
    winner = values.index(lowest)
    correct = winner == 0 and values.count(lowest) == 1
    return correct, winner
