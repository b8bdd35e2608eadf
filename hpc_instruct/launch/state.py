"""What the launcher knows about a study: its submissions (append-only log) and every task's status.

A task's status comes, in this order, from its output marker (done), from Slurm (sacct, else squeue) for the
latest submission that contains it (pending, running, failed with a reason), from the local executor's record
(failed with the error), or it was never submitted. A task whose job COMPLETED without a marked output is
failed, never done.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hpc_instruct.atomic import write_json, write_text
from hpc_instruct.launch import slurm_query
from hpc_instruct.launch.tasks import STAGES, Task
from hpc_instruct.study_dir import StudyDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    """One array job: which task ids its elements run (element i runs `elements[i]`, a list of task ids)."""

    stage: str
    group: str
    job_id: str
    elements: list[list[str]]
    executor: str
    log_dir: str
    time: float = field(default_factory=time.time)
    snapshot: str = ""
    depends_on: str = ""


@dataclass(frozen=True)
class TaskStatus:
    task: Task
    status: str  # done | running | pending | failed | never submitted
    reason: str = ""
    job: str = ""
    attempts: int = 0
    log: str = ""
    log_tail: str = ""


def record_submission(sdir: StudyDir, sub: Submission) -> None:
    sdir.state.mkdir(parents=True, exist_ok=True)
    with open(sdir.submissions, "a", encoding="utf-8") as f:  # append: one line per array job
        f.write(json.dumps(asdict(sub)) + "\n")


def submissions(sdir: StudyDir) -> list[Submission]:
    path = sdir.submissions
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(Submission(**json.loads(line)))
    return out


RECORD_BYTES = 2048  # room reserved for a failure record before the task starts


def reserve_local_record(sdir: StudyDir, task: Task) -> None:
    """Before a local task starts, write its record ("started by launcher <pid>"), padded to RECORD_BYTES, so a
    failure can later be written into space the file already owns, even when the task filled the disk."""
    data = json.dumps({"error": "", "launcher": os.getpid(), "host": socket.gethostname(), "time": time.time()})
    try:
        write_text(sdir.local_record(task.id), data.ljust(RECORD_BYTES) + "\n")
    except OSError as exc:  # a full disk already: the failure will say so on the console
        log.warning("cannot reserve the failure record of %s: %s", task.id, exc)


def record_local_failure(sdir: StudyDir, task: Task, error: str, log_path: str) -> bool:
    """Record why a local task failed; on a full disk, into its reserved record. False if it could not."""
    path = sdir.local_record(task.id)
    record = {"error": error, "log": log_path, "time": time.time()}
    try:
        write_json(path, record)
        return True
    except OSError:
        pass
    try:  # no room for a new file: overwrite the reserved one in place (no new blocks needed)
        fd = os.open(path, os.O_WRONLY)
        try:
            room = os.fstat(fd).st_size - 1
            data = json.dumps(record)
            while len(data.encode()) > room and record["error"]:
                record["error"] = record["error"][: len(record["error"]) // 2] + "..."
                data = json.dumps(record)
            os.pwrite(fd, data.encode().ljust(room) + b"\n", 0)
        finally:
            os.close(fd)
        return True
    except OSError as exc:
        log.error("cannot record the failure of %s (%s): %s", task.id, error, exc)
        return False


def clear_local_failure(sdir: StudyDir, task: Task) -> None:
    (sdir.local_record(task.id)).unlink(missing_ok=True)


def statuses(sdir: StudyDir, tasks: list[Task]) -> list[TaskStatus]:
    """Status of every task (one sacct call for all array jobs of the study)."""
    latest: dict[str, tuple[Submission, int]] = {}
    for sub in submissions(sdir):
        for index, ids in enumerate(sub.elements):
            for tid in ids:
                latest[tid] = (sub, index)
    slurm_jobs = sorted({s.job_id for s, _ in latest.values() if s.executor == "slurm"})
    states = slurm_query.query(slurm_jobs) if slurm_jobs and slurm_query.available() else {}
    running_on = {st.nodes for st in states.values() if st.phase == "running" and st.nodes}
    failing_nodes = slurm_query.unresponsive(running_on) if running_on else set()
    out = []
    for task in tasks:
        if task.done(sdir):
            sub_index = latest.get(task.id)
            key = f"{sub_index[0].job_id}_{sub_index[1]}" if sub_index else ""
            attempts = states[key].attempts if key in states else 0
            out.append(TaskStatus(task, "done", attempts=attempts))
            continue
        local = sdir.local_record(task.id)
        info = _local_record(local)
        if task.id not in latest:
            if info and info.get("error"):
                out.append(TaskStatus(task, "failed", info["error"], log=info["log"], log_tail=_tail(Path(info["log"]))))
            else:
                out.append(TaskStatus(task, "never submitted"))
            continue
        sub, index = latest[task.id]
        job = f"{sub.job_id}_{index}" if sub.executor == "slurm" else sub.job_id
        log = _find_log(Path(sub.log_dir), sub.job_id, index)
        if sub.executor != "slurm":
            if info and info.get("error"):
                out.append(TaskStatus(task, "failed", info["error"], job, log=info["log"], log_tail=_tail(Path(info["log"]))))
            elif info and info.get("host") == socket.gethostname() and _alive(info.get("launcher")):
                out.append(TaskStatus(task, "running", f"local, launcher pid {info['launcher']}", job))
            else:
                out.append(TaskStatus(task, "failed", "interrupted (no output, no error recorded)", job))
            continue
        state = states.get(job) or (states.get(sub.job_id) if index == 0 else None)  # a 1-element array shows as "<id>"
        if state is None and time.time() - sub.time < 120:  # just submitted: not visible in squeue/sacct yet
            out.append(TaskStatus(task, "pending", "submitted", job))
        elif state is None:
            out.append(TaskStatus(task, "failed", "unknown to Slurm (no accounting record)", job, log=str(log or "")))
        elif state.phase in ("pending", "running"):
            reason = state.reason if state.phase == "pending" else state.nodes
            if state.phase == "running" and state.nodes in failing_nodes:
                reason += " (node not responding: Slurm requeues the job once it declares the node down)"
            if state.requeued_after:
                reason += f"; {state.requeued_after}"
            out.append(TaskStatus(task, state.phase, reason, job, state.attempts))
        elif state.phase == "finished":
            out.append(TaskStatus(task, "failed", "job completed without writing its output", job, state.attempts,
                                  str(log or ""), _tail(log)))
        else:
            reason = state.failure + (f" (exit {state.exit_code})" if state.failure == "error" else "")
            out.append(TaskStatus(task, "failed", reason, job, state.attempts, str(log or ""), _tail(log)))
    return out


def _find_log(log_dir: Path, job_id: str, index: int) -> Path | None:
    """submitit's stderr file of one array element (`<job>_<index>_<rank>_log.err`; rank 0)."""
    names = [f"{job_id}_{index}_0_log.err", f"{job_id}_{index}_log.err"]
    if index == 0:
        names += [f"{job_id}_0_log.err", f"{job_id}_log.err"]
    for name in names:
        if (log_dir / name).is_file():
            return log_dir / name
    return None


