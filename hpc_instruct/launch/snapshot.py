"""Code snapshot at submit time: running and requeued jobs execute the code that was submitted, not whatever
the checkout holds days later.

The `hpc_instruct` package is copied to `<study>/state/code/<hash>/` (content-addressed, so an unchanged
checkout reuses the same snapshot) and jobs put that folder first on PYTHONPATH. Directories on PYTHONPATH are
searched before the editable install's finder, so the snapshot wins.

A study folder is writable by colleagues, so a snapshot is code anyone with that access could change. It is
therefore checked against its name before every use: `snapshot()` rebuilds one whose content does not match,
and every job verifies it (`job_setup()`, with an isolated interpreter that imports nothing from the study)
before Python may import from it. The check counts every file, compiled caches included (a planted `.pyc`
would run instead of its source), and jobs neither write caches there nor put their working directory on
sys.path (`PYTHONSAFEPATH`): a `hpc_instruct/` folder in the study directory cannot shadow the code.
"""

from __future__ import annotations

import inspect
import shlex
import shutil
import sys
from pathlib import Path

from hpc_instruct.atomic import atomic_dir
from hpc_instruct.provenance import PACKAGE, package_digest, package_hash


def is_intact(snapshot_dir: Path) -> bool:
    """True when `snapshot_dir/hpc_instruct` holds exactly the files its name promises, and nothing else."""
    package = snapshot_dir / "hpc_instruct"
    if not package.is_dir() or package.is_symlink() or [p.name for p in snapshot_dir.iterdir()] != ["hpc_instruct"]:
        return False  # anything beside the package would be importable too (a planted `torch/`)
    return package_digest(package, every_file=True) == snapshot_dir.name


def snapshot(code_snapshots: Path, package: Path = PACKAGE) -> Path:
    """Copy the package into <code_snapshots>/<hash>/hpc_instruct (once; again if it was changed) and return the
    folder for PYTHONPATH."""
    digest = package_hash(package)
    target = code_snapshots / digest
    if not is_intact(target):
        with atomic_dir(target) as tmp:
            shutil.copytree(package, tmp / "hpc_instruct", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))
    return target


def verify_command(snapshot_dir: Path, python: str = sys.executable) -> str:
    """A shell command that fails, saying why, unless `snapshot_dir` is intact. It runs `python -I` (no
    PYTHONPATH, no working directory or user site on sys.path), so nothing in the study can change the check."""
    code = (inspect.getsource(package_digest)
            + "import sys\nd = sys.argv[1]\n"
            + "import os\nok = os.path.isdir(d) and os.listdir(d) == ['hpc_instruct'] and not os.path.islink(d + '/hpc_instruct')\n"
            + "ok = ok and package_digest(d + '/hpc_instruct', True) == os.path.basename(d.rstrip('/'))\n"
            + "sys.exit(0 if ok else 'hpc_instruct: the code snapshot ' + d + ' does not match its hash: it was changed "
            + "after submission. Run `hpci resubmit` (or `hpci submit`) to rebuild it.')\n")
    return f"{shlex.quote(python)} -I -c {shlex.quote(code)} {shlex.quote(str(snapshot_dir))}"


def job_setup(snapshot_dir: Path, python: str = sys.executable) -> list[str]:
    """Shell lines that start every job: verify the snapshot, then import only from it, never from the cwd."""
    return [
        f"{verify_command(snapshot_dir, python)} || exit 1",
        f"export PYTHONPATH={shlex.quote(str(snapshot_dir))}${{PYTHONPATH:+:$PYTHONPATH}}",
        "export PYTHONSAFEPATH=1 PYTHONDONTWRITEBYTECODE=1",
    ]
