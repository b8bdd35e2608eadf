"""Offline analysis of a study's evaluation results (no GPU, no torch): `hpci aggregate | report | plan-data`.

Entry points (imported lazily, so `import hpc_instruct.analyze` stays cheap on a login node):
    aggregate_study(study_dir, *, strict=False, n_boot=1000, seed=0, engine="auto") -> AggregateResult
    analyze_study(study_dir, *, budget=None, weights=None, model=None) -> Analysis
    write_report(study_dir, *, analysis=None, smooth=True, budget=None) -> Path   (results/report.html)
    plan_allocation(study_dir, budget, weights=None, model=None, caps=None, extrapolate=4.0) -> Allocation

Modules, one concern each: expected (what the plan promises), shards (what can be trusted), result_rows
(projected reading), bootstrap (paired item bootstrap), selection (checkpoint choice), aggregate (scores.parquet),
fits / curves / sensitivity / efficiency / transfer / allocation (the study's questions), plan_check (the planner's
predictions against measured mixes), plan_recipe (`plan-data --write`), parse_failures, claims (which rankings
and signs the intervals support), answers (the four questions, answered first), plots / answer_plots,
report_content / report (rendering).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_ENTRY_POINTS = {
    "aggregate_study": "hpc_instruct.analyze.aggregate",
    "AggregateResult": "hpc_instruct.analyze.aggregate",
    "IncompleteStudyError": "hpc_instruct.analyze.aggregate",
    "analyze_study": "hpc_instruct.analyze.analysis",
    "plan_allocation": "hpc_instruct.analyze.analysis",
    "Analysis": "hpc_instruct.analyze.analysis",
    "Allocation": "hpc_instruct.analyze.allocation",
    "write_report": "hpc_instruct.analyze.report",
}
__all__ = sorted(_ENTRY_POINTS)


def __getattr__(name: str) -> Any:
    if name in _ENTRY_POINTS:
        return getattr(import_module(_ENTRY_POINTS[name]), name)
    raise AttributeError(f"module 'hpc_instruct.analyze' has no attribute {name!r}")
