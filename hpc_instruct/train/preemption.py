"""Scheduler warning signals turned into a clean save-and-requeue at a safe point.

Slurm sends SIGUSR2 (submitit's `--signal=USR2@<execution.warning_signal_s>`) before a time limit or
preemption, and SIGTERM on `scancel`/preemption. submitit requeues on USR2 but only logs and ignores SIGTERM,
so a SIGTERM is handed over as USR2 wherever USR2 has a Python handler (submitit's): it too saves and requeues. A long task installs `PreemptionGuard`, polls `guard.requested` at step boundaries, saves
its state, then calls `guard.hand_over()`: the previous handlers come back and the signal is re-raised, so
submitit's own handler requeues the job (under the local executor the default handler ends the process).
"""

from __future__ import annotations

import os
import signal
import subprocess
from types import FrameType

WARNING_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)


class PreemptionGuard:
    def __init__(self, signals: tuple[signal.Signals, ...] = WARNING_SIGNALS):
        self.signals = signals
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    def __enter__(self) -> PreemptionGuard:
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum)

    @property
    def requested(self) -> bool:
        return self.received is not None

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def hand_over(self) -> None:
        """After saving: give the signal to whoever handled it before us (submitit requeues; default exits).

        Under a plain sbatch template (HPCI_REQUEUE=1, no submitit handler) the array element requeues itself.
        """
        sig = self.received or signal.SIGUSR2
        if sig == signal.SIGTERM and callable(self._previous.get(signal.SIGUSR2)):
            sig = signal.SIGUSR2  # submitit's requeue handler; its SIGTERM handler would ignore the signal
        previous = self._previous.get(sig)
        self.restore()
        if previous in (signal.SIG_DFL, None) and os.environ.get("HPCI_REQUEUE") == "1" and "SLURM_JOB_ID" in os.environ:
            job = os.environ["SLURM_JOB_ID"]
            if "SLURM_ARRAY_JOB_ID" in os.environ:
                job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
            if int(os.environ.get("SLURM_PROCID", "0")) == 0:
                subprocess.run(["scontrol", "requeue", job], check=False)
        os.kill(os.getpid(), sig)
