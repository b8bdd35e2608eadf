"""Aggregation on simulated studies: completeness is reported (never averaged over), the overall mean is the true
mean, intervals are seeded, engines agree, and checkpoint selection finds the planted best epoch.

Covers: hpc_instruct.analyze.aggregate, hpc_instruct.analyze.bootstrap, hpc_instruct.analyze.overall,
hpc_instruct.analyze.result_rows, hpc_instruct.analyze.shards, hpc_instruct.analyze.selection,
hpc_instruct.analyze.expected."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import simulated_study as simulate
from analyze_studies import SELECTION, make_study

from hpc_instruct.analyze.aggregate import IncompleteStudyError, aggregate_study
from hpc_instruct.analyze.expected import load_plan
from hpc_instruct.analyze.selection import OVERALL, SELECTION_RULE, select_checkpoints
from hpc_instruct.atomic import file_sha256, is_done, marker_path, read_marker, write_marker
from hpc_instruct.evaluate.result_schema import RESULT_SCHEMA
from hpc_instruct.study_dir import StudyDir


def _shard(study, *, split="valid", checkpoint=None, index=0):
    """A planned shard of the first trained trial (and its path)."""
    trial = next(t for t in study.plan.trials if t.source != "base")
    shards = [
        p
        for p in study.plan.shards
        if p.owner == trial.id and p.split == split and (checkpoint is None or p.checkpoint == checkpoint)
    ]
    shard = shards[index]
    return trial, shard, StudyDir(study.directory).eval_shard(shard)


def test_simulated_shards_follow_the_contract(selection_study):
    sdir = StudyDir(selection_study.directory)
    for shard in selection_study.plan.shards[:20]:
        path = sdir.eval_shard(shard)
        assert is_done(path, shard.id)
        table = pq.read_table(path)
        assert table.schema.equals(RESULT_SCHEMA)
        assert table.num_rows == shard.stop - shard.start
        assert pc.all(pc.equal(table["eval_task_id"], shard.id)).as_py()


def test_complete_study_has_no_problems_and_writes_atomically(selection_study):
    result = aggregate_study(selection_study.directory)
    assert result.completeness.ok, result.completeness.summary()
    assert result.completeness.trusted_shards == len(selection_study.plan.shards)
    assert result.scores["complete"].all()
    path = StudyDir(selection_study.directory).results / "scores.parquet"
    assert result.path == path and read_marker(path)["id"] == result.inputs_id
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary files left
    saved = pd.read_parquet(path)
    assert len(saved) == len(result.scores)
    row = saved.iloc[0]
    assert 0 <= row["accuracy"] <= 100 and row["accuracy_lo"] <= row["accuracy"] <= row["accuracy_hi"]
    assert json.loads((path.parent / "completeness.json").read_text())["problems"] == []


def test_overall_is_the_true_mean_not_half_of_it(selection_study):
    result = aggregate_study(selection_study.directory, write=False)
    plan = load_plan(selection_study.directory)
    trial, _, _ = _shard(selection_study)
    # Recompute from the raw rows with pyarrow, independently of the aggregation code.
    sdir = StudyDir(selection_study.directory)
    paths = [
        sdir.eval_shard(p)
        for p in plan.shards
        if p.owner == trial.id and p.split == "valid" and p.checkpoint == "epoch-002"
    ]
    rows = pa.concat_tables(
        [pq.read_table(p, columns=["ability", "correct", "chance"]) for p in paths]
    ).to_pandas()
    per_ability = rows.groupby("ability")["correct"].mean() * 100
    chance = rows.groupby("ability")["chance"].mean() * 100
    s = result.scores.set_index(["trial_id", "planned_checkpoint", "split", "ability"])
    overall = s.loc[(trial.id, "epoch-002", "valid", OVERALL)]
    assert overall["accuracy"] == pytest.approx(per_ability.mean())
    assert overall["accuracy"] == pytest.approx(
        np.mean([s.loc[(trial.id, "epoch-002", "valid", a), "accuracy"] for a in plan.abilities])
    )
    assert overall["chance"] == pytest.approx(chance.mean())
    norm = ((per_ability - chance) / (100 - chance)).mean()
    assert overall["normalized"] == pytest.approx(norm)
    assert overall["accuracy_lo"] < overall["accuracy"] < overall["accuracy_hi"]


def test_intervals_are_seeded_and_sized_like_the_binomial(selection_study):
    a = aggregate_study(selection_study.directory, write=False, seed=7)
    b = aggregate_study(selection_study.directory, write=False, seed=7)
    c = aggregate_study(selection_study.directory, write=False, seed=8)
    cols = ["accuracy_lo", "accuracy_hi"]
    pd.testing.assert_frame_equal(a.scores[cols], b.scores[cols])
    assert not a.scores[cols].equals(c.scores[cols])
    one = a.scores[(a.scores["ability"] == "biology")].iloc[0]
    p, n = one["accuracy"] / 100, one["items"]
    binomial = 2 * 1.96 * np.sqrt(p * (1 - p) / n) * 100
    assert (one["accuracy_hi"] - one["accuracy_lo"]) == pytest.approx(binomial, rel=0.25)


def test_engines_agree(selection_study):
    pytest.importorskip("duckdb")
    duck = aggregate_study(selection_study.directory, write=False, engine="duckdb")
    arrow = aggregate_study(selection_study.directory, write=False, engine="pyarrow")
    pd.testing.assert_frame_equal(duck.scores, arrow.scores)
    assert duck.provenance == arrow.provenance


def _rewrite(path, table) -> None:
    """Replace a shard as a (faulty) writer would: new rows, and a marker whose sha256 matches them."""
    pq.write_table(table, path)
    marker = read_marker(path)
    write_marker(path, marker.pop("id"), **{**marker, "sha256": file_sha256(path)})


def test_missing_shard_is_reported_and_not_averaged(selection_copy):
    trial, shard, path = _shard(selection_copy, checkpoint="epoch-002")
    path.unlink()
    marker_path(path).unlink()
    result = aggregate_study(selection_copy.directory)
    kinds = result.completeness.counts()
    assert kinds == {"missing": 1}
    (problem,) = result.completeness.problems
    assert problem.task_id == shard.id
    s = result.scores.set_index(["trial_id", "planned_checkpoint", "split", "ability"])
    group = s.loc[(trial.id, "epoch-002", "valid", shard.ability)]
    assert not group["complete"] and group["items"] == group["items_expected"] - (shard.stop - shard.start)
    overall = s.loc[(trial.id, "epoch-002", "valid", OVERALL)]
    assert not overall["complete"] and np.isnan(overall["accuracy"])  # no mean over what is left
    assert (
        "epoch-002" not in set(result.reported()["checkpoint"][result.reported()["trial_id"] == trial.id])
        or result.selection.set_index("trial_id").loc[trial.id, "chosen_checkpoint"] != "epoch-002"
    )
    with pytest.raises(IncompleteStudyError, match="missing"):
        aggregate_study(selection_copy.directory, strict=True)


def test_stale_and_absent_markers_are_not_trusted(selection_copy):
    _, stale, stale_path = _shard(selection_copy, index=0)
    _, absent, absent_path = _shard(selection_copy, index=1)
    write_marker(stale_path, "e-from-an-older-recipe")
    marker_path(absent_path).unlink()
    result = aggregate_study(selection_copy.directory, write=False)
    by_kind = {p.kind: p for p in result.completeness.problems}
    assert set(by_kind) == {"stale_marker", "no_marker"}
    assert (
        by_kind["stale_marker"].task_id == stale.id and "older-recipe" in by_kind["stale_marker"].detail
    )
    assert by_kind["no_marker"].task_id == absent.id
    assert (~result.scores["complete"]).sum() >= 2


def test_duplicate_shard_file_is_reported_and_ignored(selection_copy):
    before = aggregate_study(selection_copy.directory, write=False).scores
    _, shard, path = _shard(selection_copy)
    copy = path.with_name("part-00000-of-00001.parquet")  # same items under another shard count
    shutil.copy(path, copy)
    shutil.copy(marker_path(path), marker_path(copy))
    result = aggregate_study(selection_copy.directory, write=False)
    assert result.completeness.counts() == {"unexpected_file": 1}
    pd.testing.assert_frame_equal(before, result.scores)  # never read, so never counted twice


def test_duplicate_items_inside_trusted_shards_are_flagged(selection_copy):
    trial, shard, path = _shard(selection_copy, checkpoint="epoch-001")
    table = pq.read_table(path)
    rows = np.r_[np.arange(table.num_rows - 1), 0]  # the first item twice, the last one missing
    _rewrite(path, table.take(pa.array(rows)))
    result = aggregate_study(selection_copy.directory, write=False)
    assert result.completeness.counts() == {"duplicate_items": 1}
    s = result.scores.set_index(["trial_id", "planned_checkpoint", "split", "ability"])
    group = s.loc[(trial.id, "epoch-001", "valid", shard.ability)]
    assert not group["complete"] and "duplicate" in group["problem"]


def test_rows_that_contradict_their_task_are_rejected(selection_copy):
    _, shard, path = _shard(selection_copy)
    table = pq.read_table(path)
    wrong = table.set_column(
        table.schema.get_field_index("eval_task_id"),
        "eval_task_id",
        pa.array(["e-someone-else"] * table.num_rows),
    )
    _rewrite(path, wrong)
    result = aggregate_study(selection_copy.directory, write=False)
    (problem,) = result.completeness.problems
    assert problem.kind == "bad_rows" and "e-someone-else" in problem.detail


def test_selection_picks_the_planted_best_epoch(selection_study):
    result = aggregate_study(selection_study.directory, write=False)
    truth = selection_study.truth
    for row in result.selection.itertuples():
        trial = selection_study.plan.trial(row.trial_id)
        assert row.rule == SELECTION_RULE
        assert row.chosen_epoch == truth.best_epoch(trial), row.label
        assert row.writer_checkpoint == f"epoch-{row.chosen_epoch:03d}" and row.agrees
    reported = result.reported()
    trained = reported[reported["source"] != "base"]
    assert set(trained["split"]) == {"test"}
    chosen = dict(zip(result.selection["trial_id"], result.selection["chosen_checkpoint"], strict=True))
    assert (trained["checkpoint"] == trained["trial_id"].map(chosen)).all()
    assert (trained["planned_checkpoint"] == "selected").all() and (
        trained["selection_rule"] == SELECTION_RULE
    ).all()


def test_selection_when_every_checkpoint_was_tested(tmp_path):
    study = make_study(tmp_path, SELECTION, items=200, overrides=("evaluation.test_on=all",))
    result = aggregate_study(study.directory, write=False)
    reported = result.reported()
    for row in result.selection.itertuples():
        assert row.chosen_epoch == study.truth.best_epoch(study.plan.trial(row.trial_id))
        assert row.writer_checkpoint is None
        mine = reported[reported["trial_id"] == row.trial_id]
        assert set(mine["checkpoint"]) == {row.chosen_checkpoint} and set(mine["split"]) == {"test"}
        assert set(mine["selection_rule"]) == {SELECTION_RULE}


def test_writer_disagreement_is_flagged(tmp_path, monkeypatch):
    monkeypatch.setattr(simulate, "_writer_selects", lambda valid, trial: trial.checkpoints[0])
    study = make_study(tmp_path, SELECTION, items=200)
    result = aggregate_study(study.directory, write=False)
    flagged = result.selection[~result.selection["agrees"]]
    expected = [
        t for t in study.plan.trials if t.source != "base" and study.truth.best_epoch(t) != t.checkpoints[0]
    ]
    assert len(flagged) == len(expected) > 0
    assert flagged["note"].str.contains("eval writer tested epoch-001").all()


def test_ties_go_to_the_later_epoch():
    from analyze_studies import planned_trial

    from hpc_instruct.analyze.expected import StudyPlan
    from hpc_instruct.expansion import EvalTask, Expansion

    trial = planned_trial("curated-4/m/seed0", "m", "curated", {"a": 4}, checkpoints=(1, 2, 3), trial_id="t1")
    valid = EvalTask("e1", "t1", "epoch-001", "a/valid", "a", "valid", 0, 1, 0, 10)
    plan = StudyPlan("s", "", ("a",), (), Expansion((trial,), (), (valid,)), {}, 0)
    scores = pd.DataFrame(
        {
            "trial_id": "t1",
            "split": "valid",
            "ability": OVERALL,
            "complete": True,
            "planned_checkpoint": ["epoch-001", "epoch-002", "epoch-003"],
            "epoch": [1, 2, 3],
            "accuracy": [50.0, 60.0, 60.0],
        }
    )
    (row,) = select_checkpoints(scores, plan).itertuples()
    assert row.chosen_checkpoint == "epoch-003" and row.valid_mean == 60.0


def test_plan_from_an_expansion_equals_plan_json(selection_study):
    from hpc_instruct.analyze.expected import plan_from_expansion
    from hpc_instruct.recipe.study import load_study

    study = load_study(selection_study.directory / "study.yaml")
    expansion = study.expand()
    from_memory = plan_from_expansion(
        expansion,
        study.recipe.study.name,
        study.facts.fingerprint,
        study.facts.pool_sizes,
        study.facts.synthetic_size,
    )
    assert from_memory == selection_study.plan
    direct = aggregate_study(selection_study.directory, plan=expansion, write=False)
    assert direct.completeness.ok and len(direct.scores) == len(
        aggregate_study(selection_study.directory, write=False).scores
    )


def test_analysis_never_imports_torch(selection_study):
    import subprocess
    import sys

    code = (
        "import pkgutil, importlib, sys, hpc_instruct.analyze as A\n"
        "for m in pkgutil.iter_modules(A.__path__): importlib.import_module('hpc_instruct.analyze.' + m.name)\n"
        f"A.aggregate_study({str(selection_study.directory)!r}, write=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_flipped_bit_makes_a_shard_untrusted_and_its_task_not_done(selection_copy):
    """A bit flip can decode as valid Parquet and change a score: the marker's sha256 catches it."""
    _, shard, path = _shard(selection_copy, checkpoint="epoch-001")
    assert is_done(path, shard.id)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    assert not is_done(path, shard.id)  # so `hpci status` shows it not done and `hpci run` redoes it
    result = aggregate_study(selection_copy.directory, write=False)
    (problem,) = result.completeness.problems
    assert problem.kind == "bad_hash" and problem.task_id == shard.id and "sha256" in problem.detail
    assert "hpci run" in result.completeness.summary()
