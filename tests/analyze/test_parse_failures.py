"""Parse-failure rates per ability: generated replies with no parsed answer, at the reported checkpoints."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from hpc_instruct.analyze.aggregate import aggregate_study
from hpc_instruct.analyze.parse_failures import parse_failures
from hpc_instruct.atomic import file_sha256, read_marker, write_marker
from hpc_instruct.study_dir import StudyDir


def test_rates_count_empty_parses_of_generated_items_only(selection_copy):
    study = selection_copy
    sdir = StudyDir(study.directory)
    clean = parse_failures(aggregate_study(study.directory, write=False))
    assert not clean.empty and (clean["no_answer"] == 0).all()  # the simulator always parses an answer
    assert set(clean["kind"]) == {"trained", "base"}
    # blank the parsed answer of every item of one reported test shard (a base model's math set)
    (task,) = [t for t in study.plan.shards if t.owner.startswith("b") and t.ability == "math" and t.split == "test"
               and t.shard == 0 and study.plan.trial(t.owner).model == "mini"]
    path = sdir.eval_shard(task)
    table = pq.read_table(path)
    generated = int(pa.compute.sum(pa.compute.equal(table["question_format"], 0)).as_py())
    table = table.set_column(table.schema.get_field_index("parsed"), "parsed",
                             pa.array([""] * table.num_rows, pa.string()))
    pq.write_table(table, path)
    marker = read_marker(path)  # a rewritten shard is trusted only with its new sha256 in the marker
    write_marker(path, marker.pop("id"), **{**marker, "sha256": file_sha256(path)})
    rates = parse_failures(aggregate_study(study.directory, write=False)).set_index(["ability", "model", "kind"])
    row = rates.loc[("math", "mini", "base")]
    assert row["no_answer"] == generated > 0 and row["rate"] == 100.0 * generated / row["generated"]
    assert (rates.drop(index=("math", "mini", "base"))["no_answer"] == 0).all()
