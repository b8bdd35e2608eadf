"""Worker processes that never outlive the launcher that started them.

If `hpci run` is killed (SIGKILL, a closed terminal, an out-of-memory kill), its task processes must not go on
as orphans: `hpci status` would call them failed while they run, and a re-run would start second copies of the
same tasks, racing them on the same outputs. On Linux the child asks the kernel (`prctl(PR_SET_PDEATHSIG)`) to
send it a signal when its parent dies; SIGTERM lets a training task save its state and stop, as on preemption.
Elsewhere nothing is set (the launcher's own cleanup is all there is).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen: the child gets `sig` when this process dies (None off Linux)."""
    if _libc is None:
        return None
    parent = os.getpid()

    def arm() -> None:  # runs in the child between fork and exec: async-signal-safe calls only
        _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request was in place
            os.kill(os.getpid(), sig)

    return arm
