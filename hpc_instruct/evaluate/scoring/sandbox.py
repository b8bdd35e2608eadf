"""Run untrusted model-written Python in a sandbox and report how it ended.

What is enforced (see `sandbox_launcher.py` for how):
- a separate, fresh interpreter (`python -I -S`: no site-packages, no PYTHON* variables, no user site), stdin
  closed, an environment of just PATH, a new scratch directory as cwd that disappears afterwards;
- wall-clock limit (enforced here: the whole process group is SIGKILLed), CPU time (RLIMIT_CPU), address space
  (RLIMIT_AS), file size (RLIMIT_FSIZE), open files (RLIMIT_NOFILE), captured output (stdout+stderr together);
- with Linux namespaces ("namespaces" isolation, used whenever `unshare(1)` works): no network (a new network
  namespace with only a downed loopback), a new PID namespace whose init outlives the program, so every process
  it started dies with it, a read-only view of every host mount and a private size-capped /tmp, no capabilities
  and no_new_privs. As real root the program runs as an unprivileged uid (nobody by default), because the kernel
  does not apply RLIMIT_NPROC to root; as a normal user, a user namespace is created and RLIMIT_NPROC counts per
  namespace;
- without namespaces ("process" isolation) the kernel still enforces, never the program's cooperation (an audit
  hook is not a boundary: a program can find and disable it): an unprivileged uid when the caller is root,
  Landlock (reads only of the interpreter and system libraries, writes only in the scratch directory, no TCP,
  signals only within the program's processes), seccomp (no sockets, io_uring, ptrace, namespaces, mounts), and a
  subreaper launcher that kills every process the program left. Where that cannot be built (no Landlock, or no
  signal scoping for a non-root caller, or an interpreter the unprivileged uid cannot reach) the sandbox fails
  closed with `SandboxUnavailable`: it never runs a program as root, nor unconfined.
Results record which isolation was used.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.evaluate.scoring.sandbox_interpreter import (
    process_python,
    processes_of,
    python_location,
)

log = logging.getLogger(__name__)
_LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")
_ENV = {"PATH": "/usr/bin:/bin"}
_NAMESPACE_FLAGS = (
    "--net",
    "--pid",
    "--fork",
    "--kill-child",
    "--mount",
    "--mount-proc",
    "--propagation",
    "private",
    "--ipc",
    "--uts",
)
ISOLATIONS = ("auto", "namespaces", "process")


class SandboxUnavailable(RuntimeError):
    """The requested isolation cannot be set up on this machine."""


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and isolation for one sandboxed run. Sizes are bytes."""

    wall_s: float = 10.0
    cpu_s: int = 5
    memory_bytes: int = 1 << 30  # RLIMIT_AS: virtual address space of each process
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE: largest file the program may write
    scratch_bytes: int = 64 << 20  # size of the private /tmp (namespaces isolation)
    processes: int = 32  # RLIMIT_NPROC for the program's uid (namespaces isolation)
    open_files: int = 64
    output_bytes: int = 1 << 20  # stdout + stderr kept; more kills the run ("output_limit")
    isolation: str = "auto"  # "auto" (namespaces if available), "namespaces" (or fail), "process"
    uid: int = 65534  # the unprivileged uid/gid the program runs as when the caller is root
    gid: int = 65534

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATIONS:
            raise ValueError(f"unknown isolation {self.isolation!r}; valid: {', '.join(ISOLATIONS)}")
        if self.wall_s <= 0 or self.cpu_s <= 0:
            raise ValueError("wall_s and cpu_s must be positive")


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed run ended.

    `status` is one of "ok" (exit 0), "error" (non-zero exit), "timeout" (wall clock), "cpu_limit",
    "killed" (another signal), "output_limit", "sandbox_error" (the sandbox itself failed; see stderr).
    """

    status: str
    exit_code: int | None
    signal: int | None
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float
    truncated: bool
    isolation: str  # what was enforced, e.g. "namespaces(net,pid,mount,ipc,uts)+ro-fs+uid=65534+rlimits"

    @property
    def passed(self) -> bool:
        return self.status == "ok"


def _unshare_command() -> list[str] | None:
    unshare = shutil.which("unshare", path=_ENV["PATH"])
    if unshare is None:
        return None
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return [unshare, *user, *_NAMESPACE_FLAGS, "--"]


@functools.cache
def namespaces_available() -> bool:
    """Whether the namespaces sandbox works here: probed once per process by running an empty program in it."""
    if _unshare_command() is None:
        log.warning("sandbox: unshare(1) not found (Debian package util-linux); using process isolation")
        return False
    probe = _run("", SandboxConfig(wall_s=20), "namespaces")
    if probe.status != "ok":
        log.warning(
            "sandbox: namespaces unavailable, using process isolation: %s", probe.stderr.strip()[-300:]
        )
    return probe.status == "ok"


@functools.cache
def process_isolation_available() -> bool:
    """Whether the kernel-enforced process mode works here: probed once per process with an empty program."""
    if process_python(*_program_ids(SandboxConfig())) is None:
        log.warning(
            "sandbox: no Python interpreter the unprivileged uid can run; process isolation unavailable"
        )
        return False
    probe = _run("", SandboxConfig(wall_s=20), "process")
    if probe.status != "ok":
        log.warning("sandbox: process isolation unavailable: %s", probe.stderr.strip()[-300:])
    return probe.status == "ok"


def _resolve_isolation(config: SandboxConfig) -> str:
    """The isolation to use, or SandboxUnavailable: never a weaker one than the kernel can enforce (fail closed)."""
    if config.isolation != "process" and namespaces_available():
        return "namespaces"
    if config.isolation == "namespaces":
        raise SandboxUnavailable(
            "`unshare --net --pid --mount` fails here; use isolation='process' (needs Landlock) or install "
            "util-linux and allow (user) namespaces"
        )
    if process_isolation_available():
        return "process"
    raise SandboxUnavailable(
        "no sandbox can be built here: `unshare` cannot create namespaces and process isolation needs Landlock "
        "(Linux 5.13+; 6.12+ when not root), seccomp, and a Python the unprivileged uid can run; allow user "
        "namespaces (sysctl user.max_user_namespaces) to score code"
    )


def _describe(isolation: str, drop_uid: int | None) -> str:
    if isolation == "process":
        who = f"uid={drop_uid}" if drop_uid is not None else f"uid={os.geteuid()}"
        return f"process(landlock,seccomp,subreaper)+{who}+no-new-privs+rlimits"
    who = f"uid={drop_uid}" if drop_uid is not None else "userns-root-no-caps"
    return f"namespaces(net,pid,mount,ipc,uts)+ro-fs+private-tmp+{who}+no-new-privs+rlimits"


def _program_ids(config: SandboxConfig) -> tuple[int, int]:
    """The uid and gid the program runs as in process mode: the configured unprivileged ones under a root caller."""
    return (config.uid, config.gid) if os.geteuid() == 0 else (os.geteuid(), os.getegid())


def _request(source: str, config: SandboxConfig, isolation: str, scratch: str | None, status_fd: int) -> dict:
    python, prefix, rel = python_location()
    drop = os.geteuid() == 0
    extra: dict[str, object] = {}
    if isolation == "process":
        python, prefix_dir = process_python(*_program_ids(config)) or (python, prefix or "/usr")
        extra = {
            "read_paths": sorted(
                {prefix_dir, "/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/localtime"}
            ),
            "device_files": ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"],
            # As root the program runs as another uid, which cannot signal us; as ourselves it needs signal scoping.
            "landlock_min_abi": 1 if drop else 6,
        }
    rlimits: dict[str, object] = {
        "cpu": [config.cpu_s, config.cpu_s + 1],  # SIGXCPU at the soft limit, SIGKILL one second later
        "as": config.memory_bytes,
        "fsize": config.file_bytes,
        "nofile": config.open_files,
        "core": 0,
    }
    # Per real uid, and ignored for root: a uid of its own (as root), or a user namespace, makes it a budget for
    # the program alone; a non-root caller in process mode shares its uid, so the budget comes on top of its own.
    rlimits["nproc"] = config.processes
    if isolation == "process" and not drop:
        rlimits["nproc"] = processes_of(os.geteuid()) + config.processes
    return {
        **extra,
        "source": source,
        "namespaces": isolation == "namespaces",
        "scratch": scratch,
        "scratch_bytes": config.scratch_bytes,
        "rlimits": rlimits,
        "status_fd": status_fd,
        "drop_uid": config.uid if drop else None,
        "drop_gid": config.gid if drop else None,
        "python": python,
        "python_prefix": prefix,
        "python_rel": rel,
    }


def _feed(pipe, data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.close()
    except (BrokenPipeError, ValueError, OSError):
        pass


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _status(status: dict | None, timed_out: bool, truncated: bool, config: SandboxConfig) -> str:
    if timed_out:
        return "timeout"
    if truncated:
        return "output_limit"
    if status is None or status.get("error"):
        return "sandbox_error"
    sig = status.get("signal")
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and status.get("cpu_s", 0.0) >= config.cpu_s):
        return "cpu_limit"
    if sig is not None:
        return "killed"
    return "ok" if status.get("exit_code") == 0 else "error"


def run_python(source: str, config: SandboxConfig | None = None) -> SandboxResult:
    """Run `source` as a Python program in the sandbox and return its outcome (never raises for bad programs).

    Raises `SandboxUnavailable` when the requested isolation (for "auto": either) cannot be built here.
    """
    config = config or SandboxConfig()
    return _run(source, config, _resolve_isolation(config))


def _stop(proc: subprocess.Popen, isolation: str) -> None:
    """End the launcher and everything under it. In process mode the launcher first kills the program's orphans
    (it is their subreaper, and they may have left its process group); in namespaces mode PID 1's end does."""
    if isolation == "process" and proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    _kill_group(proc.pid)


