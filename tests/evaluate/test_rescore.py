"""Rescoring from stored predictions: a no-op with unchanged scorers, row updates when a rule or mode changes,
no torch import, unfinished shards left alone."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from hpc_instruct.atomic import read_marker
from hpc_instruct.evaluate import results
from hpc_instruct.evaluate.rescore import rescore_study
from hpc_instruct.evaluate.results import score_evidence, shard_files

pytestmark = pytest.mark.slow


def digests(study_dir):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in shard_files(study_dir / "eval")}


def test_unchanged_scorers_change_nothing(study_copy):
    before = digests(study_copy)
    report = rescore_study(study_copy)
    assert report.shards == len(before) and report.rewritten == 0 and report.changed_rows == 0
    assert digests(study_copy) == before


def test_a_mode_change_updates_rows_and_keeps_the_shards_trusted(study_copy):
    report = rescore_study(study_copy, mode="corrected")
    assert report.rewritten == report.shards > 0
    for path in shard_files(study_copy / "eval"):
        table = pq.read_table(path)
        assert set(table["scorer_version"].to_pylist()) == {results.scorer_version("corrected")}
        marker = read_marker(path)
        assert marker["id"] == table["eval_task_id"][0].as_py()  # still the same EvalTask: still trusted
        assert marker["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    back = rescore_study(study_copy, mode="doit")
    assert back.rewritten == back.shards and back.changed_rows == report.changed_rows


def test_a_rule_change_is_applied_from_stored_evidence(study_copy, monkeypatch):
    real = results.score_or_error

    def generous_math(fmt, response, reference, **kw):  # a new rule: every math reply is right
        s = real(fmt, response, reference, **kw)
        return s.__class__(s.format, s.parsed, True, s.chance, "new_rule", s.mode) if fmt == "math" else s

    monkeypatch.setattr(results, "score_or_error", generous_math)
    monkeypatch.setattr(results, "SCORER_VERSION", "doit-scoring-test")
    report = rescore_study(study_copy)
    assert report.changed_rows > 0 and report.rewritten == report.shards
    for path in shard_files(study_copy / "eval"):
        table = pq.read_table(path).to_pandas()
        assert set(table["scorer_version"]) == {"doit-scoring-test+doit"}
        math_rows = table[table["format"] == "math"]
        assert math_rows["correct"].all() and (math_rows["parse_mode"] == "new_rule").all()
        other = table[table["format"] != "math"]
        assert (other["parse_mode"] != "new_rule").all()


def test_rows_rescore_to_what_the_eval_task_wrote(evaluated_study):
    for path in shard_files(evaluated_study.directory / "eval")[:20]:
        for row in pq.read_table(path).to_pylist():
            s = score_evidence(
                row["format"],
                row["response"],
                row["reference"],
                letter_logprobs=row["letter_logprobs"],
                candidate_ppl=row["candidate_ppl"],
            )
            assert (s.parsed, s.correct, s.chance, s.method) == (
                row["parsed"],
                row["correct"],
                row["chance"],
                row["parse_mode"],
            )


def test_unfinished_shards_are_skipped(study_copy):
    path = shard_files(study_copy / "eval")[0]
    (path.parent / (path.name + ".done")).unlink()
    report = rescore_study(study_copy, mode="corrected")
    assert report.skipped == (str(path.relative_to(study_copy)),)
    assert set(pq.read_table(path)["scorer_version"].to_pylist()) == {results.scorer_version("doit")}


def test_rescoring_imports_no_torch(study_copy):
    code = (
        "import sys; from hpc_instruct.evaluate.rescore import rescore_study; "
        f"r = rescore_study({str(study_copy)!r}); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'; print(r.shards)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip()) > 0
