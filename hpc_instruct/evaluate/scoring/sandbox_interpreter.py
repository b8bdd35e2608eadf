"""Which Python interpreter the sandboxed program runs, and whether its uid can reach it.

In namespaces mode the caller's own interpreter is bind-mounted where any uid can run it; in process mode there
is no mount namespace, so the interpreter must be reachable as it stands (a root caller's often lives under /root,
out of reach of nobody): the caller's own, else a system one of the same version.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def python_location() -> tuple[str, str | None, str]:
    """(real interpreter, its prefix if the interpreter lies inside it, path relative to the prefix)."""
    python = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    if python.startswith(prefix + os.sep):
        return python, prefix, os.path.relpath(python, prefix)
    return python, None, ""


def processes_of(uid: int) -> int:
    """How many processes `uid` runs now (RLIMIT_NPROC counts them all)."""
    count = 0
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            count += os.stat(f"/proc/{entry}").st_uid == uid
        except OSError:
            continue
    return count


def reachable(path: str, uid: int, gid: int) -> bool:
    """Whether `uid` may open `path` for reading (and list it, for a directory): mode bits of it and its parents."""
    if uid == 0:
        return True
    parts = Path(path).parts
    for depth in range(1, len(parts) + 1):
        try:
            st = os.stat(Path(*parts[:depth]))
        except OSError:
            return False
        shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
        needed = 0o5 if depth == len(parts) else 0o1  # r-x on the target, search on every parent
        if (st.st_mode >> shift) & needed != needed:
            return False
    return True


def process_python(uid: int, gid: int) -> tuple[str, str] | None:
    """(interpreter, its prefix) that `uid` (the program's, in process mode) can run, or None.

    The caller's own interpreter when that uid can reach it; otherwise a system interpreter of the same
    version (a root caller's interpreter often lives under /root, out of reach of nobody).
    """
    own = os.path.realpath(sys.executable)
    stdlib = os.path.dirname(os.path.realpath(os.__file__))
    if reachable(own, uid, gid) and reachable(stdlib, uid, gid):
        return own, os.path.realpath(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/bin:/usr/local/bin")
    if system and reachable(os.path.realpath(system), uid, gid):
        return os.path.realpath(system), os.path.dirname(os.path.dirname(os.path.realpath(system)))
    return None
