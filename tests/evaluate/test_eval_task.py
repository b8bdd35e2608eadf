"""The eval stage end to end on a tiny random-init Llama with the study tokenizer and a generated demo study:
every planned shard is one Parquet file with exactly RESULT_SCHEMA, readable by pandas, polars and DuckDB;
rows carry the checkpoint choice and provenance; re-runs redo only what is missing.

Covers: hpc_instruct.stages.eval, hpc_instruct.stages.context, hpc_instruct.evaluate.answering,
hpc_instruct.evaluate.checkpoints, hpc_instruct.evaluate.selection, hpc_instruct.evaluate.results."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

import hpc_instruct
from hpc_instruct.atomic import is_done, marker_path, read_marker
from hpc_instruct.evaluate.result_schema import COLUMNS, RESULT_SCHEMA
from hpc_instruct.evaluate.results import scorer_version
from hpc_instruct.evaluate.selection import SELECTION_RULE
from hpc_instruct.launch.entry import run_tasks
from hpc_instruct.study_dir import StudyDir

pytestmark = pytest.mark.slow


def planned(study):
    ex = study.expand()
    sdir = StudyDir(study.directory)
    return ex, [
        (e, sdir.eval_part(e.trial, e.checkpoint, e.ability, e.split, e.shard, e.shards))
        for e in ex.eval_tasks
    ]


def test_every_shard_is_one_file_with_the_exact_schema(evaluated_study):
    _, shards = planned(evaluated_study)
    assert len(shards) > 40
    for task, path in shards:
        assert is_done(path, task.id), path
        assert pq.read_schema(path).equals(RESULT_SCHEMA), path  # names, order and types
        table = pq.read_table(path)
        assert table.num_rows == task.stop - task.start
        assert sorted(table["item_index"].to_pylist()) == list(range(task.start, task.stop))
        assert set(table["eval_task_id"].to_pylist()) == {task.id}
        assert read_marker(path)["rows"] == table.num_rows
    leftovers = [p for p in (evaluated_study.directory / "eval").rglob("*") if p.name.startswith(".")]
    assert not leftovers


def test_pandas_polars_and_duckdb_read_the_shards(evaluated_study):
    import duckdb
    import pandas as pd
    import polars as pl

    _, shards = planned(evaluated_study)
    paths = [str(p) for _, p in shards]
    total = sum(t.stop - t.start for t, _ in shards)
    frame = pd.concat([pd.read_parquet(p) for p in paths])
    assert list(frame.columns) == list(COLUMNS) and len(frame) == total
    lazy = pl.scan_parquet(paths)
    assert lazy.collect_schema().names() == list(COLUMNS)
    assert lazy.select(pl.len()).collect().item() == total
    assert (
        lazy.filter(pl.col("format") == "rank3")
        .select(pl.col("candidate_ppl").list.len().min())
        .collect()
        .item()
        == 3
    )
    glob = str(evaluated_study.directory / "eval" / "**" / "*.parquet")
    con = duckdb.connect()
    assert con.execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()[0] == total
    accuracy = con.execute(
        f"SELECT split, avg(correct::INT) FROM read_parquet('{glob}') GROUP BY split"
    ).fetchall()
    assert {s for s, _ in accuracy} == {"valid", "test"}


def test_rows_record_formats_evidence_and_provenance(evaluated_study):
    import pandas as pd

    _, shards = planned(evaluated_study)
    rows = pd.concat([pd.read_parquet(p) for _, p in shards])
    rank = rows[rows["format"] == "rank3"]
    assert rank["candidate_ppl"].map(len).eq(3).all() and rank["letter_logprobs"].isna().all()
    assert (rank["parse_mode"] == "min_equals_first").all() and (rank["response_tokens"] == 0).all()  # doit: the official rule
    mc = rows[rows["format"] == "mc"]
    assert set(mc["letter_logprobs"].map(len)) == {3, 4} and set(mc["parse_mode"]) <= {"one_char", "logits"}
    assert (rows.loc[rows["format"] == "math", "chance"] == 0).all()
    ms = rows[rows["format"] == "multi_select"]
    assert (ms["letter_logprobs"].map(len) == 4).all()
    for column in ("data_fingerprint", "template_hash", "tokenizer_hash", "code_version", "library_versions"):
        assert rows[column].str.len().min() > 8, column
    assert rows["code_version"].str.startswith(hpc_instruct.__version__).all()
    assert "torch" in json.loads(rows["library_versions"].iloc[0])
    assert set(rows["scorer_version"]) == {scorer_version("doit")}
    assert (rows["prompt_tokens"] > 0).all() and (rows["latency_s"] >= 0).all()
    base = rows[rows["checkpoint"] == "base"]
    assert set(base["source"]) == {"base"} and set(base["epoch"]) == {0} and set(base["seed"]) == {-1}
    assert set(base["label"]) == {"base/tiny"}
    assert rows["num_parameters"].nunique() == 1  # the same architecture before and after training


def test_selected_shards_record_the_epoch_chosen_on_valid(evaluated_study):
    import pandas as pd

    ex, shards = planned(evaluated_study)
    trial = ex.trials[0]
    rows = pd.concat([pd.read_parquet(p) for t, p in shards if t.trial == trial.id])
    valid = rows[rows["split"] == "valid"]
    per_epoch = valid.groupby(["epoch", "ability"])["correct"].mean().groupby("epoch").mean()
    best = max(per_epoch.items(), key=lambda kv: (round(kv[1], 9), kv[0]))[0]
    test = rows[rows["split"] == "test"]
    assert set(test["checkpoint"]) == {f"epoch-{best:03d}"} and set(test["epoch"]) == {best}
    assert set(test["selection_rule"]) == {SELECTION_RULE}
    assert set(test["step"]) == {best * trial.steps_per_epoch}
    assert set(valid["selection_rule"]) == {""}
    selected_paths = [p for t, p in shards if t.checkpoint == "selected"]
    assert selected_paths and all("/selected/" in str(p) for p in selected_paths)


def test_aggregation_trusts_every_shard(evaluated_study):
    aggregate = pytest.importorskip("hpc_instruct.analyze.aggregate")
    from hpc_instruct.analyze.expected import plan_from_expansion

    plan = plan_from_expansion(
        evaluated_study.expand(), evaluated_study.recipe.study.name, evaluated_study.facts.fingerprint
    )
    result = aggregate.aggregate_study(evaluated_study.directory, plan=plan, write=False, n_boot=20)
    assert result.completeness.ok, result.completeness.summary()
    assert result.selection["agrees"].all()


def test_rerun_redoes_only_missing_or_stale_shards(evaluated_study, study_copy):
    ex, shards = planned(evaluated_study)
    sdir = StudyDir(study_copy)
    moved = [(t, sdir.root / p.relative_to(evaluated_study.directory)) for t, p in shards]
    (gone_task, gone), (stale_task, stale) = moved[3], moved[-1]
    gone.unlink()
    marker_path(stale).write_text(json.dumps({"id": "e-older-recipe"}))
    before = {p: p.stat().st_mtime_ns for _, p in moved if p.exists()}
    ran = run_tasks(str(study_copy), "eval", [t.id for t, _ in moved])
    assert sorted(ran) == sorted([gone_task.id, stale_task.id])
    assert is_done(gone, gone_task.id) and is_done(stale, stale_task.id)
    assert all(p.stat().st_mtime_ns == m for p, m in before.items() if p not in (gone, stale))
    assert run_tasks(str(study_copy), "eval", [t.id for t, _ in moved]) == []


def test_the_entry_point_runs_one_shard(evaluated_study, study_copy):
    _, shards = planned(evaluated_study)
    task, path = next((t, p) for t, p in shards if t.ability == "ceval_physician" and t.checkpoint == "base")
    target = study_copy / path.relative_to(evaluated_study.directory)
    target.unlink()
    env = {**os.environ, "HPCI_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "hpc_instruct.launch.entry", "eval", str(study_copy), task.id],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert is_done(target, task.id)
    again, first = pq.read_table(target), pq.read_table(path)
    for column in ("item_id", "response", "parsed", "correct", "letter_logprobs", "checkpoint"):
        assert again[column].equals(first[column]), column  # deterministic: the same rows again


def test_selection_prefers_the_later_epoch_on_ties_and_waits_for_complete_results(
    evaluated_study, study_copy
):
    import pyarrow as pa

    from hpc_instruct.atomic import read_marker, write_marker
    from hpc_instruct.evaluate.checkpoints import CheckpointUnavailable, select_epoch
    from hpc_instruct.evaluate.results import write_shard

    ex, shards = planned(evaluated_study)
    trial = ex.trials[0]
    sdir = StudyDir(study_copy)
    valid = [
        (t, study_copy / p.relative_to(evaluated_study.directory))
        for t, p in shards
        if t.trial == trial.id and t.split == "valid"
    ]
    for _, path in valid:  # every valid item right in every epoch: a tie
        table = pq.read_table(path)
        digest = write_shard(
            table.set_column(
                table.schema.get_field_index("correct"), "correct", pa.array([True] * table.num_rows)
            ),
            path,
        )
        marker = read_marker(path)  # a rewritten shard is trusted only with its new sha256 in the marker
        write_marker(path, marker.pop("id"), **{**marker, "sha256": digest})
    abilities = tuple(evaluated_study.recipe.data.abilities)
    epoch, scores = select_epoch(sdir, ex, trial, abilities)
    assert epoch == max(trial.checkpoints) and {s.mean_accuracy for s in scores} == {1.0}
    last = next(path for t, path in valid if t.checkpoint == f"epoch-{max(trial.checkpoints):03d}")
    last.unlink()
    with pytest.raises(CheckpointUnavailable, match="valid results incomplete"):
        select_epoch(sdir, ex, trial, abilities)
    assert select_epoch(sdir, ex, trial, abilities, partial=True)[0] == min(trial.checkpoints)
