"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_CLUSTER = REPO_ROOT / "slurm" / "local-cluster"
sys.path.insert(0, str(Path(__file__).resolve().parent / "recipe"))  # recipe_base: the small valid recipe
from recipe_base import BASE  # noqa: E402


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """A healthy local Slurm cluster (slurm/local-cluster/); returns its one-line status.

    Uses a running cluster as it is (any user). Otherwise runs up.sh (apt-get install + start, ~15 s cold),
    which needs root on Debian: elsewhere the test is skipped with the reason. A failing up.sh fails the test.
    """
    status = subprocess.run([LOCAL_CLUSTER / "status.sh"], capture_output=True, text=True)
    if status.returncode == 0:
        return status.stdout.strip()
    if not Path("/etc/debian_version").exists():
        pytest.skip(f"no local Slurm cluster ({status.stdout.strip()}) and up.sh needs Debian (apt-get)")
    if os.geteuid() != 0:
        pytest.skip(
            f"no local Slurm cluster ({status.stdout.strip()}); start it as root: {LOCAL_CLUSTER}/up.sh"
        )
    up = subprocess.run([LOCAL_CLUSTER / "up.sh"], capture_output=True, text=True, timeout=900)
    if up.returncode != 0:
        pytest.fail(f"slurm/local-cluster/up.sh failed (exit {up.returncode}):\n{up.stdout}\n{up.stderr}")
    return up.stdout.strip().splitlines()[-1]


@pytest.fixture
def write_recipe(tmp_path: Path):
    """write_recipe(text, name='r.yaml') -> path; `{out}` in text becomes a study root inside tmp_path."""

    def write(text: str = BASE, name: str = "r.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).replace("{out}", str(tmp_path / "studies")).replace("{{", "{").replace("}}", "}"))
        return path

    return write
