"""Kernel-enforced confinement for the sandbox's process mode: Landlock, seccomp, a subreaper.

Loaded by `sandbox_launcher.py` by file path (the launcher runs as `python -I -S`, stdlib only), and importable
as a normal module. Nothing here relies on the confined program's cooperation: once applied, Landlock and seccomp
cannot be lifted by the process or its children (unlike an audit hook, which a program can find and disable).

- `restrict_paths`: Landlock. Reading and executing only under `read_paths`, every file operation only under
  `write_paths`; TCP bind/connect refused (ABI 4+); signals and abstract unix sockets limited to the program's
  own processes (ABI 6+). Symlinks and hard links cannot escape: Landlock checks the path the kernel resolves.
- `install_seccomp`: refuses socket creation, io_uring (which could create sockets behind seccomp's back),
  ptrace, namespaces, mount, keyrings, bpf, userfaultfd and perf events.
- `become_subreaper` + `kill_descendants`: every process the program starts, even one that double-forks and
  calls setsid, is re-parented to the launcher, which kills them all when the program ends.
"""

import ctypes
import errno
import os
import platform
import signal
import struct

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER = 38, 22, 36
SECCOMP_MODE_FILTER = 2

# Landlock (include/uapi/linux/landlock.h); the syscall numbers are the same on x86_64 and aarch64.
_LL_CREATE, _LL_ADD_RULE, _LL_RESTRICT = 444, 445, 446
_LL_RULE_PATH_BENEATH, _LL_CREATE_VERSION = 1, 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1, 2, 4, 8
_FS_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1}  # IOCTL_DEV (ABI 5) left unhandled
_FS_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | (1 << 14)  # rights valid on a file
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2

