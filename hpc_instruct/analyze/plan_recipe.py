"""`hpci plan-data STUDY --budget N --write`: a recipe that measures the plan instead of only predicting it.

The written recipe is the study's resolved recipe (study.yaml: same models, data, training, evaluation and
seeds) with its sweep replaced by three mixes at the same budget on the planned model: `mix-plan-N` (the
allocation), `mix-uniform-N` (the uniform split) and `mix-reconstruct-N` (the paper's reconstruct mix, when the
study has its abilities). Each mix carries the planner's predictions (`predicted`: per ability and 'overall',
the plain mean over abilities, as the report measures it), so the new study's report sets measured beside
predicted and gives the measured difference plan - uniform with its interval. The study is named
`<study>-plan-N` and lives next to the original. An arm whose split equals an earlier one's (the plan can be the
uniform split) is not written twice: the two would be one trial, and the recipe says which arm measures both.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from hpc_instruct.analyze.allocation import Allocation
from hpc_instruct.atomic import write_text
from hpc_instruct.errors import UserError
from hpc_instruct.study_dir import StudyDir

ARMS = ("plan", "uniform", "reconstruct")


def plan_recipe(study_dir: str | os.PathLike, allocation: Allocation) -> dict:
    """The recipe tree (a dict ready for YAML) that runs the plan, uniform and reconstruct arms."""
    sdir = StudyDir(Path(study_dir))
    if not sdir.recipe.is_file():
        raise UserError(f"{sdir.recipe}: the study has no resolved recipe (study.yaml) to derive a recipe from")
    tree = yaml.safe_load(sdir.recipe.read_text(encoding="utf-8")) or {}
    table = allocation.comparison.set_index("ability").drop(index="weighted mean")
    seeds = (tree.get("sweep") or {}).get("seeds", [0])
    mixes = []
    for arm, counts, same_as in arm_splits(allocation):
        if same_as:
            continue
        predicted = {a: round(float(v), 4) for a, v in table[f"{arm}_predicted"].items()}
        predicted["overall"] = round(sum(predicted.values()) / len(predicted), 4)
        mixes.append({"name": f"mix-{arm}-{allocation.budget}", "samples_per_ability": counts, "cap": True,
                      "models": [allocation.model], "predicted": predicted})
    tree["sweep"] = {"seeds": seeds, "mixes": mixes}
    study = dict(tree.get("study") or {})
    study["name"] = f"{study.get('name', Path(study_dir).name)}-plan-{allocation.budget}"
    study["description"] = (f"measures the data plan of {study_dir} ({allocation.budget:,} samples on "
                            f"{allocation.model}) against the uniform and reconstruct splits"
                            + "".join(f"; {note}" for note in same_splits(allocation)))
    tree["study"] = study
    return tree


def arm_splits(allocation: Allocation) -> list[tuple[str, dict[str, int], str]]:
    """(arm, samples per ability, the earlier arm with the same split or '') for each arm the allocation has."""
    table = allocation.comparison.set_index("ability").drop(index="weighted mean")
    out, seen = [], {}
    for arm in ARMS:
        if f"{arm}_samples" in table.columns:
            counts = {a: int(n) for a, n in table[f"{arm}_samples"].items() if int(n) > 0}
            key = tuple(sorted(counts.items()))
            out.append((arm, counts, seen.get(key, "")))
            seen.setdefault(key, arm)
    return out


def same_splits(allocation: Allocation) -> list[str]:
    """'the plan split is the uniform split: ...', one line per arm not written twice."""
    return [f"the {arm} split is the {first} split: mix-{first}-{allocation.budget} measures both"
            for arm, _, first in arm_splits(allocation) if first]


def write_plan_recipe(study_dir: str | os.PathLike, allocation: Allocation) -> Path:
    """Write results/plan-<N>.yaml (its first line is the command that runs it); returns the path."""
    tree = plan_recipe(study_dir, allocation)
    path = StudyDir(Path(study_dir)).plan_recipe(allocation.budget)
    text = (f"# hpci run {path}\n# Written by `hpci plan-data --write`: the plan, the uniform split and the "
            "reconstruct mix at the same budget, each with the planner's prediction.\n"
            + "".join(f"# Note: {note}.\n" for note in same_splits(allocation))
            + yaml.safe_dump(tree, sort_keys=False, allow_unicode=True))
    write_text(path, text)
    return path
