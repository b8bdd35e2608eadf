"""Aggregate and report on a partial study (one trial failed, or its eval folder was removed) say what is missing
instead of crashing (it used to end in `ValueError: Number of columns must be a positive integer, not 0`)."""

from __future__ import annotations

import shutil

from analyze_studies import SELECTION, make_study

from hpc_instruct.analyze.aggregate import aggregate_study
from hpc_instruct.analyze.report import write_report
from hpc_instruct.study_dir import StudyDir

# One model, two data sizes, one seed, test on the last checkpoint: losing one trial leaves a single point per
# ability, so no slope can be fitted.
SMALL = (
    SELECTION.replace("models: [tiny, mini]", "models: [tiny]")
    .replace("checkpoints: all, test_on: selected", "checkpoints: last, test_on: all")
    .replace("splits: [valid, test]", "splits: [test]")
)


def test_report_on_a_study_with_one_trial_missing(tmp_path):
    study = make_study(tmp_path, SMALL, items=100)
    trial = next(t for t in study.plan.trials if t.source != "base")
    shutil.rmtree(StudyDir(study.directory).eval_root / trial.id)  # its train task failed, or someone removed it
    result = aggregate_study(study.directory)
    assert {p.kind for p in result.completeness.problems} == {"missing"}
    assert all(p.path.startswith(f"eval/{trial.id}/") for p in result.completeness.problems)
    html = write_report(study.directory).read_text()
    md = (study.directory / "results" / "report.md").read_text()
    for text in (html, md):
        assert f"eval/{trial.id}/" in text and "missing" in text  # the report names what is missing
