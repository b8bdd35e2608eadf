"""Sandbox launcher: the first process inside the sandbox; prepares it, runs the program, reports how it ended.

Started by `sandbox.py` as `python -I -S sandbox_launcher.py`, never imported (stdlib only, no package imports).
It reads one JSON request from stdin and writes one JSON status line to the file descriptor named in it; the
program's stdout and stderr go straight to the caller's pipes.

In "namespaces" mode it runs as PID 1 of fresh net/pid/mount/ipc/uts namespaces made by `unshare(1)`, as root
(or as root of a new user namespace when the caller is not root). It then
1. remounts every mount read-only (per-mount bind remount: the host's mounts are untouched),
2. mounts a size-capped tmpfs on /tmp holding the scratch directory /tmp/work, and empty read-only tmpfs over
   /run and /dev/shm (no host sockets, no shared memory),
3. forks the program, which sets its rlimits, sets no_new_privs, drops every capability from its bounding set,
   changes to an unprivileged uid when the launcher is real root (the interpreter is bind-mounted under /tmp so
   that uid can run it), installs the seccomp filter of `sandbox_confine.py` (no sockets: the network namespace
   does not cover unix sockets reached by path), and execs a fresh `python -I -S`.
PID 1 stays root and outside the program's reach (signals from inside a PID namespace to its init are dropped),
so killing it from outside, or its own exit, kills every process the program started.

In "process" mode (no namespaces available) the launcher becomes a child subreaper; the program's process drops
to an unprivileged uid (when the launcher is root), confines itself with Landlock (reads only of the interpreter
and system libraries, writes only in its scratch directory, no TCP, signals only to its own processes) and
seccomp (no sockets, io_uring, ptrace, namespaces), then execs a fresh `python -I -S`. Every process it leaves is
killed by the launcher (or on SIGTERM, which `sandbox.py` sends at the wall-clock limit).
"""

import json
import os
import resource
import signal
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
# Per-mount flags a remount must keep (inside a user namespace the kernel refuses to clear them).
MOUNT_OPTION_FLAGS = {
    "ro": MS_RDONLY,
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": 1024,
    "nodiratime": 2048,
    "relatime": 1 << 21,
    "strictatime": 1 << 24,
}
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
WORK = "/tmp/work"
RELOCATED_PYTHON = "/tmp/.python"


def _libc():
    import ctypes  # in the launcher only: the program execs a fresh interpreter

    libc = ctypes.CDLL(None, use_errno=True)
    return ctypes, libc


def _mount(source, target, fstype, flags, data=None):
    ctypes, libc = _libc()
    args = [None if a is None else a.encode() for a in (source, target, fstype)]
    if libc.mount(*args, ctypes.c_ulong(flags), None if data is None else data.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'remount'} on {target}: {os.strerror(err)}")


def _mountinfo():
    """(mount point, per-mount flags) for every mount, parents first, with octal escapes decoded."""
    import re

    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            flags = 0
            for option in fields[5].split(","):
                flags |= MOUNT_OPTION_FLAGS.get(option, 0)
            mounts.append((point, flags))
    return mounts


