"""The sandbox's other paths: pass@k over sandboxed samples, the non-root (user namespace) path, and the
sandbox's own failures. Hostile programs are in test_scoring_sandbox.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from hpc_instruct.evaluate.scoring import (
    SandboxConfig,
    SandboxUnavailable,
    namespaces_available,
    process_isolation_available,
    run_python,
    sandbox,
    score_code_samples,
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


@pytest.fixture(params=ISOLATIONS)
def isolation(request) -> str:
    return request.param


@pytest.fixture
def host_dir():
    """A world-writable directory outside /tmp (the sandbox's private /tmp would hide it)."""
    parent = "/var/tmp" if os.path.isdir("/var/tmp") else None
    path = Path(tempfile.mkdtemp(prefix="hpci-sandbox-test-", dir=parent))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---- pass@k over sandboxed samples ------------------------------------------------------------------------


def test_score_code_samples(isolation):
    tests = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
    samples = [
        "def add(a, b):\n    return a + b\n",
        "def add(a, b):\n    return a - b\n",
        "def add(a, b):\n    while True:\n        pass\n",
        "import os\ndef add(a, b):\n    os.system('exit 0')\n    return a + b\n",
    ]
    config = SandboxConfig(isolation=isolation, wall_s=10.0, cpu_s=1)
    result = score_code_samples(samples, tests, ks=(1, 2, 10), config=config, workers=2)
    statuses = [r.status for r in result.results]
    assert statuses[:2] == ["ok", "error"]
    assert statuses[2] in ("cpu_limit", "timeout")  # which limit fires first depends on the machine's load
    expected_c = 2  # os.system('exit 0') runs in both isolations: the shell itself harms nothing
    assert result.passed == expected_c and result.n == 4
    assert result.at(1) == pytest.approx(expected_c / 4)
    assert [k for k, _ in result.pass_at] == [1, 2]  # k > n is left out
    with pytest.raises(KeyError):
        result.at(10)


# ---- the non-root path: a user namespace ------------------------------------------------------------------

_AS_NOBODY = """
import json, os, sys
from hpc_instruct.evaluate.scoring import SandboxConfig, run_python
programs = {
    "whoami": "import os; print(os.getuid(), open('/proc/self/status').read().split('CapEff:')[1].split()[0])",
    "net": "import socket\\ntry:\\n    socket.create_connection(('127.0.0.1', 9), 2)\\nexcept OSError as e:\\n    print(e.errno)",
    "write": "try:\\n    open(%(target)r, 'w')\\nexcept OSError as e:\\n    print(e.errno)",
    "bomb": "import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        print('refused', flush=True)\\n        break",
}
config = SandboxConfig(isolation="namespaces", wall_s=10.0, processes=16)
out = {}
for name, source in programs.items():
    r = run_python(source, config)
    out[name] = [r.status, r.stdout.strip().splitlines()[:1], r.isolation]
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.skipif(not AS_ROOT, reason="needs root to start a process as nobody")
def test_user_namespace_path_as_an_unprivileged_caller(host_dir):
    """The path clusters take (caller is not root): same containment through a user namespace."""
    import hpc_instruct

    python, setpriv = shutil.which("python3", path="/usr/bin:/bin"), shutil.which("setpriv")
    if python is None or setpriv is None:
        pytest.skip("needs a system python3 and setpriv(1) to run as nobody")
    repo = Path(hpc_instruct.__file__).resolve().parents[1]
    target = host_dir / "pwned"  # world-writable: nobody could write it outside the sandbox
    code = _AS_NOBODY % {"target": str(target)}
    command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--", python, "-c", code]
    done = subprocess.run(
        command,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo)},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 and "unshare" in done.stderr:
        pytest.skip(f"user namespaces unavailable for nobody: {done.stderr[-200:]}")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert "userns-root-no-caps" in out["whoami"][2]
    assert out["whoami"][:2] == ["ok", ["0 0000000000000000"]]  # root of its namespace, without capabilities
    assert out["net"][:2] == ["ok", ["1"]]  # EPERM: seccomp refuses socket(2)
    assert out["write"][:2] == ["ok", ["30"]]  # EROFS
    assert out["bomb"][:2] == ["ok", ["refused"]]  # RLIMIT_NPROC counts per user namespace
    assert not target.exists()


# ---- the sandbox's own failures -----------------------------------------------------------------------------


def test_config_is_validated():
    with pytest.raises(ValueError, match="valid: auto, namespaces, process"):
        SandboxConfig(isolation="docker")
    with pytest.raises(ValueError):
        SandboxConfig(wall_s=0)


def test_namespaces_requested_but_unavailable(monkeypatch):
    monkeypatch.setattr(sandbox, "namespaces_available", lambda: False)
    with pytest.raises(SandboxUnavailable, match="isolation='process'"):
        run_python("pass", SandboxConfig(isolation="namespaces"))
    assert run_python("pass", SandboxConfig(isolation="auto")).isolation.startswith("process")


def test_a_broken_launcher_is_a_sandbox_error_not_a_crash(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "_LAUNCHER", tmp_path / "missing_launcher.py")
    result = run_python("print('hi')", SandboxConfig(isolation="process"))
    assert (result.status, result.passed) == ("sandbox_error", False)
    assert "without a status" in result.stderr
