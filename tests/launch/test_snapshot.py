"""Code snapshot at submit time (hpc_instruct/launch/snapshot.py): content-addressed, and what jobs import."""

from __future__ import annotations

import os
import subprocess
import sys

from hpc_instruct.launch.snapshot import snapshot
from hpc_instruct.provenance import package_hash


def test_snapshot_is_content_addressed_and_wins_on_pythonpath(tmp_path):
    pkg = tmp_path / "src" / "hpc_instruct"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("MARK = 'snapshot-one'\n__version__ = '0'\n")
    first = snapshot(tmp_path / "state", pkg)
    assert snapshot(tmp_path / "state", pkg) == first  # unchanged code: same snapshot
    (pkg / "__init__.py").write_text("MARK = 'snapshot-two'\n__version__ = '0'\n")  # the checkout moves on
    assert package_hash(pkg) != first.name
    env = {**os.environ, "PYTHONPATH": str(first)}
    # Jobs start in the study directory (sbatch --chdir), so the checkout is not on sys.path via the cwd.
    out = subprocess.run([sys.executable, "-c", "import hpc_instruct; print(hpc_instruct.MARK)"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "snapshot-one"  # the job runs the submitted code, not the editable install


def test_real_package_snapshot(tmp_path):
    target = snapshot(tmp_path)
    assert (target / "hpc_instruct" / "cli.py").is_file()
    assert not list(target.rglob("__pycache__"))