def make_filesystem_read_only():
    """Remount every visible mount read-only; a mount that refuses is hidden under an empty read-only tmpfs."""
    for point, flags in _mountinfo():
        if flags & MS_RDONLY or not os.path.exists(point):
            continue
        try:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError:
            if point == "/" or not os.path.isdir(point):
                raise
            _mount("tmpfs", point, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=755")


def prepare_namespace(req):
    """Read-only host mounts, private /tmp holding the scratch dir, masks, relocated interpreter.

    Returns (interpreter path, environment, scratch dir) for the program.
    """
    make_filesystem_read_only()
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={req['scratch_bytes']},mode=1777")
    for masked in ("/run", "/dev/shm"):
        if os.path.isdir(masked) and not os.path.islink(masked):
            _mount("tmpfs", masked, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=755")
    os.mkdir(WORK, 0o700)
    env = {"PATH": "/usr/bin:/bin"}
    python = req["python"]
    if req["drop_uid"] is not None:
        os.chown(WORK, req["drop_uid"], req["drop_gid"])
        if req["python_prefix"]:
            # The unprivileged uid may not reach the interpreter (e.g. under /root): bind its prefix read-only.
            os.mkdir(RELOCATED_PYTHON, 0o755)
            _mount(req["python_prefix"], RELOCATED_PYTHON, None, MS_BIND | MS_REC)
            _mount(None, RELOCATED_PYTHON, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
            python = os.path.join(RELOCATED_PYTHON, req["python_rel"])
            env["LD_LIBRARY_PATH"] = os.path.join(RELOCATED_PYTHON, "lib")
    return python, env, WORK


def set_limits(req):
    for name, value in req["rlimits"].items():
        limit = getattr(resource, "RLIMIT_" + name.upper())
        soft, hard = (value, value) if isinstance(value, int) else value
        resource.setrlimit(limit, (soft, hard))


def drop_privileges(req):
    """no_new_privs, empty capability bounding set, and an unprivileged uid when the launcher is real root."""
    ctypes, libc = _libc()
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    for cap in range(last_cap + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    with open("/proc/self/status") as f:
        bounding = next(line.split()[1] for line in f if line.startswith("CapBnd:"))
    if int(bounding, 16) != 0:  # fail closed: with capabilities left, the program could remount or escape
        raise OSError(f"capability bounding set not empty after dropping: {bounding}")
    if req["drop_uid"] is not None:
        os.setgroups([])
        os.setgid(req["drop_gid"])
        os.setuid(req["drop_uid"])
        if os.getuid() != req["drop_uid"] or os.geteuid() != req["drop_uid"]:
            raise OSError("could not drop to the unprivileged uid")
    # A network namespace does not cover unix sockets reached by path (a world-writable one in a visible host
    # folder connects even on a read-only mount): refuse socket(2), io_uring and the rest outright.
    load_confine().install_seccomp()


_confine = None


def load_confine():
    """The sibling module `sandbox_confine.py`, loaded by path (under `-I` the script's folder is not on sys.path).

    Loaded once, first thing, while the launcher can still read its own interpreter's files.
    """
    global _confine
    if _confine is not None:
        return _confine
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_confine.py")
    spec = importlib.util.spec_from_file_location("hpci_sandbox_confine", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _confine = module
    return module


def confine_process(req, scratch):
    """Process mode: an unprivileged uid (when the launcher is root), then Landlock and seccomp, for good."""
    confine = load_confine()
    if req["drop_uid"] is not None:
        os.chown(scratch, req["drop_uid"], req["drop_gid"])
        os.setgroups([])
        os.setgid(req["drop_gid"])
        os.setuid(req["drop_uid"])
        if 0 in (os.getuid(), os.geteuid(), os.getgid(), os.getegid()):
            raise OSError("could not drop to the unprivileged uid")
    confine.set_no_new_privs()
    abi = confine.restrict_paths(req["read_paths"], [scratch], req["device_files"])
    if abi < req["landlock_min_abi"]:
        raise OSError(f"Landlock ABI {abi} < {req['landlock_min_abi']} needed here")
    confine.install_seccomp()


def child(req, python, env, scratch):
    """The program's process: stdin closed, status fd closed, limits, privileges dropped, then exec."""
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.close(req["status_fd"])
    set_limits(req)
    if req["namespaces"]:
        os.setsid()  # its own process group: kill(0, ...) cannot reach the launcher's group outside
        drop_privileges(req)
    os.chdir(scratch)
    with open("main.py", "w", encoding="utf-8") as f:
        f.write(req["source"])
    if not req["namespaces"]:
        confine_process(req, scratch)
    os.execve(python, [python, "-I", "-S", "-B", "-X", "utf8", "main.py"], env)


def main():
    req = json.loads(sys.stdin.buffer.read())
    status = {"exit_code": None, "signal": None, "error": None, "cpu_s": 0.0}
    try:
        load_confine()
        if req["namespaces"]:
            python, env, scratch = prepare_namespace(req)
        else:
            python, env, scratch = req["python"], {"PATH": "/usr/bin:/bin"}, req["scratch"]
            confine = load_confine()
            confine.become_subreaper()  # orphans of the program come back here, to be killed at the end
            signal.signal(signal.SIGTERM, lambda *_: (confine.kill_descendants(), os._exit(0)))
        pid = os.fork()
        if pid == 0:
            try:
                child(req, python, env, scratch)
            except BaseException as exc:  # setup of the program failed: say so on stderr, exit distinctly
                os.write(2, f"sandbox-launcher: {exc!r}\n".encode())
            os._exit(127)
        while True:  # as PID 1, reap every orphan until the program itself ends
            try:
                done, wait_status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if done == pid:
                if os.WIFSIGNALED(wait_status):
                    status["signal"] = os.WTERMSIG(wait_status)
                else:
                    status["exit_code"] = os.WEXITSTATUS(wait_status)
                break
        if not req["namespaces"]:  # (in namespaces mode, the end of PID 1 kills every process left)
            confine.kill_descendants()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        status["cpu_s"] = usage.ru_utime + usage.ru_stime
    except BaseException as exc:
        status["error"] = f"{type(exc).__name__}: {exc}"
    os.write(req["status_fd"], (json.dumps(status) + "\n").encode())
    os._exit(0)


if __name__ == "__main__":
    main()
