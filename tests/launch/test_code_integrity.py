"""Study folders are data, never code: a tampered code snapshot is rebuilt (at submit) or refused (in the job), and
a `hpc_instruct/` folder planted in the study directory never shadows the code a job runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpc_instruct.launch.local import _command
from hpc_instruct.launch.snapshot import is_intact, job_setup, snapshot
from hpc_instruct.launch.tasks import Task
from hpc_instruct.provenance import package_hash
from hpc_instruct.study_dir import StudyDir

PAYLOAD = "import pathlib; pathlib.Path({flag!r}).write_text('ran')\n"


@pytest.fixture
def package(tmp_path) -> Path:
    pkg = tmp_path / "checkout" / "hpc_instruct"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("MARK = 'submitted'\n")
    (pkg / "sub").mkdir()
    (pkg / "sub" / "__init__.py").write_text("")
    return pkg


def _tamper_init(snap: Path, flag: Path) -> None:
    with open(snap / "hpc_instruct" / "__init__.py", "a") as fh:
        fh.write(PAYLOAD.format(flag=str(flag)))


@pytest.mark.parametrize("how", ["appended-payload", "planted-pyc", "planted-sibling-package", "symlinked-file"])
def test_a_tampered_snapshot_is_rebuilt_before_it_is_used(tmp_path, package, how):
    state = tmp_path / "study" / "state"
    snap = snapshot(state, package)
    assert is_intact(snap)
    if how == "appended-payload":
        _tamper_init(snap, tmp_path / "flag")
    elif how == "planted-pyc":
        cache = snap / "hpc_instruct" / "__pycache__"
        cache.mkdir()
        (cache / f"__init__.cpython-{sys.version_info[0]}{sys.version_info[1]}.pyc").write_bytes(b"not yours")
    elif how == "planted-sibling-package":
        (snap / "torch").mkdir()
        (snap / "torch" / "__init__.py").write_text(PAYLOAD.format(flag=str(tmp_path / "flag")))
    else:
        target = tmp_path / "elsewhere.py"
        target.write_text("")
        (snap / "hpc_instruct" / "sub" / "__init__.py").unlink()
        (snap / "hpc_instruct" / "sub" / "__init__.py").symlink_to(target)  # same content today, theirs tomorrow
    assert not is_intact(snap)
    assert snapshot(state, package) == snap  # same name: the code it holds is what the name says
    assert is_intact(snap)
    assert (snap / "hpc_instruct" / "__init__.py").read_text() == "MARK = 'submitted'\n"
    assert sorted(p.name for p in snap.iterdir()) == ["hpc_instruct"]
    assert not (snap / "hpc_instruct" / "__pycache__").exists()


def _job(snap: Path, cwd: Path, python_line: str) -> subprocess.CompletedProcess:
    """What a Slurm job runs: the setup lines, then Python (as submitit's `python -u -m submitit.core._submit`)."""
    script = "\n".join([*job_setup(snap), python_line]) + "\n"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_every_job_verifies_the_snapshot_before_importing_from_it(tmp_path, package):
    snap = snapshot(tmp_path / "study" / "state", package)
    show = f"{sys.executable} -c 'import hpc_instruct; print(hpc_instruct.MARK)'"
    ok = _job(snap, tmp_path / "study", show)
    assert ok.returncode == 0 and ok.stdout.strip() == "submitted", ok.stderr
    flag = tmp_path / "flag"
    _tamper_init(snap, flag)  # a colleague edits the snapshot after submission; the job then requeues
    bad = _job(snap, tmp_path / "study", show)
    assert bad.returncode == 1 and not flag.exists() and "submitted" not in bad.stdout
    assert "does not match its hash" in bad.stderr and "hpci resubmit" in bad.stderr
    assert str(snap) in bad.stderr


def test_the_job_check_is_the_same_hash_as_the_snapshot_name(tmp_path):
    snap = snapshot(tmp_path / "state")  # the real package
    assert snap.name == package_hash()
    assert _job(snap, tmp_path, "true").returncode == 0


def test_a_shadowing_folder_in_the_study_does_not_run_in_a_slurm_job(tmp_path, package):
    study = tmp_path / "study"
    flag = tmp_path / "flag"
    shadow = study / "hpc_instruct"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(PAYLOAD.format(flag=str(flag)) + "MARK = 'shadow'\n")
    (shadow / "probe.py").write_text("import hpc_instruct; print(hpc_instruct.MARK)\n")
    (package / "probe.py").write_text("import hpc_instruct; print(hpc_instruct.MARK)\n")
    snap = snapshot(study / "state", package)
    done = _job(snap, study, f"{sys.executable} -u -m hpc_instruct.probe")  # `-m` with the study as cwd
    assert done.stdout.strip() == "submitted", done.stderr
    assert not flag.exists()


def test_a_shadowing_folder_in_the_working_directory_does_not_run_in_a_local_task(tmp_path):
    study = tmp_path / "study"
    flag = tmp_path / "flag"
    (study / "hpc_instruct").mkdir(parents=True)
    (study / "hpc_instruct" / "__init__.py").write_text(PAYLOAD.format(flag=str(flag)))
    task = Task("aggregate", "no-such-task", "cpu", "results/scores.parquet")
    # `hpci run` started from inside the study folder: the local executor's command for a task.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run(_command(StudyDir(study), [task], 1), cwd=study, env=env, capture_output=True, timeout=120)
    assert not flag.exists()
    cmd = _command(StudyDir(study), [task], 2)  # torchrun's ranks: PYTHONSAFEPATH comes from the pool's env
    assert cmd[:2] == [sys.executable, "-P"]
