"""The Slurm executor: the stage graph as a handful of array jobs chained by Slurm dependencies, via submitit.

One sbatch per stage and resource shape (split only to respect MaxArraySize), never one per task:
- prepare: one array, an element per mixture;
- base: one array per layout, an element per pretrained base model (`models[].pretrain`), no dependency (it
  builds the study tokenizer itself, under the study's lock);
- train: one array per layout (nodes x GPUs), an element per trial, `afterany` on prepare and base: a trial whose
  own mixture or base failed fails at once with that reason, and one bad mixture does not cancel every other trial;
- eval: for each train array, `slots` arrays whose element i runs a share of trial i's shards, with
  `aftercorr` on the train array, so a trial's evaluation starts as soon as *that* trial has finished (no
  polling on the login node); the test-on-selected shards follow in one more array, `aftercorr` on the slots;
  shards of already-trained trials and base models go into plain arrays (`afterany` on the base arrays for the
  base checkpoint of a pretrained model);
- aggregate: one task, `afterany` on every eval array (it reports what is missing).
`--kill-on-invalid-dep=yes` removes work whose predecessor failed, so it shows as failed, never pending forever.
Tasks already done, pending or running are not submitted again.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.expansion import Expansion
from hpc_instruct.launch import slurm_query
from hpc_instruct.launch.early_signal import shielded_python
from hpc_instruct.launch.entry import ElementRunner
from hpc_instruct.launch.lock import launch_lock
from hpc_instruct.launch.snapshot import job_setup, snapshot
from hpc_instruct.launch.state import Submission, record_submission, statuses
from hpc_instruct.launch.tasks import Resources, Task, build_tasks, resources, thread_env
from hpc_instruct.recipe.study import Study
from hpc_instruct.study_dir import StudyDir


@dataclass(frozen=True)
class SubmitOptions:
    time_factor: float = 1.0  # resubmit with more time ...
    mem_factor: float = 1.0  # ... or more memory
    slots_per_trial: int = 4  # eval arrays per train array
    max_array_size: int | None = None  # default: the cluster's MaxArraySize


@dataclass(frozen=True)
class SubmitReport:
    submissions: list[Submission]
    skipped_done: int
    skipped_active: int

    @property
    def sbatch_calls(self) -> int:
        return len(self.submissions)


class _Submitter:
    def __init__(self, study: Study, opts: SubmitOptions, code_dir: Path):
        self.study, self.opts, self.code_dir = study, opts, code_dir
        self.sdir = StudyDir(study.directory.resolve())
        self.max_elements = (opts.max_array_size or slurm_query.max_array_size()) - 1
        self.subs: list[Submission] = []

    def submit(self, stage: str, group: str, elements: list[list[str]], dependency: str = "") -> list[str]:
        """Submit one array (split at MaxArraySize); returns the array job ids."""
        ids = []
        for lo in range(0, len(elements), self.max_elements):
            chunk = elements[lo:lo + self.max_elements]
            job_id = self._sbatch(stage, group, chunk, dependency)
            ids.append(job_id)
        return ids

    def _sbatch(self, stage: str, group: str, elements: list[list[str]], dependency: str) -> str:
        import submitit

        r: Resources = resources(self.study, stage, group)
        ex_cfg = self.study.recipe.execution
        folder = self.sdir.logs / f"{stage}-{group}"
        # Tasks start with the preemption warning held back until submitit can act on it (early_signal.py).
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=10, python=shielded_python(sys.executable))
        # Start in the study directory: a job started in the checkout would import it instead of the code
        # snapshot. The study directory is not on sys.path either (job_setup sets PYTHONSAFEPATH).
        extra = {"kill-on-invalid-dep": "yes", "chdir": str(self.sdir.root)}
        if ex_cfg.account:
            extra["account"] = ex_cfg.account
        params = dict(
            job_name=f"{self.study.recipe.study.name}-{stage}-{group}",
            time=max(1, math.ceil(r.time_min * self.opts.time_factor)),
            nodes=r.nodes, ntasks_per_node=r.tasks_per_node, cpus_per_task=r.cpus_per_task,
            mem=f"{max(1, math.ceil(r.mem_gb * self.opts.mem_factor))}G",
            array_parallelism=ex_cfg.array_throttle or len(elements),
            signal_delay_s=ex_cfg.warning_signal_s,  # USR2 this long before the limit: save and requeue
            setup=[*job_setup(self.code_dir), "export " + " ".join(f"{k}={v}" for k, v in thread_env(r.cpus_per_task).items()),
                   *ex_cfg.setup],
            additional_parameters=extra,
        )
        if r.gpus_per_node:
            params["gpus_per_node"] = r.gpus_per_node
        if ex_cfg.partition:
            params["partition"] = ex_cfg.partition
        if ex_cfg.qos:
            params["qos"] = ex_cfg.qos
        if dependency:
            params["dependency"] = dependency
        executor.update_parameters(**params)
        n = len(elements)
        jobs = executor.map_array(ElementRunner(), [str(self.sdir.root)] * n, [stage] * n, elements)
        job_id = str(jobs[0].job_id).split("_")[0]
        sub = Submission(stage, group, job_id, elements, "slurm", str(folder), snapshot=str(self.code_dir),
                         depends_on=dependency)
        record_submission(self.sdir, sub)
        self.subs.append(sub)
        return job_id


def submit_study(study: Study, ex: Expansion, opts: SubmitOptions = SubmitOptions(), only: set[str] | None = None
                 ) -> SubmitReport:
    """Submit everything not done and not already queued (or only the ids in `only`), holding the study's launch
    lock (two submissions at once would both find a task not queued yet)."""
    sdir = StudyDir(study.directory.resolve())
    with launch_lock(sdir.launch_lock, "hpci submit"):
        return _submit_study(sdir, study, ex, opts, only)


def _submit_study(sdir: StudyDir, study: Study, ex: Expansion, opts: SubmitOptions, only: set[str] | None
                  ) -> SubmitReport:
    tasks = build_tasks(study, ex)
    current = {s.task.id: s for s in statuses(sdir, tasks)}
    active = {tid for tid, s in current.items() if s.status in ("pending", "running")}
    todo = [t for t in tasks if current[t.id].status not in ("done", "pending", "running")
            and (only is None or t.id in only)]
    skipped_done = sum(1 for s in current.values() if s.status == "done")
    if not todo:
        return SubmitReport([], skipped_done, len(active))
    sub = _Submitter(study, opts, snapshot(sdir.code_snapshots))
    by_stage: dict[str, list[Task]] = defaultdict(list)
    for t in todo:
        by_stage[t.stage].append(t)

    prepare_jobs = sub.submit("prepare", "cpu", [[t.id] for t in by_stage["prepare"]]) if by_stage["prepare"] else []
    base_groups: dict[str, list[Task]] = defaultdict(list)
    for t in by_stage["base"]:
        base_groups[t.group].append(t)
    base_jobs = [job for group, bases in sorted(base_groups.items())
                 for job in sub.submit("base", group, [[t.id] for t in bases])]
    train_jobs: list[tuple[str, list[Task]]] = []
    groups: dict[str, list[Task]] = defaultdict(list)
    for t in by_stage["train"]:
        groups[t.group].append(t)
    dep = ("afterany:" + ":".join(prepare_jobs + base_jobs)) if prepare_jobs or base_jobs else ""
    for group, trials in sorted(groups.items()):
        for lo in range(0, len(trials), sub.max_elements):
            chunk = trials[lo:lo + sub.max_elements]
            (job,) = sub.submit("train", group, [[t.id] for t in chunk], dep)
            train_jobs.append((job, chunk))

    eval_jobs = _submit_eval(sub, by_stage["eval"], train_jobs, base_jobs)
    if by_stage["aggregate"]:
        waits = eval_jobs + [j for j, _ in train_jobs]
        sub.submit("aggregate", "cpu", [[t.id] for t in by_stage["aggregate"]],
                   ("afterany:" + ":".join(waits)) if waits else "")
    return SubmitReport(sub.subs, skipped_done, len(active))


def _submit_eval(sub: _Submitter, evals: list[Task], train_jobs: list[tuple[str, list[Task]]],
                 base_jobs: list[str] | None = None) -> list[str]:
    jobs: list[str] = []
    in_train = {t.id for _, chunk in train_jobs for t in chunk}
    for train_job, chunk in train_jobs:
        per_trial = {t.id: [e for e in evals if e.after == t.id] for t in chunk}
        by_group: dict[str, None] = {e.group: None for tasks in per_trial.values() for e in tasks}
        for group in by_group:
            first = [[e.id for e in per_trial[t.id] if e.group == group and not e.waits_for_selection] for t in chunk]
            longest = max((len(x) for x in first), default=0)
            slots = max(1, min(sub.opts.slots_per_trial, longest))
            slot_jobs = []
            if longest:
                for k in range(slots):
                    (job,) = sub.submit("eval", group, [ids[k::slots] for ids in first], f"aftercorr:{train_job}")
                    slot_jobs.append(job)
            selected = [[e.id for e in per_trial[t.id] if e.group == group and e.waits_for_selection] for t in chunk]
            if any(selected):
                dep = "aftercorr:" + ":".join(slot_jobs or [train_job])
                (job,) = sub.submit("eval", group, selected, dep)
                slot_jobs.append(job)
            jobs += slot_jobs
    rest = [e for e in evals if e.after not in in_train]
    by_group: dict[str, list[Task]] = defaultdict(list)
    for e in rest:
        by_group[e.group].append(e)
    after_base = ("afterany:" + ":".join(base_jobs)) if base_jobs else ""
    for group, tasks in sorted(by_group.items()):
        first = [[e.id] for e in tasks if not e.waits_for_selection and not e.needs]
        ids = sub.submit("eval", group, first) if first else []
        pretrained = [[e.id] for e in tasks if not e.waits_for_selection and e.needs]
        if pretrained:  # base checkpoints of pretrained models: after the base arrays (the shard checks its export)
            ids += sub.submit("eval", group, pretrained, after_base)
        selected = [[e.id] for e in tasks if e.waits_for_selection]
        if selected:
            ids += sub.submit("eval", group, selected, ("afterok:" + ":".join(ids)) if ids else "")
        jobs += ids
    return jobs


def cancel_study(study_dir: Path, wait_s: float = 120.0) -> list[str]:
    """scancel every array job of the study that still has pending or running elements, then wait up to
    `wait_s` until Slurm has ended them (their processes may write to the study until then); returns the ids.
    `slurm_query.wait_gone(ids, 0)` tells which are still ending."""
    from hpc_instruct.launch.state import submissions

    sdir = StudyDir(Path(study_dir))
    job_ids = sorted({s.job_id for s in submissions(sdir) if s.executor == "slurm"})
    states = slurm_query.query(job_ids)
    live = sorted({j.split("_")[0] for j, s in states.items() if s.phase in ("pending", "running")})
    slurm_query.cancel(live)
    if wait_s > 0:
        slurm_query.wait_gone(live, wait_s)
    return live
