"""Which eval shards of a study can be trusted, and every reason the others cannot.

A planned shard is trusted only when its Parquet file exists and its `.done` marker names the EvalTask id that
the plan expects (`hpc_instruct.atomic`): a marker from an older recipe is stale, a missing marker means the
writer did not finish. Files under `eval/` that the plan does not name (an older recipe's shards, a copy, a
shard count that changed) are reported and never read. After reading, a trusted shard is still rejected when
its rows contradict its path (another task id, a changing checkpoint, the wrong number of items or items
outside its range). Nothing here averages anything: it only decides what may be averaged and says why not.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.analyze.expected import StudyPlan
from hpc_instruct.analyze.result_rows import FileSummary
from hpc_instruct.atomic import MARKER_SUFFIX, content_problem, read_marker
from hpc_instruct.expansion import EvalTask
from hpc_instruct.study_dir import SELECTED, StudyDir

# Problem kinds, in the order a researcher should look at them.
KINDS = {
    "missing": "planned shard not written (not run yet, or failed)",
    "no_marker": "shard file without its .done marker (writer killed or still running)",
    "stale_marker": "marker names another eval task (an older recipe or settings): shard not reused",
    "bad_hash": "shard content does not match the sha256 in its marker (damaged or changed after it was written): "
    "`hpci run` / `hpci resubmit` redoes it",
    "unreadable": "shard file cannot be read as Parquet",
    "bad_rows": "rows contradict the shard's task (task id, checkpoint, item count or item range)",
    "duplicate_items": "the same item appears more than once for one checkpoint and eval set",
    "unexpected_file": "Parquet file under eval/ that the plan does not name (never read)",
}


@dataclass(frozen=True)
class ShardProblem:
    kind: str  # one of KINDS
    path: str  # relative to the study directory
    task_id: str  # the planned task ('' for unexpected files)
    detail: str

    def __str__(self) -> str:
        task = f" [{self.task_id}]" if self.task_id else ""
        return f"{self.kind}: {self.path}{task}: {self.detail}"


@dataclass(frozen=True)
class Completeness:
    """How much of the plan the result files cover, and every problem found."""

    planned_shards: int
    trusted_shards: int
    planned_items: int
    trusted_items: int
    problems: tuple[ShardProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        counted = Counter(p.kind for p in self.problems)
        return {k: counted[k] for k in KINDS if counted[k]}

    def summary(self, limit: int = 20) -> str:
        """A few lines for a terminal or the report: coverage, counts per kind, then the first problems."""
        head = (
            f"{self.trusted_shards}/{self.planned_shards} planned shards trusted, "
            f"{self.trusted_items}/{self.planned_items} items"
        )
        if self.ok:
            return head + "; no problems"
        lines = [head + "; problems: " + ", ".join(f"{n} {k}" for k, n in self.counts().items())]
        lines += [f"  {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


def find_trusted(study_dir: Path, plan: StudyPlan) -> tuple[list[int], list[ShardProblem]]:
    """Indices of `plan.shards` whose file and marker are in place, and the problems of the rest.

    One walk of `eval/` finds every file; markers are read only for planned shards whose file exists.
    """
    sdir = StudyDir(study_dir)
    on_disk: set[str] = set()
    markers: set[str] = set()
    if sdir.eval_root.is_dir():
        for folder, _, names in os.walk(sdir.eval_root):
            for name in names:
                if name.startswith("."):  # a temporary file of a write in progress
                    continue
                if name.endswith(".parquet"):
                    on_disk.add(os.path.join(folder, name))
                elif name.endswith(".parquet" + MARKER_SUFFIX):
                    markers.add(os.path.join(folder, name[: -len(MARKER_SUFFIX)]))
    trusted: list[int] = []
    problems: list[ShardProblem] = []
    planned: set[str] = set()
    for i, shard in enumerate(plan.shards):
        path = str(sdir.eval_shard(shard))
        planned.add(path)
        rel = _rel(path, study_dir)
        if path not in on_disk:
            problems.append(
                ShardProblem(
                    "missing",
                    rel,
                    shard.id,
                    f"{shard.eval_set} {shard.checkpoint} shard {shard.shard + 1}/{shard.shards}",
                )
            )
        elif path not in markers:
            problems.append(ShardProblem("no_marker", rel, shard.id, "no .done marker"))
        else:
            marker = read_marker(path)
            found = marker.get("id") if marker else None
            damage = content_problem(path, marker) if found == shard.id else None
            if damage:
                advice = "damaged or changed after it was written; `hpci run` / `hpci resubmit` redoes it"
                problems.append(ShardProblem("bad_hash", rel, shard.id, f"{damage}: {advice}"))
            elif found == shard.id:
                trusted.append(i)
            else:
                problems.append(ShardProblem("stale_marker", rel, shard.id, f"marker names {found!r}"))
    for path in sorted(on_disk - planned):
        problems.append(
            ShardProblem("unexpected_file", _rel(path, study_dir), "", "not in plan.json; ignored")
        )
    return trusted, problems


def check_rows(
    study_dir: Path, shards: list[EvalTask], summary: FileSummary
) -> tuple[list[bool], list[ShardProblem]]:
    """Per read shard: do its rows agree with its task? (`summary` is aligned with `shards`.)"""
    sdir = StudyDir(study_dir)
    good: list[bool] = []
    problems: list[ShardProblem] = []
    for i, shard in enumerate(shards):
        reasons = _row_reasons(shard, summary, i)
        good.append(not reasons)
        if reasons:
            kind = "unreadable" if i in summary.unreadable else "bad_rows"
            problems.append(
                ShardProblem(
                    kind, _rel(str(sdir.eval_shard(shard)), study_dir), shard.id, "; ".join(reasons)
                )
            )
    return good, problems


def _row_reasons(shard: EvalTask, s: FileSummary, i: int) -> list[str]:
    if i in s.unreadable:
        return [s.unreadable[i]]
    expected = shard.stop - shard.start
    if int(s.rows[i]) != expected:
        return [f"{int(s.rows[i])} rows, {expected} items planned"]
    if expected == 0:
        return []
    reasons = []
    for column in ("eval_task_id", "checkpoint", "epoch", "selection_rule"):
        if s.low[column][i] != s.high[column][i]:
            reasons.append(
                f"{column} varies within the shard ({s.low[column][i]!r} .. {s.high[column][i]!r})"
            )
    if s.low["eval_task_id"][i] != shard.id:
        reasons.append(f"rows name task {s.low['eval_task_id'][i]!r}")
    if shard.checkpoint != SELECTED and s.low["checkpoint"][i] != shard.checkpoint:
        reasons.append(f"rows name checkpoint {s.low['checkpoint'][i]!r}, path says {shard.checkpoint!r}")
    if shard.checkpoint == SELECTED and not str(s.low["checkpoint"][i] or "").startswith("epoch-"):
        reasons.append(f"selected-checkpoint rows name {s.low['checkpoint'][i]!r}, not the chosen epoch")
    if int(s.item_min[i]) < shard.start or int(s.item_max[i]) >= shard.stop:
        reasons.append(
            f"item_index {int(s.item_min[i])}..{int(s.item_max[i])} outside {shard.start}..{shard.stop - 1}"
        )
    return reasons


def _rel(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
