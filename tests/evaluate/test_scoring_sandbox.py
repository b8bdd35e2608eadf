"""Hostile programs in the code sandbox: each must be contained, and the scorer must survive to report it.

Every test runs under both isolations this machine offers: "namespaces" (skipped where `unshare` cannot create
them) and "process" (Landlock + seccomp + an unprivileged uid + a subreaper). Where the two contain a program differently the
test says so. Runs are short: limits are a few seconds at most.

Covers: hpc_instruct.evaluate.scoring.sandbox, hpc_instruct.evaluate.scoring.sandbox_launcher."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from hpc_instruct.evaluate.scoring import (
    SandboxConfig,
    namespaces_available,
    process_isolation_available,
    run_python,
)

ISOLATIONS = [
    pytest.param(
        "namespaces",
        marks=pytest.mark.skipif(not namespaces_available(), reason="unshare cannot create namespaces here"),
    ),
    pytest.param(
        "process",
        marks=pytest.mark.skipif(
            not process_isolation_available(), reason="no Landlock/seccomp process mode here"
        ),
    ),
]
AS_ROOT = os.geteuid() == 0
_BOMB_UID = 3_000_000 + os.getpid() % 100_000  # an unused uid, unique to this test session


@pytest.fixture(params=ISOLATIONS)
def isolation(request) -> str:
    return request.param


def run(source: str, isolation: str, **limits):
    config = SandboxConfig(isolation=isolation, **{"wall_s": 20.0, "cpu_s": 2, **limits})
    return run_python(textwrap.dedent(source), config)


def processes_with(token: str) -> list[int]:
    """Host processes whose command line contains `token` (evidence that nothing outlived a run)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.fixture
def host_dir():
    """A world-writable directory outside /tmp: visible inside the sandbox, unlike pytest's tmp_path, which lives
    under /tmp and is hidden there by the sandbox's private /tmp."""
    parent = "/var/tmp" if os.path.isdir("/var/tmp") else None
    path = Path(tempfile.mkdtemp(prefix="hpci-sandbox-test-", dir=parent))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _runs_main(pid: int) -> bool:
    try:
        return b"main.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# ---- a correct program and the basic contract -------------------------------------------------------------


def test_correct_program_passes(isolation):
    result = run("print(sum(range(10)))", isolation)
    assert result.passed and result.status == "ok" and result.exit_code == 0
    assert result.stdout == "45\n"
    assert result.isolation.startswith(isolation)


def test_fresh_isolated_interpreter_clean_env_closed_stdin(isolation, monkeypatch):
    monkeypatch.setenv("HPCI_CANARY", "secret")
    result = run(
        """
        import os, sys
        print(sys.flags.isolated, sys.flags.no_site, repr(sys.stdin.read()))
        print(sorted(os.environ))
        print(os.listdir("."))
        open("left_behind.txt", "w").write("x")
        print(os.getcwd())
        """,
        isolation,
    )
    assert result.passed, result.stderr
    flags, env, listing, cwd = result.stdout.splitlines()
    assert flags == "1 1 ''"  # -I -S, and stdin reads EOF at once
    assert "HPCI_CANARY" not in env and "HOME" not in env and "'PATH'" in env
    assert listing == "['main.py']"  # a fresh scratch directory holding only the program
    assert not Path(cwd, "left_behind.txt").exists()  # deleted (process) or never on the host (namespaces)
    again = run("import os; print(os.listdir('.'))", isolation)
    assert again.stdout.strip() == "['main.py']"


def test_program_error_is_reported(isolation):
    result = run("raise ValueError('bad answer')", isolation)
    assert (result.status, result.exit_code, result.passed) == ("error", 1, False)
    assert "ValueError: bad answer" in result.stderr
    assert run("import sys; sys.exit(3)", isolation).exit_code == 3


# ---- resource limits --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_infinite_loop_is_stopped_by_cpu_limit(isolation):
    result = run("while True: pass", isolation, cpu_s=1, wall_s=30)
    assert result.status == "cpu_limit" and result.signal in (signal.SIGXCPU, signal.SIGKILL)
    assert result.cpu_s > 0.5  # rusage is sampled; RLIMIT_CPU uses the precise runtime


@pytest.mark.slow
def test_sleeping_program_is_stopped_by_wall_clock(isolation):
    result = run("import time; time.sleep(60)", isolation, wall_s=1.0)
    assert result.status == "timeout" and not result.passed
    assert 1.0 <= result.wall_s < 10


def test_memory_bomb_is_refused(isolation):
    result = run(
        """
        hog = []
        while True:
            hog.append(bytearray(64 << 20))
        """,
        isolation,
        memory_bytes=512 << 20,
    )
    assert result.status in ("error", "killed") and "MemoryError" in result.stderr


def test_giant_file_is_cut_at_the_file_size_limit(isolation):
    result = run(
        """
        with open("big.bin", "wb") as f:
            for _ in range(64):
                f.write(b"x" * (1 << 20))
        """,
        isolation,
        file_bytes=1 << 20,
    )
    assert result.status in ("error", "killed") and "File too large" in result.stderr


def test_output_flood_is_capped(isolation):
    result = run("import sys\nwhile True: sys.stdout.write('x' * 65536)", isolation, output_bytes=100_000)
    assert result.status == "output_limit" and result.truncated
    assert len(result.stdout) + len(result.stderr) <= 100_000


