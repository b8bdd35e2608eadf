"""Record checks of a recipe's data: which files the study reads, checked with `data.validation`, as Problems.

A study reads, from its DoIT-layout `data.root`: the curated pool of each ability (`data.pool`), the synthetic
pool (`data.synthetic_pool`), each ability's eval sets (`evaluation.splits`), the out-of-domain test sets and,
for few-shot sets, their optional `curated/dev/` shots. Every record of every one of those files that exists
is checked here as the stages would read it; a missing file is already a warning of `data_facts`. Generated
data (`data.generate`) is written by the prepare stage and is not checked.

A held-out item whose prompt occurs in a training pool the study trains on is an error naming both places,
unless `data.allow_contamination: true` (then it is a warning with the count).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.data.records import EVAL, TRAIN
from hpc_instruct.data.validation import DataFile, ValidationReport, contaminated_items, validate_files
from hpc_instruct.errors import Location, Problem
from hpc_instruct.evaluate.sets import DEV_SPLIT, classify
from hpc_instruct.recipe.data_facts import eval_file, pool_file
from hpc_instruct.recipe.schema import Recipe

ALLOW_KEY = "data.allow_contamination"


@dataclass(frozen=True)
class RecordCheck:
    """What `check_records` found: problems (errors), warnings, and the report (None: nothing was read)."""

    problems: tuple[Problem, ...]
    warnings: tuple[str, ...]
    report: ValidationReport | None


def study_files(recipe: Recipe) -> tuple[list[DataFile], list[DataFile]]:
    """(training files, held-out files) of the study that exist on disk; empty for generated data."""
    d, ev = recipe.data, recipe.evaluation
    if d.generate is not None or not d.root or not Path(d.root).is_dir():
        return [], []
    root = Path(d.root)
    training = [DataFile(pool_file(root, a, d.pool), d.pool, TRAIN, a) for a in d.abilities]
    if d.synthetic_pool:
        training.append(DataFile(root / d.synthetic_pool, "synthetic", TRAIN, None))
    held_out = [
        DataFile(eval_file(root, a, s), s, EVAL, a, classify=True) for s in ev.splits for a in d.abilities
    ]
    held_out += [
        DataFile(eval_file(root, o, "test"), "test", EVAL, o, classify=True) for o in ev.out_of_domain
    ]
    if ev.few_shot > 0:
        held_out += [
            DataFile(root / "curated" / DEV_SPLIT / f"{o}_{DEV_SPLIT}.json", DEV_SPLIT, EVAL, o)
            for o in ev.out_of_domain
        ]
    return [f for f in training if f.path.is_file()], [f for f in held_out if f.path.is_file()]


def uses_synthetic(recipe: Recipe) -> bool:
    sw = recipe.sweep
    return sw.synthetic is not None or any(m.synthetic_total_samples for m in sw.mixes)


def check_records(recipe: Recipe) -> RecordCheck:
    """Every bad record and every contaminated held-out item of the study's data, one Problem each."""
    training, held_out = study_files(recipe)
    if not training and not held_out:
        return RecordCheck((), (), None)
    report = validate_files(training + held_out, eval_check=classify)
    problems = [_problem(i.path, i.line, i.field, i.problem) for i in report.issues]
    trained_on = [
        c for c in report.files[: len(training)] if c.file.split != "synthetic" or uses_synthetic(recipe)
    ]
    # Few-shot examples are shown to the model, not asked: a dev file is not a held-out set.
    asked = [c for c in report.files[len(training) :] if c.file.split != DEV_SPLIT]
    leaks = contaminated_items(trained_on, asked)
    warnings: list[str] = []
    if leaks and recipe.data.allow_contamination:
        warnings.append(
            f"{len(leaks)} held-out item(s) share a prompt with training data "
            f"(allowed by {ALLOW_KEY}), e.g. {leaks[0].path}:{leaks[0].line}"
        )
    else:
        problems += [
            _problem(
                i.path,
                i.line,
                i.field,
                i.problem,
                f"remove one of the two, or set {ALLOW_KEY}: true to keep it",
            )
            for i in leaks
        ]
    return RecordCheck(tuple(problems), tuple(warnings), report)


def _problem(path: str, line: int, field: str, message: str, suggestion: str = "") -> Problem:
    return Problem(Location(path, line), field, message, suggestion)
