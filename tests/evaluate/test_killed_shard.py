"""A shard killed while writing leaves nothing that aggregation reads; the next run redoes it."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from hpc_instruct.atomic import is_done, marker_path
from hpc_instruct.evaluate import results
from hpc_instruct.evaluate.results import shard_files
from hpc_instruct.launch.entry import run_tasks
from hpc_instruct.study_dir import StudyDir

pytestmark = pytest.mark.slow


def first_shard(study, study_dir):
    task = next(e for e in study.expand().eval_tasks if e.checkpoint == "base" and e.ability == "code")
    return task, StudyDir(study_dir).eval_part(
        task.trial, task.checkpoint, task.ability, task.split, task.shard, task.shards
    )


def trusted_by_aggregation(study, study_dir) -> tuple[set[str], list]:
    shards = pytest.importorskip("hpc_instruct.analyze.shards")
    from hpc_instruct.analyze.expected import plan_from_expansion

    plan = plan_from_expansion(study.expand(), study.recipe.study.name, study.facts.fingerprint)
    trusted, problems = shards.find_trusted(study_dir, plan)
    return {plan.shards[i].id for i in trusted}, problems


def test_an_exception_mid_write_leaves_no_file_and_no_marker(evaluated_study, study_copy, monkeypatch):
    task, path = first_shard(evaluated_study, study_copy)
    path.unlink()
    marker_path(path).unlink()
    real_write = pq.write_table

    def dies_half_way(table, where, **kw):
        real_write(table, where, **kw)
        with open(where, "r+b") as fh:  # a torn file: half of it on disk when the process dies
            fh.truncate(max(1, fh.seek(0, 2) // 2))
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(results.pq, "write_table", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        run_tasks(str(study_copy), "eval", [task.id])
    assert not path.exists() and not marker_path(path).exists()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # the temporary file is gone too
    trusted, problems = trusted_by_aggregation(evaluated_study, study_copy)
    assert task.id not in trusted and any(p.kind == "missing" and p.task_id == task.id for p in problems)

    monkeypatch.setattr(results.pq, "write_table", real_write)
    assert run_tasks(str(study_copy), "eval", [task.id]) == [task.id]
    assert is_done(path, task.id)


def test_a_sigkilled_writer_leaves_only_an_ignored_dot_file(evaluated_study, study_copy):
    """SIGKILL skips clean-up: the temporary dot-file stays, but no reader looks at it and no marker exists."""
    task, path = first_shard(evaluated_study, study_copy)
    data = path.read_bytes()
    path.unlink()
    marker_path(path).unlink()
    leftover = path.parent / f".{path.name}.abc123.tmp"
    leftover.write_bytes(data[: len(data) // 2])
    assert path not in shard_files(study_copy / "eval") and leftover not in shard_files(study_copy / "eval")
    trusted, problems = trusted_by_aggregation(evaluated_study, study_copy)
    assert task.id not in trusted and not any(p.kind == "unexpected_file" for p in problems)
    assert run_tasks(str(study_copy), "eval", [task.id]) == [task.id]
    assert is_done(path, task.id) and pq.read_table(path).num_rows == task.stop - task.start
