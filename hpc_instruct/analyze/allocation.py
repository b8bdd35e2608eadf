"""The data allocation planner: split a budget of curated samples across abilities to maximise the (weighted)
mean predicted score, from the fitted growth curves of one model.

Each ability's prediction is its preferred curated curve (curves.py) for n >= 1 and the base model's score at
n = 0. The fitted forms are concave in n, so adding samples one step at a time where the weighted marginal gain
is largest (greedy, a heap) is optimal for integer counts up to the step size; where noisy fits are not concave
the plan falls back to the uniform or reconstruct split if that predicts more, so it never loses to them. Counts are capped by each pool
(plan.json), by optional caps, and by `extrapolate` x the largest volume the study observed (curves are not to be
trusted far beyond their data; allocations past the observed range are listed). The plan is compared, on the
same curves, with the uniform split and with the paper's "reconstruct" mix (ethics 64, role_play 64,
creative_writing 1000, the rest equal and capped; scaled to the budget, exact at 10,000). The result carries a
recipe snippet (`sweep.mixes`, `cap: true`) so the next study tests the plan.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpc_instruct.analyze.curves import Curve

RECONSTRUCT_FIXED = {"ethics": 64, "role_play": 64, "creative_writing": 1000}
RECONSTRUCT_BUDGET = 10000


@dataclass(frozen=True)
class Allocation:
    model: str
    budget: int
    weights: Mapping[str, float]
    counts: Mapping[str, int]  # the plan
    predicted: Mapping[str, float]  # per-ability predicted accuracy under the plan
    score: float  # weighted mean predicted accuracy under the plan
    uniform_counts: Mapping[str, int]
    uniform_score: float
    gain_over_uniform: float  # points
    comparison: pd.DataFrame  # per ability and in total: plan, uniform, reconstruct counts and predictions
    extrapolated: tuple[str, ...]  # abilities given more than the largest volume observed
    unallocated: int  # budget left when every cap is reached
    recipe_snippet: str


def allocate(
    curves: Mapping[str, Curve],
    base: Mapping[str, float],
    budget: int,
    model: str,
    weights: Mapping[str, float] | None = None,
    caps: Mapping[str, int] | None = None,
    extrapolate: float = 4.0,
    step: int | None = None,
) -> Allocation:
    """Plan `budget` samples over the abilities of `curves` (ability -> the model's curated curve).

    Args:
        base: ability -> the base model's accuracy (the prediction at n = 0); a missing one uses the curve at 1.
        weights: ability -> weight; the key 'default' sets unnamed abilities (default 1).
        caps: ability -> most samples available (pool sizes); 'extrapolate' x the largest observed volume also caps.
        step: samples added per greedy step (default: budget / 2000, at least 1).
    """
    abilities = sorted(curves)
    weights = weights or {}
    w = {a: float(weights.get(a, weights.get("default", 1.0))) for a in abilities}
    if sum(w.values()) <= 0:
        raise ValueError("allocation weights must have a positive sum")
    limit = {
        a: int(min((caps or {}).get(a, 10**12), math.floor(extrapolate * curves[a].volumes.max())))
        for a in abilities
    }
    predict = {a: predictor(curves[a], base.get(a)) for a in abilities}
    step = step or max(1, budget // 2000)
    uniform = capped_split(budget, {a: 1.0 for a in abilities}, limit)
    plans = {"plan": _greedy(abilities, predict, w, limit, budget, step), "uniform": uniform}
    if set(RECONSTRUCT_FIXED) <= set(abilities):
        plans["reconstruct"] = reconstruct(budget, abilities, limit)
    score = {name: _mean(p, predict, w) for name, p in plans.items()}
    # Greedy is optimal only for concave curves; a noisy fit (a negative slope, the jump from the base score at
    # n = 0) is not. So the best split found is improved by moving samples between abilities while that helps,
    # and the plan is never worse than the split it is compared with.
    best = max(plans, key=score.get)
    plans["plan"] = _move_while_better(dict(plans[best]), predict, w, limit, max(step, budget // 64))
    score["plan"] = _mean(plans["plan"], predict, w)
    counts = plans["plan"]
    table = _comparison(plans, predict, w, score)
    extrapolated = tuple(a for a in abilities if counts[a] > curves[a].volumes.max())
    unallocated = budget - sum(counts.values())
    snippet = recipe_snippet(counts, model, budget, score["plan"], score["uniform"])
    return Allocation(
        model,
        budget,
        w,
        counts,
        {a: float(predict[a](counts[a])) for a in abilities},
        score["plan"],
        uniform,
        score["uniform"],
        score["plan"] - score["uniform"],
        table,
        extrapolated,
        unallocated,
        snippet,
    )


def predictor(curve: Curve, base: float | None):
    """Predicted accuracy at n samples of one ability: the curve for n >= 1 (at most 100), `base` at n = 0."""
    at_one = float(curve.predict(1.0))
    zero = base if base is not None and np.isfinite(base) else at_one

    def f(n: int) -> float:
        return zero if n <= 0 else float(np.clip(curve.predict(float(n)), 0.0, 100.0))

    return f


def _greedy(abilities, predict, w, limit, budget, step) -> dict[str, int]:
    counts = {a: 0 for a in abilities}
    left = budget

    def gain(a: str) -> tuple[float, int]:
        size = min(step, limit[a] - counts[a], left)
        if size <= 0:
            return -math.inf, 0
        return w[a] * (predict[a](counts[a] + size) - predict[a](counts[a])) / size, size

    heap = [(-g, a, s) for a in abilities for g, s in [gain(a)] if s > 0]
    heapq.heapify(heap)
    while heap and left > 0:
        neg, a, size = heapq.heappop(heap)
        current, size_now = gain(a)  # `left` may have shrunk since this entry was pushed
        if size_now <= 0:
            continue
        if current < -neg - 1e-12:  # stale entry: push the up-to-date gain back
            heapq.heappush(heap, (-current, a, size_now))
            continue
        counts[a] += size_now
        left -= size_now
        nxt, s = gain(a)
        if s > 0:
            heapq.heappush(heap, (-nxt, a, s))
    return counts


def _move_while_better(counts: dict[str, int], predict, w, limit, step: int) -> dict[str, int]:
    """Local search: move `step` samples from one ability to another while the weighted total rises, then halve
    the step, down to one sample. The budget stays the same and every count stays within [0, its limit]."""
    value = {a: w[a] * predict[a](n) for a, n in counts.items()}
    while step >= 1:
        moved = True
        while moved:
            moved = False
            best = (1e-9, None, None, 0)
            for give in counts:
                size_give = min(step, counts[give])
                if size_give <= 0:
                    continue
                loss = value[give] - w[give] * predict[give](counts[give] - size_give)
                for take in counts:
                    size = min(size_give, limit[take] - counts[take])
                    if take == give or size <= 0:
                        continue
                    if size < size_give:
                        loss_now = value[give] - w[give] * predict[give](counts[give] - size)
                    else:
                        loss_now = loss
                    gain = w[take] * predict[take](counts[take] + size) - value[take] - loss_now
                    if gain > best[0]:
                        best = (gain, give, take, size)
            _, give, take, size = best
            if give is not None:
                counts[give] -= size
                counts[take] += size
                value[give] = w[give] * predict[give](counts[give])
                value[take] = w[take] * predict[take](counts[take])
                moved = True
        step //= 2
    return counts


def capped_split(budget: int, shares: Mapping[str, float], limit: Mapping[str, int]) -> dict[str, int]:
    """Split `budget` in proportion to `shares`, capping at `limit` and re-spreading what capped ones leave."""
    counts = {a: 0 for a in shares}
    open_ = {a for a, s in shares.items() if s > 0}
    left = budget
    while left > 0 and open_:
        total = sum(shares[a] for a in open_)
        given = {a: min(limit[a] - counts[a], math.floor(left * shares[a] / total)) for a in open_}
        if not any(given.values()):  # remainders smaller than one per ability: hand them out one by one
            for a in sorted(open_, key=lambda a: (-shares[a], a)):  # ties by name: not by set order
                if left and counts[a] < limit[a]:
                    counts[a] += 1
                    left -= 1
            open_ = {a for a in open_ if counts[a] < limit[a]}
            continue
        for a, g in given.items():
            counts[a] += g
            left -= g
        open_ = {a for a in open_ if counts[a] < limit[a]}
    return counts


def reconstruct(budget: int, abilities: list[str], limit: Mapping[str, int]) -> dict[str, int]:
    """The paper's reconstruct mix scaled to `budget`: fixed ethics/role_play/creative_writing, the rest equal."""
    scale = budget / RECONSTRUCT_BUDGET
    fixed = {a: min(limit[a], round(n * scale)) for a, n in RECONSTRUCT_FIXED.items()}
    rest = [a for a in abilities if a not in fixed]
    counts = capped_split(budget - sum(fixed.values()), {a: 1.0 for a in rest}, limit)
    return fixed | counts


def _mean(counts: Mapping[str, int], predict, w) -> float:
    return sum(w[a] * predict[a](counts[a]) for a in counts) / sum(w[a] for a in counts)


def _comparison(plans: dict, predict, w, score) -> pd.DataFrame:
    rows = []
    for a in next(iter(plans.values())):
        row = {"ability": a, "weight": w[a]}
        for name, p in plans.items():
            row[f"{name}_samples"] = p[a]
            row[f"{name}_predicted"] = float(predict[a](p[a]))
        rows.append(row)
    total = {"ability": "weighted mean", "weight": sum(w.values())}
    for name, p in plans.items():
        total[f"{name}_samples"] = sum(p.values())
        total[f"{name}_predicted"] = score[name]
    return pd.DataFrame(rows + [total])


def recipe_snippet(counts: Mapping[str, int], model: str, budget: int, score: float, uniform: float) -> str:
    """A `sweep.mixes` entry to paste into the next recipe (the `cap: true` keeps it valid if pools are smaller)."""
    per = ", ".join(f"{a}: {n}" for a, n in counts.items() if n > 0)
    return (
        f"# planned by hpc_instruct.analyze.allocation: {budget:,} samples for {model}; predicted weighted mean "
        f"{score:.1f} (uniform split {uniform:.1f})\n"
        "sweep:\n  mixes:\n"
        f"    - name: planned-{budget}\n"
        f"      samples_per_ability: {{{per}}}\n"
        "      cap: true\n"
        f"      models: [{model}]\n"
    )