def _run(source: str, config: SandboxConfig, isolation: str) -> SandboxResult:
    drop_uid = config.uid if os.geteuid() == 0 else None
    scratch = tempfile.mkdtemp(prefix="hpci-sandbox-") if isolation == "process" else None
    prefix = _unshare_command() if isolation == "namespaces" else []
    status_r, status_w = os.pipe()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-I", "-S", str(_LAUNCHER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_ENV,
            cwd="/",
            pass_fds=(status_w,),
            start_new_session=True,
        )
    except BaseException:
        os.close(status_r)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    finally:
        os.close(status_w)  # the number still names the launcher's copy, which is what the request refers to
    try:
        request = json.dumps(_request(source, config, isolation, scratch, status_w)).encode()
        # Fed from a thread so that a launcher that never reads cannot stall the wall clock.
        threading.Thread(target=_feed, args=(proc.stdin, request), daemon=True).start()
        out, err, raw_status, timed_out, truncated = _collect(proc, status_r, start, config)
    finally:
        _stop(proc, isolation)  # whatever is left, then reap
        proc.wait()
        os.close(status_r)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    try:
        status = json.loads(raw_status.decode()) if raw_status.strip() else None
    except ValueError:
        status = None
    stderr = err.decode("utf-8", errors="replace")
    if status is None and not timed_out and not truncated:
        stderr += f"\nsandbox: the launcher ended without a status (exit {proc.returncode})"
    elif status is not None and status.get("error"):
        stderr += f"\nsandbox: {status['error']}"
    return SandboxResult(
        status=_status(status, timed_out, truncated, config),
        exit_code=None if status is None else status.get("exit_code"),
        signal=None if status is None else status.get("signal"),
        stdout=out.decode("utf-8", errors="replace"),
        stderr=stderr,
        wall_s=time.monotonic() - start,
        cpu_s=0.0 if status is None else float(status.get("cpu_s", 0.0)),
        truncated=truncated,
        isolation=_describe(isolation, drop_uid),
    )


