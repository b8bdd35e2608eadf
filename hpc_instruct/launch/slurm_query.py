"""Asking Slurm what happened: `sacct` (with every attempt), falling back to `squeue` without accounting.

States are classified into what a researcher acts on: pending, running, done, or failed with a reason
(preempted, timeout, out of memory, node failure, cancelled, error). A job that COMPLETED without writing its
marked output is a failure too: a failure is never reported as done.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass

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
        if self.state == "CANCELLED" and "Dependency" in self.reason:
            return "cancelled: a task it depended on failed"
        return FAILURES.get(self.state, self.state.lower())


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
        states[jid] = live if old is None else JobState(jid, live.state, old.exit_code, live.reason,
                                                         old.attempts, live.nodes)
    return states


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
        state = state.split()[0] if state else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
        for jid in expand_job_ids(job):
            attempts[jid].append((state, code, reason, nodes))
    out = {}
    for jid, rows in attempts.items():
        state, code, reason, nodes = rows[-1]  # -D lists attempts oldest first
        out[jid] = JobState(jid, state, code, reason, attempts=len(rows), nodes=nodes)
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
