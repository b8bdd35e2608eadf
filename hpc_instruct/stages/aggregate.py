"""The aggregate stage: scores, analysis and report for the whole study, as one task.

The task is done (marker next to `results/report.html`) only when every planned shard was there and trusted:
an incomplete study still gets its tables and report (so a researcher can look), but the task fails with the
missing shards listed, so `hpci status` shows it and `hpci resubmit` runs it again once they exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpc_instruct.atomic import write_marker
from hpc_instruct.errors import UserError
from hpc_instruct.expansion import Expansion
from hpc_instruct.recipe.study import Study
from hpc_instruct.stages.context import TaskContext
from hpc_instruct.study_dir import StudyDir

if TYPE_CHECKING:
    from hpc_instruct.analyze.expected import StudyPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AggregateContext:
    study: Study
    sdir: StudyDir
    expansion: Expansion
    task_id: str
    output: Path  # results/report.html


def context(base: TaskContext) -> AggregateContext:
    return AggregateContext(base.study, base.sdir, base.expansion, base.task_id, base.output)


def stage_plan(study: Study, expansion: Expansion) -> StudyPlan:
    """What analysis expects, from the job's own expansion and data facts: the plan that `plan.json` holds
    (`hpci report` reads that), so the stage's report and a later one agree on provenance and inputs id."""
    from hpc_instruct.analyze.expected import plan_from_expansion

    facts, recipe = study.facts, study.recipe
    return plan_from_expansion(expansion, recipe.study.name, fingerprint=facts.fingerprint,
                               pool_sizes=facts.pool_sizes, synthetic_pool=facts.synthetic_size,
                               out_of_domain=tuple(recipe.evaluation.out_of_domain))


def run(ctx: AggregateContext) -> None:
    from hpc_instruct.analyze.aggregate import aggregate_study
    from hpc_instruct.analyze.analysis import analyze_study
    from hpc_instruct.analyze.report import write_report

    result = aggregate_study(ctx.sdir.root, plan=stage_plan(ctx.study, ctx.expansion))
    analysis = analyze_study(ctx.sdir.root, aggregate=result)
    report = write_report(ctx.sdir.root, analysis=analysis)
    log.info("report: %s", report)
    if not result.completeness.ok:
        raise UserError("study incomplete, report written from what exists:\n" + result.completeness.summary())
    write_marker(report, ctx.task_id)
