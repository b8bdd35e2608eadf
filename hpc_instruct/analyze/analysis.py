"""The study's answers in one object: aggregate, then growth curves, sensitivity, curated vs synthetic, transfer
and a data allocation. Entry points for `hpci report` (via report.py) and `hpci plan-data`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hpc_instruct.analyze.aggregate import AggregateResult, aggregate_study
from hpc_instruct.analyze.allocation import Allocation, allocate
from hpc_instruct.analyze.curves import Curve, curve_means, curve_table, fit_curves, growth_points
from hpc_instruct.analyze.efficiency import synthetic_efficiency
from hpc_instruct.analyze.parse_failures import parse_failures
from hpc_instruct.analyze.plan_check import PlanCheck, check_plan, stated_predictions
from hpc_instruct.analyze.selection import OVERALL
from hpc_instruct.analyze.sensitivity import Sensitivity, sensitivity
from hpc_instruct.analyze.transfer import Transfer, transfer
from hpc_instruct.atomic import write_json, write_text
from hpc_instruct.errors import UserError
from hpc_instruct.expansion import BASE_SOURCE
from hpc_instruct.study_dir import StudyDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Analysis:
    aggregate: AggregateResult
    points: pd.DataFrame  # growth points: reported curated/synthetic scores with their volume
    means: pd.DataFrame  # the same, averaged over seeds (what the plots draw)
    curves: Mapping[tuple[str, str, str], Curve]  # (ability, source, model) -> fits
    curve_table: pd.DataFrame
    sensitivity: Sensitivity
    efficiency: pd.DataFrame
    transfer: Transfer
    allocation: Allocation | None
    plan_check: PlanCheck  # the planner's predictions against every measured mix (held-out mixes included)
    parse_failures: pd.DataFrame  # per ability and model: generated replies with no parsed answer

    @property
    def plan(self):
        return self.aggregate.plan


def analyze_study(
    study_dir: str | os.PathLike,
    *,
    aggregate: AggregateResult | None = None,
    budget: int | None = None,
    weights: Mapping[str, float] | None = None,
    model: str | None = None,
    strict: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> Analysis:
    """Aggregate `study_dir` (unless `aggregate` is given) and run every analysis on the complete reported rows.

    The allocation uses `budget` (default: `default_budget`) on `model` (default: the largest model with
    curated curves).
    """
    agg = aggregate or aggregate_study(study_dir, strict=strict, n_boot=n_boot, seed=seed)
    plan = agg.plan
    reported = agg.reported()
    points = growth_points(reported, plan)
    curves = fit_curves(points, agg.replicates_of)
    sens = sensitivity(points, plan.abilities, agg.replicates_of)
    eff = synthetic_efficiency(curves, len(plan.abilities), seed=seed)
    moved = transfer(reported, plan, agg.replicates_of)
    allocation = None
    curated = {k: c for k, c in curves.items() if k[1] == "curated" and k[0] in plan.abilities}
    if curated:
        model = model or max({k[2] for k in curated}, key=lambda m: (_params(curves, m), m))
        budget = budget or default_budget(points, plan)
        allocation = allocation_for(agg, curves, budget, model, weights)
    checked = check_plan(reported, curves, plan.abilities, stated_predictions(study_dir), agg.replicates_of)
    return Analysis(
        agg, points, curve_means(points), curves, curve_table(curves), sens, eff, moved, allocation, checked,
        parse_failures(agg),
    )


def default_budget(points: pd.DataFrame, plan) -> int:
    """The largest curated volume the study ran, in total (N x abilities), that leaves room to reallocate: at
    most half of all pools together. DoIT: 1,000 x 10 = 10,000 of ~41k pooled samples, the paper's budget."""
    volumes = sorted(points.loc[points["source"] == "curated", "volume"].unique())
    pooled = sum(plan.pool_sizes.get(a, 0) for a in plan.abilities) or float("inf")
    totals = [int(v * len(plan.abilities)) for v in volumes]
    fitting = [t for t in totals if t <= pooled / 2]
    return fitting[-1] if fitting else totals[0]


def allocation_for(
    agg: AggregateResult,
    curves: Mapping[tuple[str, str, str], Curve],
    budget: int,
    model: str,
    weights: Mapping[str, float] | None = None,
    caps: Mapping[str, int] | None = None,
    extrapolate: float = 4.0,
) -> Allocation:
    """The allocation of `budget` on `model`'s curated curves, capped by the study's pools."""
    plan = agg.plan
    mine = {
        k[0]: c for k, c in curves.items() if k[1] == "curated" and k[2] == model and k[0] in plan.abilities
    }
    if not mine:
        known = sorted({k[2] for k in curves if k[1] == "curated"})
        raise UserError(
            f"no curated growth curves for model {model!r} (models with curves: {', '.join(known) or 'none'})"
        )
    reported = agg.reported()
    base_rows = reported[
        (reported["source"] == BASE_SOURCE) & (reported["model"] == model) & (reported["ability"] != OVERALL)
    ]
    base = dict(zip(base_rows["ability"], base_rows["accuracy"], strict=True))
    limits = {a: n for a, n in plan.pool_sizes.items() if n > 0}
    limits.update(caps or {})
    return allocate(mine, base, budget, model, weights, limits, extrapolate)


def plan_allocation(
    study_dir: str | os.PathLike,
    budget: int,
    weights: Mapping[str, float] | None = None,
    model: str | None = None,
    caps: Mapping[str, int] | None = None,
    extrapolate: float = 4.0,
    write: bool = True,
) -> Allocation:
    """`hpci plan-data STUDY --budget N`: aggregate, fit, allocate; writes results/allocation-<N>.yaml and .json."""
    if budget <= 0:
        raise UserError(f"budget must be a positive number of samples, got {budget}")
    agg = aggregate_study(study_dir, write=False)
    points = growth_points(agg.reported(), agg.plan)
    curves = fit_curves(points, agg.replicates_of)
    curated = sorted({k[2] for k in curves if k[1] == "curated"}, key=lambda m: (_params(curves, m), m))
    if not curated:
        raise UserError(
            f"{study_dir}: no curated growth curves yet (need complete scores at two volumes or more)"
        )
    result = allocation_for(agg, curves, budget, model or curated[-1], weights, caps, extrapolate)
    if write:
        sdir = StudyDir(Path(study_dir))
        write_text(sdir.allocation(budget, "yaml"), result.recipe_snippet)
        write_json(sdir.allocation(budget, "json"), allocation_json(result))
    return result


def allocation_json(a: Allocation) -> dict:
    """The allocation as JSON-ready data (what `hpci plan-data --format json` would print)."""
    return {
        "model": a.model,
        "budget": a.budget,
        "weights": dict(a.weights),
        "counts": dict(a.counts),
        "predicted": dict(a.predicted),
        "score": a.score,
        "uniform_counts": dict(a.uniform_counts),
        "uniform_score": a.uniform_score,
        "gain_over_uniform": a.gain_over_uniform,
        "extrapolated": list(a.extrapolated),
        "unallocated": a.unallocated,
        "recipe_snippet": a.recipe_snippet,
        "comparison": json.loads(a.comparison.to_json(orient="records")),
    }


def _params(curves: Mapping[tuple[str, str, str], Curve], model: str) -> int:
    return max(c.num_parameters for k, c in curves.items() if k[2] == model)
