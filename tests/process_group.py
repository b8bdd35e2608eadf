"""Shared by the multi-process tests (training, sharded eval): run a command (torchrun and its ranks) in its own session."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_in_session(cmd: list[str], cwd: Path, timeout: int, threads: int = 1, expect_ok: bool = True) -> str:
    """Run `cmd` in a new session with the repository importable; on timeout the whole group (torchrun, ranks,
    dist_checkpointing's Manager) is killed. Fails the test on timeout, or on a non-zero exit if `expect_ok`."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PYTHONWARNINGS": "ignore",
        "OMP_NUM_THREADS": str(threads),
    }
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}\n{output[-4000:]}")
    if expect_ok and proc.returncode != 0:
        pytest.fail(f"exit {proc.returncode}: {' '.join(cmd)}\n{output[-4000:]}")
    return output