def _collect(proc: subprocess.Popen, status_r: int, start: float, config: SandboxConfig):
    """Read stdout, stderr and the status pipe until all close, the wall clock runs out or output overflows."""
    buffers = {"out": bytearray(), "err": bytearray(), "status": bytearray()}
    selector = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    selector.register(proc.stdout.fileno(), selectors.EVENT_READ, "out")
    selector.register(proc.stderr.fileno(), selectors.EVENT_READ, "err")
    selector.register(status_r, selectors.EVENT_READ, "status")
    deadline = start + config.wall_s
    timed_out = truncated = False
    launcher_gone_at: float | None = None
    while selector.get_map():
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        # Once the launcher has exited, leftovers holding the pipes get a short grace, then are ignored.
        if launcher_gone_at is None and proc.poll() is not None:
            launcher_gone_at = now
        if launcher_gone_at is not None and now - launcher_gone_at > 0.5:
            break
        for key, _ in selector.select(timeout=min(deadline - now, 0.1)):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fd)
                continue
            buffers[key.data] += chunk
            if key.data != "status" and len(buffers["out"]) + len(buffers["err"]) > config.output_bytes:
                truncated = True
        if truncated:
            break
    selector.close()
    if truncated:
        keep = config.output_bytes
        buffers["out"] = buffers["out"][:keep]
        buffers["err"] = buffers["err"][: max(0, keep - len(buffers["out"]))]
    proc.stdout.close()
    proc.stderr.close()
    return bytes(buffers["out"]), bytes(buffers["err"]), bytes(buffers["status"]), timed_out, truncated
