"""The sandbox without user namespaces: a program that hunts for and disables any audit hook, then tries every
escape the issue names (writes through absolute paths, symlinks and hard links, the scorer's environment secrets,
TCP and unix sockets, a daemon that outlives the run, a signal to the scorer). It must gain nothing, the program
must never run as root, and where no kernel-enforced isolation can be built the sandbox must refuse to run.

"No user namespaces" is made real, not mocked: a child interpreter installs a seccomp filter that refuses
unshare(2), setns(2) and namespace flags to clone(2) before it scores, so `unshare(1)` fails there as it does on a
machine with user namespaces switched off; a second filter also refuses Landlock.

Covers: hpc_instruct.evaluate.scoring.sandbox_confine, hpc_instruct.evaluate.scoring.sandbox_interpreter."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import hpc_instruct
from hpc_instruct.evaluate.scoring import (
    SandboxConfig,
    namespaces_available,
    process_isolation_available,
    run_python,
)

AS_ROOT = os.geteuid() == 0
REPO = Path(hpc_instruct.__file__).resolve().parents[1]
CANARY = "hpci-canary-4f1c2e"

# The hostile program. Placeholders are filled by `_hunter`.
HUNTER = """
import gc, json, os, socket, sys, time
out = {"uid": os.getuid()}
disabled = 0
for obj in gc.get_objects():  # look for anything an audit hook would hold, and neuter it
    try:
        if isinstance(obj, (set, dict)) and any(k in obj for k in ("os.system", "socket.__new__")):
            obj.clear(); disabled += 1
        elif callable(obj) and getattr(obj, "__name__", "") in ("hook", "audit_hook", "guard"):
            obj.__code__ = (lambda *a: None).__code__; disabled += 1
    except Exception:
        pass
out["disabled"] = disabled

def attempt(name, action):
    try:
        out[name] = ["ok", action()]
    except Exception as exc:
        out[name] = [type(exc).__name__, getattr(exc, "errno", None)]

HOST = %(host)r
attempt("absolute_write", lambda: open(HOST + "/abs", "w").write("pwned"))
def via_symlink():
    os.symlink(HOST + "/via_symlink", "link")
    return open("link", "w").write("pwned")
attempt("symlink_write", via_symlink)
def via_hardlink():
    os.link(HOST + "/existing", "hard")
    return open("hard", "a").write("pwned")
attempt("hardlink_write", via_hardlink)
attempt("dir_symlink_write", lambda: (os.symlink(HOST, "dir"), open("dir/via_dir", "w").write("pwned"))[1])
def secrets():
    found = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:  # Landlock hides /proc in process mode
        pids = []
    for pid in pids + ["self", str(%(scorer)d)]:
        try:
            if %(canary)r.encode() in open("/proc/%%s/environ" %% pid, "rb").read():
                found.append(pid)
        except OSError:
            pass
    return found + [k for k, v in os.environ.items() if %(canary)r in v]
attempt("secrets", secrets)
def tcp():
    s = socket.socket(); s.settimeout(2); s.connect(("127.0.0.1", %(port)d)); s.sendall(b"pwned")
attempt("tcp", tcp)
def unix():
    s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(HOST + "/sock"); s.sendall(b"pwned")
attempt("unix", unix)
attempt("signal_scorer", lambda: os.kill(%(scorer)d, 0))
def daemon():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", ["/bin/sleep", %(token)r])
        os._exit(0)
    os.wait()
