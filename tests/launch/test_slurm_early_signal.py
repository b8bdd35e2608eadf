"""On the real local Slurm cluster: a preemption warning (`scancel --signal=USR2`) that reaches a train task while
it is still starting, before submitit has installed its save-and-requeue handler, requeues the element instead of
killing it (it used to end FAILED with exit 12, and Slurm cancelled the trial's evaluation: found by
benchmarks/bench_chaos.py, kind usr2). The moment is chosen by the task's own state, not a clock: the signal is sent
while /proc says the task's Python runs but does not catch USR2 yet (the seconds of imports before submitit's
handler; the few milliseconds of the blocking launcher before that stay unshielded, see early_signal.py), and the
process is stopped meanwhile so that its handler cannot come first."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from slurm_helpers import DEMO, SMALL, element_job, wait_for

from hpc_instruct.launch.slurm import SubmitOptions, cancel_study, submit_study
from hpc_instruct.launch.study_files import write_study
from hpc_instruct.recipe.study import load_study

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def usr2_in(pid: int, field: str) -> bool:
    """Whether USR2 is in the signal set `field` (SigCgt: caught, SigBlk: blocked, ShdPnd: pending) of `pid`."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith(f"{field}:")), 16)
    return bool(mask >> (signal.SIGUSR2 - 1) & 1)


def held_or_gone(pid: int) -> bool:
    """The process holds USR2 pending, or it has ended (gone, or a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        return "\nState:\tZ" in status or usr2_in(pid, "ShdPnd")
    except OSError:
        return True


def starting_task(logs: Path) -> int | None:
    """The pid of a submitit task of this study whose Python (`python -u -m submitit.core._submit LOGS`, past
    any launcher) runs but does not catch USR2 yet: it is importing, before submitit installs its handler."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if args[1:4] == [b"-u", b"-m", b"submitit.core._submit"] and str(logs).encode() in args:
                if not usr2_in(int(pid), "SigCgt"):
                    return int(pid)
        except (OSError, StopIteration):
            continue
    return None


def test_a_warning_during_start_up_requeues_instead_of_failing(slurm_cluster, tmp_path):
    study = load_study(DEMO, (f"study.output_root={tmp_path}", *SMALL, "sweep.curated.samples_per_ability=[4]",
                              "sweep.synthetic=null", "evaluation.include_base=false"))
    ex = study.expand()
    write_study(study, ex)
    report = submit_study(study, ex, SubmitOptions(slots_per_trial=1))
    train = next(s for s in report.submissions if s.stage == "train")
    try:
        deadline, pid = time.time() + 600, None
        while time.time() < deadline and (pid := starting_task(Path(train.log_dir))) is None:
            time.sleep(0.005)
        assert pid is not None, "never saw the train task starting"
        # Freeze it there (still without a handler), so the warning surely arrives before submitit's handler.
        os.kill(pid, signal.SIGSTOP)
        assert not usr2_in(pid, "SigCgt")
        subprocess.run(["scancel", "--signal=USR2", element_job(train)], check=True)
        while time.time() < deadline and not held_or_gone(pid):
            time.sleep(0.01)  # until it is either killed by the signal or holds it pending
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        counts = wait_for(study.directory)
    finally:
        cancel_study(study.directory)
    history = subprocess.run(["sacct", "-D", "-n", "-X", "-j", train.job_id, "--format=State,ExitCode"],
                             capture_output=True, text=True).stdout.split()
    # Held back, not lost: handled once submitit's handler is in place, which requeues the element.
    assert history == ["REQUEUED", "0:0", "COMPLETED", "0:0"], history
    assert all(set(c) == {"done"} for c in counts.values()), counts
