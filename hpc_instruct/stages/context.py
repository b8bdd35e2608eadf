"""What every stage task gets from the launcher: the study, its directory, its expansion, and which task it is.

Each stage module turns this into its own typed context (`PrepareContext`, `TrainContext`, `EvalContext`,
`AggregateContext`) holding exactly what that stage reads, resolved by id in O(1) from the `Expansion`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.expansion import Expansion
from hpc_instruct.recipe.study import Study
from hpc_instruct.study_dir import StudyDir


@dataclass(frozen=True)
class TaskContext:
    """One task of one stage: `task_id` is its content hash, `output` the file whose marker says it is done,
    `after` the id of the task whose output it reads ("" when none)."""

    study: Study
    sdir: StudyDir
    expansion: Expansion
    task_id: str
    output: Path
    after: str = ""
