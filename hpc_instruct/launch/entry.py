"""Running tasks: the single entry point behind every executor (local, debug, Slurm/submitit, plain sbatch).

An array element runs a list of task ids of one stage: each is skipped when its marker says done, otherwise
the stage's function runs it. Stage functions live with their concern and are imported lazily:
    prepare -> hpc_instruct.data.prepare:run_prepare      train -> hpc_instruct.train.task:run_train
    eval    -> hpc_instruct.evaluate.task:run_eval        aggregate -> hpc_instruct.analyze.task:run_aggregate
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.launch.layout import StudyLayout
from hpc_instruct.launch.tasks import Task, build_tasks
from hpc_instruct.recipe.expand import EvalTask, Expansion, Trial
from hpc_instruct.recipe.study import Study, load_study

log = logging.getLogger(__name__)

STAGE_FUNCTIONS = {
    "prepare": "hpc_instruct.data.prepare:run_prepare",
    "train": "hpc_instruct.train.task:run_train",
    "eval": "hpc_instruct.evaluate.task:run_eval",
    "aggregate": "hpc_instruct.analyze.task:run_aggregate",
}


@dataclass(frozen=True)
class TaskContext:
    """Everything a stage function needs: the study, its directory, the expansion, and the task."""

    study: Study
    layout: StudyLayout
    expansion: Expansion
    task: Task

    @property
    def output(self) -> Path:
        return self.layout.root / self.task.output

    def trial(self, trial_id: str | None = None) -> Trial:
        tid = trial_id or self.task.id
        return next(t for t in self.expansion.trials if t.id == tid)

    def eval_task(self) -> EvalTask:
        return next(e for e in self.expansion.eval_tasks if e.id == self.task.id)

    def trials_of_mixture(self) -> list[Trial]:
        """Trials whose training data this prepare task produces."""
        tasks = self.tasks
        return [self.trial(t.id) for t in tasks if t.stage == "train" and t.after == self.task.id]

    @functools.cached_property
    def tasks(self) -> list[Task]:
        return build_tasks(self.study, self.expansion)


@functools.cache
def _load(study_dir: str) -> tuple[Study, Expansion, dict[str, Task]]:
    study = load_study(Path(study_dir) / "study.yaml")
    ex = study.expand()
    return study, ex, {t.id: t for t in build_tasks(study, ex)}


def stage_function(stage: str):
    module, _, name = STAGE_FUNCTIONS[stage].partition(":")
    return getattr(importlib.import_module(module), name)


def run_tasks(study_dir: str, stage: str, task_ids: list[str]) -> list[str]:
    """Run the given tasks of one stage in order; returns the ids that ran (not skipped as done)."""
    study, ex, tasks = _load(str(study_dir))
    layout = StudyLayout(Path(study_dir))
    ran, errors = [], []
    for tid in task_ids:
        task = tasks.get(tid)
        if task is None:
            raise KeyError(f"task {tid} is not in the study's current plan (recipe changed since submission?)")
        if task.done(layout):
            log.info("skip %s %s: done", stage, tid)
            continue
        before = tasks.get(task.after) if stage == "train" else None
        if before is not None and not before.done(layout):
            # Slurm starts a train array `afterany` its prepare array, so one failed mixture does not cancel
            # every trial: the trial whose own mixture is missing fails here, with the reason. (An eval task
            # checks the checkpoint export it reads itself.)
            exc = RuntimeError(f"{stage} {tid} ({task.label}) needs {before.stage} {before.id} ({before.label}), "
                               f"which has not finished: see `hpci status {study_dir}`")
            if len(task_ids) == 1:
                raise exc
            log.error("%s", exc)
            errors.append((tid, exc))
            continue
        log.info("run %s %s (%s)", stage, tid, task.label)
        try:
            stage_function(stage)(TaskContext(study, layout, ex, task))
        except Exception as exc:
            if len(task_ids) == 1:
                raise
            log.exception("%s %s failed; going on with the element's other tasks", stage, tid)
            errors.append((tid, exc))
            continue
        ran.append(tid)
    if errors:  # the element fails (so Slurm and status say so) after doing all it could
        shown = "; ".join(f"{tid}: {type(e).__name__}: {e}" for tid, e in errors[:3])
        more = f"; and {len(errors) - 3} more (see the log above)" if len(errors) > 3 else ""
        raise RuntimeError(f"{len(errors)} of {len(task_ids)} {stage} tasks failed: {shown}{more}") from errors[0][1]
    return ran


class ElementRunner:
    """A picklable callable for submitit: runs one array element; on the warning signal it is requeued.

    Subclassing submitit.helpers.Checkpointable would import submitit on every path; instead `checkpoint`
    follows its protocol: it returns the same call to be resubmitted, and work already marked done is skipped
    on the requeued run, while a task in progress resumes from its own checkpoints.
    """

    def __call__(self, study_dir: str, stage: str, task_ids: list[str]) -> list[str]:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            stream=sys.stderr)
        return run_tasks(study_dir, stage, task_ids)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """`python -m hpc_instruct.launch.entry STAGE STUDY_DIR TASK_ID...` (what torchrun and sbatch templates run)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3:
        print("usage: python -m hpc_instruct.launch.entry STAGE STUDY_DIR TASK_ID [TASK_ID ...]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_tasks(argv[1], argv[0], argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
