"""Asking Slurm what happened: `sacct` (with every attempt), falling back to `squeue` without accounting.

States are classified into what a researcher acts on: pending, running, done, or failed with a reason
(preempted, timeout, out of memory, node failure, cancelled, error). A job that COMPLETED without writing its
marked output is a failure too: a failure is never reported as done.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, replace

PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "CONFIGURING"}
RUNNING = {"RUNNING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT"}
FAILURES = {
    "PREEMPTED": "preempted",
    "TIMEOUT": "timeout",
    "DEADLINE": "timeout",
    "OUT_OF_MEMORY": "out of memory",
    "NODE_FAIL": "node failure",
    "BOOT_FAIL": "node failure",
    "FAILED": "error",
    "CANCELLED": "cancelled",
    "REVOKED": "cancelled",
}


@dataclass(frozen=True)
class JobState:
    job: str  # <array job id>_<index>
    state: str  # Slurm's word, e.g. COMPLETED, TIMEOUT
    exit_code: str = ""
    reason: str = ""
    attempts: int = 1
    nodes: str = ""
    cancelled_by: str = ""  # the uid in sacct's "CANCELLED by <uid>": a person's scancel, not Slurm's own
    previous: str = ""  # the state that ended the attempt before this one (e.g. NODE_FAIL before a requeue)
    previous_nodes: str = ""

    @property
    def phase(self) -> str:
        """pending | running | finished | failed"""
        if self.state in PENDING:
            return "pending"
        if self.state in RUNNING:
            return "running"
        if self.state == "COMPLETED":
            return "finished"
        return "failed"

    @property
    def failure(self) -> str:
        # sacct's reason keeps "Dependency" from the pending phase even when a person cancelled the job; only
        # Slurm's own cancellation (--kill-on-invalid-dep, of a job that never started) comes without "by <uid>".
        if self.state == "CANCELLED" and self.cancelled_by:
            return f"cancelled (scancel by {_user(self.cancelled_by)})"
        if self.state == "CANCELLED" and ("Dependency" in self.reason or self.nodes in ("", "None assigned")):
            return "cancelled: a task it depended on failed"  # (accounting may not show the reason yet)
        return FAILURES.get(self.state, self.state.lower())

    @property
    def requeued_after(self) -> str:
        """Why the attempt before this one ended, for a job Slurm requeued ("" for a first attempt)."""
        if not self.previous:
            return ""
        where = f" on {self.previous_nodes}" if self.previous_nodes and self.previous_nodes != "None assigned" else ""
        return f"requeued after {FAILURES.get(self.previous, self.previous.lower())}{where} (attempt {self.attempts})"


def _user(uid: str) -> str:
    try:
        import pwd

        return pwd.getpwuid(int(uid)).pw_name
    except (KeyError, ValueError):
        return f"uid {uid}"


def available() -> bool:
    return shutil.which("sbatch") is not None


def expand_job_ids(job_id: str) -> list[str]:
    """`123_[0-3,7%2]` -> 123_0 .. 123_3, 123_7; plain ids pass through."""
    m = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not m:
        return [job_id]
    base, spec = m.group(1), m.group(2).split("%")[0]
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += [f"{base}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def query(array_jobs: list[str]) -> dict[str, JobState]:
    """State of every element of the given array jobs: sacct if accounting works, else squeue."""
    if not array_jobs:
        return {}
    states = _sacct(array_jobs) or {}
    # squeue is live: it knows jobs that accounting has not recorded yet (records lag by a second or more).
    for jid, live in _squeue(array_jobs).items():
        old = states.get(jid)
        if old is None:
            states[jid] = live
        elif old.phase in ("pending", "running"):  # the same attempt, seen live
            states[jid] = replace(old, state=live.state, reason=live.reason, nodes=live.nodes)
        else:  # accounting's latest attempt ended and the job is back in the queue: Slurm requeued it
            states[jid] = replace(live, exit_code=old.exit_code, attempts=old.attempts + 1, previous=old.state,
                                  previous_nodes=old.nodes)
    return states


def unresponsive(nodes: set[str]) -> set[str]:
    """Those of `nodes` that Slurm marks not responding (sinfo's "*" suffix): a node failing, before Slurm's
    SlurmdTimeout declares it down and requeues its jobs."""
    if not nodes:
        return set()
    try:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N|%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    out = set()
    for line in proc.stdout.splitlines():
        name, _, state = line.partition("|")
        if name in nodes and (state.endswith("*") or state.startswith(("down", "fail"))):
            out.add(name)
    return out


def _sacct(array_jobs: list[str]) -> dict[str, JobState] | None:
    cmd = ["sacct", "-n", "-P", "-X", "-D", "-j", ",".join(array_jobs),
           "--format=JobID,State,ExitCode,Reason,NodeList"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 or "accounting storage is disabled" in proc.stderr.lower():
        return None
    attempts: dict[str, list[tuple[str, str, str, str]]] = defaultdict(list)
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) < 5:
            continue
        job, state, code, reason, nodes = parts[:5]
        words = state.split() or ["UNKNOWN"]  # "CANCELLED by 0" -> CANCELLED, by uid 0
        by = words[2] if len(words) > 2 and words[1] == "by" else ""
        for jid in expand_job_ids(job):
            attempts[jid].append((words[0], code, reason, nodes, by))
    out = {}
    for jid, rows in attempts.items():
        state, code, reason, nodes, by = rows[-1]  # -D lists attempts oldest first
        before = rows[-2] if len(rows) > 1 else ("", "", "", "", "")
        out[jid] = JobState(jid, state, code, reason, attempts=len(rows), nodes=nodes, cancelled_by=by,
                            previous=before[0], previous_nodes=before[3])
    return out


def _squeue(array_jobs: list[str]) -> dict[str, JobState]:
    """Live jobs of ours (all of squeue, filtered: `-j` fails outright if one id has left the queue)."""
    try:
        proc = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T|%r|%N"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    wanted = set(array_jobs)
    out = {}
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) >= 4 and parts[0].split("_")[0] in wanted:
            for jid in expand_job_ids(parts[0]):
                out[jid] = JobState(jid, parts[1], "", parts[2], nodes=parts[3])
    return out


def max_array_size() -> int:
    """The cluster's MaxArraySize (array indices must stay below it); 1001 if it cannot be read."""
    try:
        proc = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
        m = re.search(r"^MaxArraySize\s*=\s*(\d+)", proc.stdout, re.M)
        return int(m.group(1)) if m else 1001
    except (OSError, subprocess.TimeoutExpired):
        return 1001


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], check=False, capture_output=True)


def wait_gone(job_ids: list[str], timeout_s: float) -> list[str]:
    """Wait until none of `job_ids` is in squeue any more (COMPLETING included: its processes may still be
    writing), polling once a second; returns those still there at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = sorted({jid.split("_")[0] for jid in _squeue(job_ids)})
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(1.0)
