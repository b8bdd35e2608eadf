"""The preemption warning (SIGUSR2) that arrives while a Slurm task is still starting (before submitit has installed
its save-and-requeue handler) is held back and handled once the handler is there, instead of killing the task.
The Slurm end-to-end form (a real `scancel --signal=USR2` during start-up) is in test_slurm_study.py."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hpc_instruct.launch import early_signal
from hpc_instruct.launch.entry import ElementRunner

ROOT = Path(__file__).resolve().parents[2]

# A task that gets the warning before it has a handler (here it sends it to itself, deterministically), then
# installs one and releases the signal, as ElementRunner does once submitit's handler is in place.
TASK = """
import os, signal, sys, time
os.kill(os.getpid(), signal.SIGUSR2)   # the warning, during start-up
time.sleep(0.2)
print("alive", flush=True)
signal.signal(signal.SIGUSR2, lambda *a: print("handled", flush=True))
from hpc_instruct.launch import early_signal
early_signal.release()
print("after", flush=True)
"""


def run_task(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", f"{command} -c {shlex.quote(TASK)}"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_a_warning_during_start_up_kills_an_unshielded_task():
    """The premise: what the default action did to Slurm tasks before."""
    done = run_task(shlex.quote(sys.executable))
    assert done.returncode in (-signal.SIGUSR2, 128 + signal.SIGUSR2) and "alive" not in done.stdout, done


def test_a_shielded_task_handles_the_warning_once_released():
    done = run_task(early_signal.shielded_python(sys.executable))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["alive", "handled", "after"]


class Requeued(Exception):
    pass


def test_the_element_runner_releases_the_signal_before_any_work(tmp_path):
    """ElementRunner (what submitit runs, after installing its handler) hands a held-back warning to the handler
    before it loads the study: the job is requeued at once (here the handler raises), nothing runs first."""

    def handler(signum, frame):
        raise Requeued

    previous = signal.signal(signal.SIGUSR2, handler)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)  # pending in this thread while blocked
        assert signal.SIGUSR2 in signal.sigpending()
        with pytest.raises(Requeued):
            ElementRunner()(str(tmp_path / "no-study"), "train", ["t0"])  # would fail loading the study
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR2})
        signal.signal(signal.SIGUSR2, previous)
    assert not list(tmp_path.iterdir())
