"""Writing a study's resolved recipe and plan, and reporting drift against what was there before.

`study.yaml` is the recipe after includes, environment variables and overrides, with every default spelled
out; tasks load it, so a job never depends on the submitter's shell or checkout. When a recipe changes, the
old plan is kept under `state/plans/` and the drift is reported: which trials and eval tasks are new, which are
unchanged (their outputs are reused), and which the recipe no longer has (their outputs stay on disk).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from hpc_instruct.atomic import write_json, write_text
from hpc_instruct.expansion import Expansion
from hpc_instruct.launch.plan import plan_dict
from hpc_instruct.recipe.study import Study
from hpc_instruct.study_dir import StudyDir


@dataclass(frozen=True)
class Drift:
    new_trials: int
    kept_trials: int
    dropped_trials: int
    new_eval: int
    kept_eval: int
    dropped_eval: int
    first: bool

    def describe(self) -> str:
        if self.first:
            return f"new study: {self.new_trials} trials, {self.new_eval} eval tasks"
        if not (self.new_trials or self.dropped_trials or self.new_eval or self.dropped_eval):
            return "recipe unchanged since the last submission"
        return (f"recipe changed: trials {self.new_trials} new, {self.kept_trials} unchanged, {self.dropped_trials} "
                f"no longer planned; eval tasks {self.new_eval} new, {self.kept_eval} unchanged, "
                f"{self.dropped_eval} no longer planned (outputs of dropped tasks stay on disk)")


def resolved_recipe(study: Study) -> str:
    data = _plain(dataclasses.asdict(study.recipe))
    data["study"]["output_root"] = str(study.directory.resolve().parent)
    header = ("# Resolved recipe written by hpc_instruct (includes, ${ENV} values, overrides and defaults applied).\n"
              "# Tasks load this file; edit the original recipe and resubmit instead.\n")
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def write_study(study: Study, ex: Expansion) -> Drift:
    sdir = StudyDir(study.directory)
    sdir.root.mkdir(parents=True, exist_ok=True)
    plan = plan_dict(study, ex)
    old = json.loads(sdir.plan.read_text()) if sdir.plan.is_file() else None
    drift = _drift(old, plan)
    if old is not None and (drift.new_trials or drift.dropped_trials or drift.new_eval or drift.dropped_eval):
        write_json(sdir.old_plan(time.strftime('%Y%m%d-%H%M%S')), old)
    write_text(sdir.recipe, resolved_recipe(study))
    write_json(sdir.plan, plan)
    return drift


def _drift(old: dict | None, new: dict) -> Drift:
    new_t = {t["id"] for t in new["trials"]}
    new_e = {e["id"] for e in new["eval_tasks"]}
    if old is None:
        return Drift(len(new_t), 0, 0, len(new_e), 0, 0, True)
    old_t = {t["id"] for t in old["trials"]}
    old_e = {e["id"] for e in old["eval_tasks"]}
    return Drift(len(new_t - old_t), len(new_t & old_t), len(old_t - new_t),
                 len(new_e - old_e), len(new_e & old_e), len(old_e - new_e), False)


def load_written(study_dir: Path) -> Study:
    from hpc_instruct.errors import UserError
    from hpc_instruct.recipe.study import load_study

    path = StudyDir(Path(study_dir)).recipe
    if not path.is_file():
        raise UserError(f"{study_dir} is not a study directory (no study.yaml): run `hpci run` or `hpci submit` first")
    return load_study(path)