def _tail(path: Path | None, lines: int = 5) -> str:
    if path is None or not Path(path).is_file():
        return ""
    text = Path(path).read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def summary(rows: list[TaskStatus]) -> dict[str, Counter]:
    by_stage: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        by_stage[r.task.stage][r.status] += 1
    return {s: by_stage[s] for s in STAGES if s in by_stage}


def status_table(rows: list[TaskStatus], show_failed: int = 20) -> str:
    cols = ("done", "running", "pending", "failed", "never submitted")
    lines = [f"{'stage':<10}" + "".join(f"{c:>17}" for c in cols) + f"{'total':>8}"]
    for stage, counts in summary(rows).items():
        lines.append(f"{stage:<10}" + "".join(f"{counts.get(c, 0):>17}" for c in cols) + f"{sum(counts.values()):>8}")
    failed = [r for r in rows if r.status == "failed"]
    for r in failed[:show_failed]:
        lines.append(f"failed {r.task.stage} {r.task.id} ({r.task.label}): {r.reason}"
                     + (f" [job {r.job}, attempts {r.attempts}]" if r.job else "") + (f"\n  log: {r.log}" if r.log else ""))
        if r.log_tail:
            lines += ["    | " + line for line in r.log_tail.splitlines()]
    if len(failed) > show_failed:
        lines.append(f"... and {len(failed) - show_failed} more failed tasks (hpci status --all)")
    return "\n".join(lines)


def _local_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: object) -> bool:
    """Whether a launcher on this host is still running (a record from another host counts as not known)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