# seccomp: per architecture, its audit tag and the numbers of the syscalls refused.
_ARCHES = {
    "x86_64": (
        0xC000003E,
        {
            "socket": 41,
            "ptrace": 101,
            "mount": 165,
            "umount2": 166,
            "pivot_root": 155,
            "unshare": 272,
            "setns": 308,
            "keyctl": 250,
            "add_key": 248,
            "request_key": 249,
            "bpf": 321,
            "userfaultfd": 323,
            "perf_event_open": 298,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "landlock_create_ruleset": 444,
            "clone": 56,
            "clone3": 435,
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            "socket": 198,
            "ptrace": 117,
            "mount": 40,
            "umount2": 39,
            "pivot_root": 41,
            "unshare": 97,
            "setns": 268,
            "keyctl": 219,
            "add_key": 217,
            "request_key": 218,
            "bpf": 280,
            "userfaultfd": 282,
            "perf_event_open": 241,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "landlock_create_ruleset": 444,
            "clone": 220,
            "clone3": 435,
        },
    ),
}
REFUSED = (
    "socket", "ptrace", "mount", "umount2", "pivot_root", "unshare", "setns", "keyctl", "add_key", "request_key",
    "bpf", "userfaultfd", "perf_event_open", "process_vm_readv", "process_vm_writev", "io_uring_setup",
    "io_uring_enter", "io_uring_register",
)  # fmt: skip
_CLONE_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def set_no_new_privs() -> None:
    _check(_libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers, 0 when it has none (or a filter refuses the call)."""
    version = _libc().syscall(_LL_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(_LL_CREATE_VERSION))
    return max(int(version), 0)


def restrict_paths(read_paths, write_paths, file_paths=()) -> int:
    """Confine this process (and everything it later starts) with Landlock; returns the ABI used.

    `read_paths`: directories or files to read and execute; `write_paths`: directories allowing every file
    operation; `file_paths`: single files to read and write (e.g. /dev/null). Paths that do not exist are skipped.
    Requires no_new_privs (or CAP_SYS_ADMIN). Raises OSError when Landlock is unavailable.
    """
    libc = _libc()
    abi = landlock_abi()
    if abi < 1:
        raise OSError(errno.ENOSYS, "Landlock is not available on this kernel")
    fs_all = _FS_ALL_BY_ABI[min(abi, 3)]
    attr = struct.pack(
        "QQQ", fs_all, _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0,
        _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL if abi >= 6 else 0,
    )  # fmt: skip
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    buffer = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _check(libc.syscall(_LL_CREATE, buffer, ctypes.c_size_t(size), ctypes.c_uint32(0)), "landlock")
    try:
        read = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
        rules = [(p, read) for p in read_paths] + [(p, fs_all) for p in write_paths]
        rules += [(p, (_FS_READ_FILE | _FS_WRITE_FILE | (1 << 14)) & fs_all) for p in file_paths]
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                if not os.path.isdir(path):
                    rights &= _FS_FILE_RIGHTS
                rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
                _check(
                    libc.syscall(_LL_ADD_RULE, ruleset, _LL_RULE_PATH_BENEATH, rule, 0), f"landlock {path}"
                )
            finally:
                os.close(fd)
        _check(libc.syscall(_LL_RESTRICT, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _filter(names, block_namespaces: bool) -> list[tuple[int, int, int, int]]:
    """A classic-BPF seccomp program: (code, jt, jf, k) rows. Unknown architecture: KeyError."""
    arch_tag, numbers = _ARCHES[platform.machine()]
    ld_w_abs, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, kill, eperm, enosys = 0x7FFF0000, 0x80000000, 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
    rows = [(ld_w_abs, 0, 0, 4), (jeq, 1, 0, arch_tag), (ret, 0, 0, kill), (ld_w_abs, 0, 0, 0)]
    if platform.machine() == "x86_64":  # the x32 ABI's numbers: refuse them all
        rows += [(jge, 0, 1, 0x40000000), (ret, 0, 0, enosys)]
    refused = set(names) | ({"unshare", "setns"} if block_namespaces else set())
    for name in sorted(refused - {"clone", "clone3"}):
        rows += [(jeq, 0, 1, numbers[name]), (ret, 0, 0, eperm)]
    if block_namespaces:  # clone3 passes its flags in memory BPF cannot read: ENOSYS makes libc use clone
        rows += [(jeq, 0, 1, numbers["clone3"]), (ret, 0, 0, enosys)]
        rows += [(jeq, 0, 3, numbers["clone"]), (ld_w_abs, 0, 0, 16), (jset, 0, 1, _CLONE_NAMESPACE_FLAGS)]
        rows += [(ret, 0, 0, eperm)]
    rows.append((ret, 0, 0, allow))
    return rows


def install_seccomp(names=REFUSED, block_namespaces: bool = True) -> None:
    """Refuse the named syscalls (EPERM) for this process and its descendants, for good."""
    try:
        rows = _filter(names, block_namespaces)
    except KeyError as exc:
        raise OSError(errno.ENOSYS, f"no seccomp table for {platform.machine()}: {exc}") from None

    class SockFilter(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_uint16),
            ("jt", ctypes.c_uint8),
            ("jf", ctypes.c_uint8),
            ("k", ctypes.c_uint32),
        ]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]

    program = (SockFilter * len(rows))(*[SockFilter(*row) for row in rows])
    fprog = SockFprog(len(rows), program)
    _check(_libc().prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def become_subreaper() -> None:
    _check(_libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def _descendants(root: int) -> list[int]:
    """Every live process below `root`, from one scan of /proc (parents before children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        children.setdefault(int(stat[stat.rindex(b")") + 2 :].split()[1]), []).append(int(entry))
    found, frontier = [], [root]
    while frontier:
        below = [c for p in frontier for c in children.get(p, [])]
        found += below
        frontier = below
    return found


def kill_descendants() -> None:
    """SIGKILL every process below this (subreaper) one and reap them; repeat for any forked meanwhile.

    Killing the whole tree at once (not one generation at a time) stops a fork bomb from refilling it; a process
    forked between the scan and the kill has a dead parent, so it comes back here and the next round gets it.
    """
    me = os.getpid()
    while True:
        victims = _descendants(me)
        for victim in victims:
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG if not victims else 0)[0] != 0:
                victims = []  # one blocking wait per round, then sweep up whatever else is ready
        except ChildProcessError:
            if not _descendants(me):
                return