@pytest.mark.slow
def test_fork_bomb_is_contained(isolation):
    before = set(map(int, filter(str.isdigit, os.listdir("/proc"))))
    result = run(
        """
        import os, sys
        first = os.getpid()
        told = False
        while True:
            try:
                os.fork()
            except OSError as exc:  # EAGAIN from RLIMIT_NPROC
                if os.getpid() == first and not told:
                    print("fork refused:", type(exc).__name__, flush=True)
                    told = True
        """,
        isolation,
        wall_s=5.0,
        processes=16,
        # As root the program runs as this uid; a uid of its own keeps the bomb from using up the process budget
        # of other sandboxes that run as nobody on this machine at the same time (RLIMIT_NPROC is per uid).
        uid=_BOMB_UID,
        gid=_BOMB_UID,
    )
    assert result.status in ("timeout", "cpu_limit") and "fork refused" in result.stdout

    def survivors() -> list[int]:
        return [
            pid for pid in set(map(int, filter(str.isdigit, os.listdir("/proc")))) - before if _runs_main(pid)
        ]

    assert _eventually(lambda: not survivors()), survivors()  # waits on the event, not on a clock


# ---- escapes ----------------------------------------------------------------------------------------------


def test_network_connect_to_a_local_listener_fails(isolation):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = run(
            f"""
            import socket
            s = socket.socket()
            s.settimeout(2)
            s.connect(("127.0.0.1", {port}))
            print("connected")
            """,
            isolation,
        )
        listener.settimeout(0.3)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert "connected" not in result.stdout and result.status == "error"
    # seccomp refuses socket(2) (and in namespaces there is no network either)
    assert "Operation not permitted" in result.stderr


def test_writes_outside_the_scratch_dir_fail(isolation, tmp_path, host_dir):
    host_tmp = Path("/tmp") / f"hpci-sandbox-test-{uuid.uuid4().hex}"
    targets = [host_dir / "pwned", tmp_path / "pwned", host_tmp]
    result = run(
        f"""
        for path in {[str(t) for t in targets]!r}:
            try:
                open(path, "w").write("pwned")
                print("wrote")
            except OSError as exc:
                print("refused", exc.errno)
        """,
        isolation,
    )
    assert result.passed, result.stderr
    assert not any(t.exists() for t in targets)
    if isolation == "namespaces":
        # host_dir is visible but every host mount is read-only (EROFS), even for a world-writable directory;
        # /tmp is a private tmpfs, so the test's tmp_path does not exist there (ENOENT) and a write to /tmp
        # lands in the sandbox's own /tmp, which vanishes with it.
        assert result.stdout.splitlines() == ["refused 30", "refused 2", "wrote"]
    else:
        assert result.stdout.splitlines() == ["refused 13"] * 3  # Landlock: EACCES outside the scratch dir


@pytest.mark.skipif(not AS_ROOT or not namespaces_available(), reason="needs root (program runs as nobody)")
def test_reading_private_files_fails_as_unprivileged_uid(host_dir):
    secret = host_dir / "secret.txt"
    secret.write_text("top secret")
    secret.chmod(0o600)
    result = run(
        f"""
        import os
        print(os.getuid())
        for path in [{str(secret)!r}, "/etc/shadow"]:
            try:
                print(open(path).read())
            except OSError as exc:
                print("refused", exc.errno)
        """,
        "namespaces",
    )
    assert result.stdout.splitlines() == ["65534", "refused 13", "refused 13"]


def test_os_system_cannot_touch_the_host(isolation, host_dir):
    marker = host_dir / "from_shell"
    result = run(f"import os; print(os.system('id -u; echo pwned > {marker}'))", isolation)
    assert not marker.exists()
    # The shell runs, but its write is refused: a read-only mount (namespaces) or Landlock (process).
    assert ("Read-only file system" if isolation == "namespaces" else "Permission denied") in result.stderr


def test_killing_the_parent_does_not_reach_the_scorer(isolation):
    result = run(
        """
        import os, signal
        for target in (os.getppid(), 0, -1):
            try:
                os.kill(target, signal.SIGKILL)
            except Exception as exc:
                print("refused", target, type(exc).__name__)
        print("still here")
        """,
        isolation,
    )
    # The scorer (this test) is alive, and the launcher survived to report how the program ended.
    assert result.status in ("ok", "error", "killed")
    # The launcher is out of reach (another uid or PID 1; Landlock's signal scope), so kill(0) hit only the
    # program itself.
    assert result.status == "killed" and result.signal == signal.SIGKILL


def test_spawned_children_die_with_the_run(isolation):
    token = f"{time.time_ns() % 10**6}.{os.getpid()}"
    result = run(
        f"""
        import os, subprocess
        subprocess.Popen(["/bin/sleep", "{token}1"])
        if os.fork() == 0:  # a daemon that leaves the process group
            os.setsid()
            os.execv("/bin/sleep", ["/bin/sleep", "{token}2"])
        print("spawned")
        """,
        isolation,
    )
    assert _eventually(lambda: not processes_with(token)), processes_with(token)
    # Both run: the daemon dies with the PID namespace (namespaces) or at the hands of the subreaper (process).
    assert result.passed and result.stdout == "spawned\n"


@pytest.mark.skipif(not namespaces_available(), reason="needs namespaces")
def test_namespaced_program_has_no_capabilities_and_sees_only_its_processes():
    result = run(
        """
        import os
        status = open("/proc/self/status").read()
        print([line.split()[1] for line in status.splitlines() if line.startswith(("CapEff", "CapBnd", "NoNewPrivs"))])
        print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
        """,
        "namespaces",
    )
    caps, pids = result.stdout.splitlines()
    assert caps == "['0000000000000000', '0000000000000000', '1']"
    assert pids == "[1, 2]"  # the launcher (PID 1) and the program


def _eventually(condition, timeout_s: float = 15.0) -> bool:
    """True once `condition()` holds (killed processes leave /proc a moment after the sandbox returns)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
