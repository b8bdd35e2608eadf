"""Code snapshot at submit time: running and requeued jobs execute the code that was submitted, not whatever
the checkout holds days later.

The `hpc_instruct` package is copied to `<study>/state/code/<hash>/` (content-addressed, so an unchanged
checkout reuses the same snapshot) and jobs put that folder first on PYTHONPATH. Directories on PYTHONPATH are
searched before the editable install's finder, so the snapshot wins.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hpc_instruct.atomic import atomic_dir
from hpc_instruct.provenance import PACKAGE, package_hash


def snapshot(code_snapshots: Path, package: Path = PACKAGE) -> Path:
    """Copy the package into <code_snapshots>/<hash>/hpc_instruct (once) and return the folder for PYTHONPATH."""
    digest = package_hash(package)
    target = code_snapshots / digest
    if not (target / "hpc_instruct" / "__init__.py").is_file():
        with atomic_dir(target) as tmp:
            shutil.copytree(package, tmp / "hpc_instruct", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target
