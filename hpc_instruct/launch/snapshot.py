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

import hpc_instruct
from hpc_instruct.atomic import atomic_dir

PACKAGE = Path(hpc_instruct.__file__).resolve().parent


def _digest(package, every_file):  # noqa: ANN001, ANN202 - runs standalone in jobs (see job_setup): no annotations
    """sha256 (16 hex digits) over relative path and bytes of the package's files; caches too if every_file."""
    import hashlib
    from pathlib import Path

    package = Path(package)
    h = hashlib.sha256()
    for p in sorted(package.rglob("*")):
        rel = p.relative_to(package)
        if every_file and p.is_symlink():  # in a snapshot nothing is a link (copytree copies their content)
            content = b"symlink:" + str(p.readlink()).encode()
        elif not p.is_file() or not every_file and ("__pycache__" in rel.parts or p.suffix in (".pyc", ".pyo")):
            continue
        else:
            content = p.read_bytes()
        h.update(str(rel).encode() + b"\0" + content + b"\0")
    return h.hexdigest()[:16]


def code_hash(package: Path = PACKAGE) -> str:
    """The hash of the package's source files (what a snapshot is named by)."""
    return _digest(package, every_file=False)


def is_intact(snapshot_dir: Path) -> bool:
    """True when `snapshot_dir/hpc_instruct` holds exactly the files its name promises, and nothing else."""
    package = snapshot_dir / "hpc_instruct"
    if not package.is_dir() or package.is_symlink() or [p.name for p in snapshot_dir.iterdir()] != ["hpc_instruct"]:
        return False  # anything beside the package would be importable too (a planted `torch/`)
    return _digest(package, every_file=True) == snapshot_dir.name


def snapshot(state_dir: Path, package: Path = PACKAGE) -> Path:
    """Copy the package into state_dir/code/<hash>/hpc_instruct (once; again if it was changed) and return the
    folder for PYTHONPATH."""
    digest = code_hash(package)
    target = state_dir / "code" / digest
    if not is_intact(target):
        with atomic_dir(target) as tmp:
            shutil.copytree(package, tmp / "hpc_instruct", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))
    return target


def verify_command(snapshot_dir: Path, python: str = sys.executable) -> str:
    """A shell command that fails, saying why, unless `snapshot_dir` is intact. It runs `python -I` (no
    PYTHONPATH, no working directory or user site on sys.path), so nothing in the study can change the check."""
    code = (inspect.getsource(_digest)
            + "import sys\nd = sys.argv[1]\n"
            + "import os\nok = os.path.isdir(d) and os.listdir(d) == ['hpc_instruct'] and not os.path.islink(d + '/hpc_instruct')\n"
            + "ok = ok and _digest(d + '/hpc_instruct', True) == os.path.basename(d.rstrip('/'))\n"
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
