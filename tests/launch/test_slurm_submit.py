"""`hpci submit` against the real local Slurm cluster: golden sbatch files with a hostile study path, arrays
with dependencies, nothing submitted twice, drift, cancel. (Whole-study, failure/resubmit and preemption tests:
test_slurm_study.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from slurm_helpers import DEMO, SMALL, normalise_sbatch

from hpc_instruct.launch.slurm import SubmitOptions, cancel_study, submit_study
from hpc_instruct.launch.state import submissions
from hpc_instruct.launch.study_files import write_study
from hpc_instruct.recipe.study import load_study
from hpc_instruct.study_dir import StudyDir

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
GOLDEN = Path(__file__).parent / "golden"
HOSTILE = "it's a \"study\"; echo pwned"


def submit(root: Path, *extra: str):
    study = load_study(DEMO, (f"study.output_root={root}", *SMALL, *extra))
    ex = study.expand()
    write_study(study, ex)
    return study, ex, submit_study(study, ex, SubmitOptions(slots_per_trial=2))


def test_golden_sbatch_with_hostile_path_and_no_double_submit(slurm_cluster, tmp_path):
    root = tmp_path / HOSTILE
    study, ex, report = submit(root)
    try:
        stages = [s.stage for s in report.submissions]
        assert stages == ["prepare", "train", "eval", "eval", "eval", "aggregate"]  # O(stages), not O(tasks)
        train = report.submissions[1]
        assert len(train.elements) == len(ex.trials) and train.depends_on.startswith("afterany:")
        assert all(s.depends_on.startswith("aftercorr:") for s in report.submissions[2:4])
        for sub in report.submissions:
            script = Path(sub.log_dir) / f"{sub.job_id}_submission.sh"
            text = normalise_sbatch(script.read_text(), root)
            golden = GOLDEN / f"{sub.stage}-{report.submissions.index(sub)}.sbatch"
            if os.environ.get("HPCI_UPDATE_GOLDEN"):
                golden.write_text(text)
            assert text == golden.read_text(), f"{script} differs from {golden} (HPCI_UPDATE_GOLDEN=1 to accept)"
        # The same recipe again: everything is pending, running or done, so nothing is submitted.
        again = submit_study(study, ex, SubmitOptions(slots_per_trial=2))
        assert again.sbatch_calls == 0, again
        assert len(submissions(StudyDir(study.directory))) == len(report.submissions)
    finally:
        cancel_study(study.directory)


def test_recipe_change_submits_only_affected_work(slurm_cluster, tmp_path):
    study, ex, first = submit(tmp_path)
    try:
        changed = load_study(DEMO, (f"study.output_root={tmp_path}", *SMALL, "sweep.curated.samples_per_ability=[4,8]"))
        ex2 = changed.expand()
        drift = write_study(changed, ex2)
        assert (drift.new_trials, drift.kept_trials, drift.dropped_trials) == (1, 2, 1)
        report = submit_study(changed, ex2, SubmitOptions(slots_per_trial=2))
        train = [s for s in report.submissions if s.stage == "train"]
        assert len(train) == 1 and len(train[0].elements) == 1  # only the new trial
    finally:
        cancel_study(study.directory)  # clean-up, whatever is still queued
