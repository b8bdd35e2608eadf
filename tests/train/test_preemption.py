"""The preemption guard (hpc_instruct/train/preemption.py): a signal is held until the task reaches a safe point
and saves, then handed to the handler that was there before (submitit's, which requeues)."""

from __future__ import annotations

import os
import signal

from hpc_instruct.train.preemption import PreemptionGuard


def test_guard_defers_the_signal_until_hand_over():
    seen = []
    previous = signal.signal(signal.SIGUSR2, lambda s, f: seen.append(s))
    try:
        with PreemptionGuard() as guard:
            os.kill(os.getpid(), signal.SIGUSR2)
            assert guard.requested and not seen  # the task keeps going to a safe point
            guard.hand_over()  # ... saves, then the previous handler (submitit's) gets the signal
        assert seen == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)

