"""Failure reasons as `hpci status` shows them, against the real local Slurm cluster, with plain short jobs standing
in for one task of a written study: a person's scancel of a job waiting on a dependency reads "cancelled", not
"a task it depended on failed" (sacct's reason column keeps "Dependency"); Slurm's own cancellation of a job
whose dependency failed still reads so; a node failure during a job shows as a requeue after a node failure on
that node; `cancel_study` returns only once the cancelled jobs have ended, so the study can be removed.

Every wait is on a Slurm state or a file, never on a fixed delay.

Covers: hpc_instruct.launch.slurm_query."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from slurm_helpers import DEMO, SMALL

from hpc_instruct.launch import slurm_query
from hpc_instruct.launch.slurm import cancel_study
from hpc_instruct.launch.state import Submission, record_submission, statuses
from hpc_instruct.launch.study_files import write_study
from hpc_instruct.launch.tasks import build_tasks
from hpc_instruct.recipe.study import load_study
from hpc_instruct.study_dir import StudyDir

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture
def one_task(slurm_cluster, tmp_path):
    """(study dir, a train task of it) for jobs to stand in for."""
    study = load_study(DEMO, (f"study.output_root={tmp_path}", *SMALL))
    ex = study.expand()
    write_study(study, ex)
    task = next(t for t in build_tasks(study, ex) if t.stage == "train")
    return StudyDir(study.directory), task


def sbatch(*args: str, cwd: Path) -> str:
    done = subprocess.run(["sbatch", "--parsable", "-t", "5", *args], capture_output=True, text=True, cwd=cwd,
                          check=True, timeout=60)
    return done.stdout.strip().split(";")[0]


def stands_for(sdir: StudyDir, task, job: str) -> None:
    record_submission(sdir, Submission("train", "test", job, [[task.id]], "slurm", str(sdir.root)))


def wait_status(sdir: StudyDir, task, predicate, timeout_s: float = 120.0):
    """Poll `statuses` (sacct + squeue) until `predicate(row)` holds; returns the row (or the last one seen)."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = statuses(sdir, [task])[0]
        if predicate(row) or time.monotonic() > deadline:
            return row
        time.sleep(1.0)


def idle_node() -> str:
    lines = subprocess.run(["sinfo", "-h", "-N", "-t", "idle", "-o", "%N"], capture_output=True, text=True,
                           timeout=60).stdout.split()
    if not lines:
        pytest.skip("no idle node to fail (the cluster is busy)")
    return sorted(set(lines))[-1]


def test_scancel_of_a_job_waiting_on_a_dependency_reads_cancelled(one_task):
    sdir, task = one_task
    blocker = sbatch("--wrap", "sleep 60", cwd=sdir.root)
    waiting = sbatch(f"--dependency=afterok:{blocker}", "--kill-on-invalid-dep=yes", "--wrap", "true",
                     cwd=sdir.root)
    stands_for(sdir, task, waiting)
    try:
        assert wait_status(sdir, task, lambda r: r.reason == "Dependency").status == "pending"
        slurm_query.cancel([waiting])
        row = wait_status(sdir, task, lambda r: r.status == "failed")
    finally:
        slurm_query.cancel([blocker, waiting])
    assert row.reason.startswith("cancelled (scancel by "), row.reason


def test_slurms_own_cancellation_after_a_failed_dependency_still_says_so(one_task):
    sdir, task = one_task
    failing = sbatch("--wrap", "exit 3", cwd=sdir.root)
    waiting = sbatch(f"--dependency=afterok:{failing}", "--kill-on-invalid-dep=yes", "--wrap", "true",
                     cwd=sdir.root)
    stands_for(sdir, task, waiting)
    try:
        row = wait_status(sdir, task, lambda r: r.status == "failed")
    finally:
        slurm_query.cancel([waiting])
    assert row.reason == "cancelled: a task it depended on failed"


def test_node_failure_during_a_job_shows_in_status(one_task):
    sdir, task = one_task
    node = idle_node()
    job = sbatch("--requeue", "-w", node, "--wrap", "sleep 120", cwd=sdir.root)
    stands_for(sdir, task, job)
    try:
        assert wait_status(sdir, task, lambda r: r.status == "running").reason.startswith(node)
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=hpci test node failure"],
                       check=True, capture_output=True, timeout=60)
        row = wait_status(sdir, task, lambda r: "node failure" in r.reason)
    finally:
        slurm_query.cancel([job])
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True, timeout=60)
    assert row.status in ("pending", "running") and row.attempts == 2
    assert f"requeued after node failure on {node} (attempt 2)" in row.reason, row.reason


def test_cancel_returns_once_the_jobs_have_ended(one_task):
    """A job that ignores SIGTERM keeps writing to the study until Slurm's KillWait SIGKILLs it: cancel_study
    waits for that, so removing the study right after cannot race its writes (bench_submit's crash)."""
    sdir, task = one_task
    out = sdir.root / "busy"
    out.mkdir()
    script = f"trap '' TERM; touch {out}/started; i=0; while true; do i=$((i+1)); date > {out}/$i; sleep 0.05; done"
    job = sbatch("--wrap", script, cwd=sdir.root)
    stands_for(sdir, task, job)
    deadline = time.monotonic() + 120
    while not (out / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (out / "started").exists(), "the job never started"
    assert cancel_study(sdir.root, wait_s=120) == [job]
    assert slurm_query.wait_gone([job], 0) == []
    before = sorted(p.name for p in out.iterdir())
    shutil.rmtree(sdir.root)  # raised "Directory not empty" when jobs still wrote
    assert not sdir.root.exists() and len(before) > 1
