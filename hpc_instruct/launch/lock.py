"""One launcher per study at a time: `hpci run` and `hpci submit` hold `<study>/state/launch.lock`.

Two launchers on one study would start the same tasks twice, and two writers of one output race (one run once
left a trial marked done whose export had no weights). The lock is an `flock` on a file in the study's state
folder, so it works across processes and, on Linux NFS/Lustre clients, across nodes; the kernel releases it
when its holder dies, however it dies (no stale lock to clean up). The file names its holder (command, pid,
host, start time) so the refusal says who to wait for.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hpc_instruct.errors import UserError


class StudyBusy(UserError):
    """Another launcher holds the study."""


@contextmanager
def launch_lock(path: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold the study's launch lock (`StudyDir.launch_lock`) for the `with` block; raise StudyBusy (naming the
    holder) if it is taken."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StudyBusy(f"study {path.parent.parent} is in use by {_holder(fd)}: wait for it to finish or stop "
                            f"it, then run again (lock: {path})") from None
        me = {"command": command, "pid": os.getpid(), "host": socket.gethostname(),
              "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "argv": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # the next launcher finds no holder named (the lock itself goes with the fd)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another launcher (starting up)"
    return f"`{info.get('command', 'hpci')}` (pid {info.get('pid')} on {info.get('host')}, since {info.get('since')})"
