"""Running tasks: the single entry point behind every executor (local, debug, Slurm/submitit, plain sbatch).

An array element runs a list of task ids of one stage: each is skipped when its marker says done, otherwise
the stage (`hpc_instruct.stages.STAGES`, an explicit registry) runs it with a `TaskContext`.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

from hpc_instruct.expansion import Expansion
from hpc_instruct.launch import early_signal
from hpc_instruct.launch.tasks import Task, build_tasks
from hpc_instruct.recipe.study import Study, load_study
from hpc_instruct.stages import STAGES
from hpc_instruct.stages.context import TaskContext
from hpc_instruct.study_dir import StudyDir

log = logging.getLogger(__name__)


@functools.cache
def _load(study_dir: str) -> tuple[Study, Expansion, dict[str, Task]]:
    study = load_study(StudyDir(Path(study_dir)).recipe)
    ex = study.expand()
    return study, ex, {t.id: t for t in build_tasks(study, ex)}


def task_context(study_dir: str, task_id: str) -> TaskContext:
    """What the stage of task `task_id` of the study at `study_dir` runs with."""
    study, ex, tasks = _load(str(study_dir))
    task, sdir = tasks[task_id], StudyDir(Path(study_dir))
    return TaskContext(study, sdir, ex, task.id, sdir.root / task.output, task.after)


def run_tasks(study_dir: str, stage: str, task_ids: list[str]) -> list[str]:
    """Run the given tasks of one stage in order; returns the ids that ran (not skipped as done)."""
    study, ex, tasks = _load(str(study_dir))
    sdir = StudyDir(Path(study_dir))
    ran, errors = [], []
    for tid in task_ids:
        task = tasks.get(tid)
        if task is None:
            raise KeyError(f"task {tid} is not in the study's current plan (recipe changed since submission?)")
        if task.done(sdir):
            log.info("skip %s %s: done", stage, tid)
            continue
        before = [tasks.get(task.after)] if stage == "train" else []
        before += [tasks.get(n) for n in task.needs]  # a pretrained base its trial starts from / its eval loads
        missing = [b for b in before if b is not None and not b.done(sdir)]
        if missing:
            # Slurm starts a train array `afterany` its prepare (and base) arrays, so one failed mixture does not
            # cancel every trial: the trial whose own mixture or base is missing fails here, with the reason. (An
            # eval task checks the checkpoint export it reads itself.)
            what = ", ".join(f"{b.stage} {b.id} ({b.label})" for b in missing)
            exc = RuntimeError(f"{stage} {tid} ({task.label}) needs {what}, which has not finished: "
                               f"see `hpci status {study_dir}`")
            if len(task_ids) == 1:
                raise exc
            log.error("%s", exc)
            errors.append((tid, exc))
            continue
        log.info("run %s %s (%s)", stage, tid, task.label)
        try:
            STAGES[stage](task_context(study_dir, tid))
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
        # submitit's USR2 handler is in place now: a warning held back since start-up requeues the job here.
        early_signal.release()
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
