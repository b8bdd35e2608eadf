"""Code snapshot at submit time: running and requeued jobs execute the code that was submitted, not whatever
the checkout holds days later.

The `hpc_instruct` package is copied to `<study>/state/code/<hash>/` (content-addressed, so an unchanged
checkout reuses the same snapshot) and jobs put that folder first on PYTHONPATH. Directories on PYTHONPATH are
searched before the editable install's finder, so the snapshot wins.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import hpc_instruct
from hpc_instruct.atomic import atomic_dir

PACKAGE = Path(hpc_instruct.__file__).resolve().parent


def _files(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix not in (".pyc", ".pyo"))


def code_hash(package: Path = PACKAGE) -> str:
    h = hashlib.sha256()
    for p in _files(package):
        h.update(str(p.relative_to(package)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def snapshot(state_dir: Path, package: Path = PACKAGE) -> Path:
    """Copy the package into state_dir/code/<hash>/hpc_instruct (once) and return the folder for PYTHONPATH."""
    digest = code_hash(package)
    target = state_dir / "code" / digest
    if not (target / "hpc_instruct" / "__init__.py").is_file():
        with atomic_dir(target) as tmp:
            shutil.copytree(package, tmp / "hpc_instruct", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target
