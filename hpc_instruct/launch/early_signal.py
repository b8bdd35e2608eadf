"""The preemption warning (SIGUSR2) held back until a Slurm job can act on it, instead of killing it at start-up.

submitit installs its USR2 handler (save and requeue) only after the job's Python has started, imported submitit
and unpickled the task, which takes seconds on a busy node. A USR2 in that window (`scancel --signal=USR2`, a
preemption warning) met the default action and killed the task: the element FAILED (exit 12, no requeue) and
Slurm cancelled the work that depended on it, so the study needed a `hpci resubmit`.

So every Slurm task starts through `shielded_python()`: a tiny `python -I -S` that blocks USR2 and execs the real
interpreter (a blocked signal stays blocked across exec, and a signal that arrives meanwhile stays pending rather
than being lost). `ElementRunner` calls `release()` first thing, once submitit's handler is in place: a USR2 that
arrived during start-up is delivered then, and the job saves and requeues as it would have later. What remains
unshielded is the few milliseconds before the small interpreter blocks the signal.
"""

from __future__ import annotations

import shlex
import signal

SIGNAL = signal.SIGUSR2

# Runs as `python -I -S -c SHIELD REAL_PYTHON ARG...`: blocks the signal, then becomes REAL_PYTHON ARG...
SHIELD = ("import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2}); "
          "os.execv(sys.argv[1], sys.argv[1:])")


def shielded_python(executable: str) -> str:
    """The shell words that start `executable` with USR2 blocked (submitit's `python` parameter: it appends
    `-u -m submitit.core._submit FOLDER`)."""
    quoted = shlex.quote(executable)
    return f"{quoted} -I -S -c {shlex.quote(SHIELD)} {quoted}"


def release() -> None:
    """Unblock USR2 in this thread: one that arrived while it was blocked is handled now (by submitit's handler,
    which must be installed by then). Harmless where it was never blocked."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {SIGNAL})