attempt("daemon", daemon)
print(json.dumps(out), flush=True)
"""


@pytest.fixture
def host_dir():
    """World-writable, outside /tmp, holding a world-writable file, a TCP listener and a unix socket listener."""
    parent = "/var/tmp" if os.path.isdir("/var/tmp") else None
    path = Path(tempfile.mkdtemp(prefix="hpci-sandbox-test-", dir=parent))
    path.chmod(0o777)
    (path / "existing").write_text("original")
    (path / "existing").chmod(0o666)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def listeners(host_dir):
    tcp, unix = socket.socket(), socket.socket(socket.AF_UNIX)
    tcp.bind(("127.0.0.1", 0))
    unix.bind(str(host_dir / "sock"))
    (host_dir / "sock").chmod(0o777)
    for s in (tcp, unix):
        s.listen()
        s.settimeout(0.2)
    yield tcp, unix
    tcp.close()
    unix.close()


def _hunter(host_dir: Path, tcp: socket.socket, token: str) -> str:
    fields = {"host": str(host_dir), "scorer": os.getpid(), "canary": CANARY, "port": tcp.getsockname()[1]}
    return textwrap.dedent(HUNTER) % {**fields, "token": token}


def _processes_with(token: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def _gone(token: str, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while _processes_with(token):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _assert_contained(out: dict, host_dir: Path, listeners, token: str) -> None:
    assert sorted(p.name for p in host_dir.iterdir()) == ["existing", "sock"], list(host_dir.iterdir())
    assert (host_dir / "existing").read_text() == "original"
    for name in ("absolute_write", "symlink_write", "hardlink_write", "dir_symlink_write", "tcp", "unix"):
        assert out[name][0] != "ok", (name, out[name])
    assert out["secrets"] == ["ok", []]
    assert out["signal_scorer"][0] == "PermissionError" or out["signal_scorer"][0] == "ProcessLookupError"
    for listener in listeners:
        with pytest.raises(TimeoutError):
            listener.accept()
    assert _gone(token), _processes_with(token)  # the daemon did not outlive the run


def _token() -> str:
    return f"{time.time_ns() % 10**7}.{os.getpid()}"


@pytest.mark.parametrize(
    "isolation",
    [
        pytest.param(
            "namespaces", marks=pytest.mark.skipif(not namespaces_available(), reason="no namespaces")
        ),
        pytest.param(
            "process", marks=pytest.mark.skipif(not process_isolation_available(), reason="no Landlock")
        ),
    ],
)
def test_hook_hunter_gains_nothing(isolation, host_dir, listeners, monkeypatch):
    monkeypatch.setenv("HPCI_SECRET_TOKEN", CANARY)  # in the scorer's environment, as a real token is
    token = _token()
    result = run_python(_hunter(host_dir, listeners[0], token), SandboxConfig(isolation=isolation, wall_s=20))
    assert result.passed, result.stderr
    out = json.loads(result.stdout)
    _assert_contained(out, host_dir, listeners, token)
    assert out["daemon"][0] == "ok"  # it could start one; it did not survive
    if AS_ROOT:
        assert out["uid"] == 65534 and "uid=65534" in result.isolation


_NO_USERNS = """
import json, sys
from hpc_instruct.evaluate.scoring import sandbox_confine
sandbox_confine.install_seccomp(names=sys.argv[1].split(",") if sys.argv[1] else (), block_namespaces=True)
from hpc_instruct.evaluate.scoring import SandboxConfig, SandboxUnavailable, namespaces_available, run_python
print(json.dumps({"namespaces": namespaces_available()}), flush=True)
for isolation in ("auto", "process"):
    try:
        r = run_python(sys.stdin.read() if isolation == "auto" else "print('ran')", SandboxConfig(isolation=isolation))
        print(json.dumps({"status": r.status, "isolation": r.isolation, "stdout": r.stdout, "stderr": r.stderr}))
    except SandboxUnavailable as exc:
        print(json.dumps({"unavailable": str(exc)}))
"""


def _without_user_namespaces(refused: str, program: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-c", _NO_USERNS, refused],
        input=program,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HPCI_SECRET_TOKEN": CANARY},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.skipif(not process_isolation_available(), reason="no Landlock/seccomp process mode here")
def test_without_user_namespaces_the_hunter_runs_unprivileged_and_confined(host_dir, listeners):
    token = _token()
    probe, auto, explicit = _without_user_namespaces("", _hunter(host_dir, listeners[0], token))
    assert probe == {"namespaces": False}  # unshare(1) really fails in that process
    assert auto["status"] == "ok", auto["stderr"]
    assert auto["isolation"].startswith("process(landlock,seccomp,subreaper)")
    out = json.loads(auto["stdout"])
    _assert_contained(out, host_dir, listeners, token)
    assert out["uid"] != 0  # never root: nobody as a root caller, the caller's own uid otherwise
    assert explicit["stdout"] == "ran\n"


def test_without_namespaces_or_landlock_the_sandbox_fails_closed(host_dir):
    marker = host_dir / "ran"
    program = f"open({str(marker)!r}, 'w').write('ran')"
    probe, auto, explicit = _without_user_namespaces("landlock_create_ruleset", program)
    assert probe == {"namespaces": False}
    assert "no sandbox can be built here" in auto["unavailable"]
    assert "unavailable" in explicit  # an explicit "process" is refused too, not run unconfined
    assert not marker.exists()
