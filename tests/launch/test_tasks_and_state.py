"""Stage tasks, resource groups, study files with drift, and task status from markers and local records."""

from __future__ import annotations

import json
from pathlib import Path

from hpc_instruct.atomic import write_marker
from hpc_instruct.launch.plan import stage_jobs
from hpc_instruct.launch.slurm_query import JobState, expand_job_ids
from hpc_instruct.launch.state import record_local_failure, status_table, statuses, summary
from hpc_instruct.launch.study_files import load_written, write_study
from hpc_instruct.launch.tasks import build_tasks, resources
from hpc_instruct.recipe.study import load_study
from hpc_instruct.study_dir import StudyDir

ROOT = Path(__file__).resolve().parents[2]

RECIPE = """\
study: {name: s, output_root: OUT}
models:
  - {name: m, size: tiny, device: cpu, global_batch: 8, micro_batch: 8}
  - {name: w, size: tiny, device: cpu, tp: 2, global_batch: 8, micro_batch: 8}
data: {generate: {pool_size: 50, synthetic_size: 100}}
sweep: {curated: {samples_per_ability: [1, 4]}, synthetic: {total_samples: [10], models: [m]}}
training: {epochs: 2, precision: fp32, max_length: 128}
evaluation: {items_per_shard: 50}
"""


def make(tmp_path, text=RECIPE, *overrides):
    path = tmp_path / "r.yaml"
    path.write_text(text.replace("OUT", str(tmp_path / "studies")))
    study = load_study(path, overrides)
    return study, study.expand()


def test_tasks_cover_every_stage_with_dependencies(tmp_path):
    study, ex = make(tmp_path)
    tasks = build_tasks(study, ex)
    by = {s: [t for t in tasks if t.stage == s] for s in ("prepare", "train", "eval", "aggregate")}
    assert len(by["train"]) == len(ex.trials) == 5 and len(by["eval"]) == len(ex.eval_tasks)
    assert len(by["aggregate"]) == 1
    prepare_ids = {t.id for t in by["prepare"]}
    assert all(t.after in prepare_ids for t in by["train"])
    trial_ids = {t.id for t in ex.trials}
    assert all(t.after in trial_ids or t.after == "" for t in by["eval"])
    assert {t.group for t in by["train"]} == {"1n1cpu", "1n2cpu"}  # tp=2 on cpu: 2 ranks
    assert len({t.id for t in tasks}) == len(tasks)


def test_resources_follow_layout_and_recipe(tmp_path):
    study, _ = make(tmp_path, RECIPE.replace("device: cpu, tp: 2, global_batch: 8", "tp: 4, pp: 2, dp: 2, nodes: 2, global_batch: 16"),
                    "execution.train.cpus_per_task=6", "execution.train.mem_gb=64", "training.precision=bf16")
    r = resources(study, "train", "2n8g")
    assert (r.nodes, r.tasks_per_node, r.gpus_per_node, r.cpus_per_task) == (2, 8, 8, 6)
    jobs = stage_jobs(study, study.expand())
    assert [j.stage for j in jobs].count("train") == 2  # one array per resource shape, not per task


def test_write_study_reports_drift_and_round_trips(tmp_path):
    study, ex = make(tmp_path)
    assert write_study(study, ex).first
    again = load_written(study.directory)
    assert [t.id for t in again.expand().trials] == [t.id for t in ex.trials]
    assert "unchanged" in write_study(again, again.expand()).describe()
    changed, ex2 = make(tmp_path, RECIPE, "sweep.curated.samples_per_ability=[1,8]")
    drift = write_study(changed, ex2)
    assert (drift.new_trials, drift.kept_trials, drift.dropped_trials) == (2, 3, 2)
    assert list((study.directory / "state" / "plans").glob("plan-*.json"))


def test_status_from_markers_and_local_failures(tmp_path):
    study, ex = make(tmp_path)
    write_study(study, ex)
    sdir = StudyDir(study.directory)
    tasks = build_tasks(study, ex)
    first = tasks[0]
    out = sdir.root / first.output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("{}")
    write_marker(out, first.id)
    second = tasks[1]
    out2 = sdir.root / second.output
    out2.parent.mkdir(parents=True, exist_ok=True)
    out2.write_text("{}")
    write_marker(out2, "some-older-task")  # a stale marker is not done
    log = tmp_path / "x.log"
    log.write_text("line 1\nValueError: bad things\n")
    record_local_failure(sdir, tasks[2], "exit code 1: ValueError: bad things", str(log))
    rows = statuses(sdir, tasks)
    assert rows[0].status == "done" and rows[1].status == "never submitted"
    assert rows[2].status == "failed" and "ValueError" in rows[2].log_tail
    counts = summary(rows)["prepare"]
    assert counts["done"] == 1 and counts["failed"] == 1
    table = status_table(rows)
    assert "failed prepare" in table and str(log) in table


def test_expand_array_job_ids():
    assert expand_job_ids("12_[0-2,5%2]") == ["12_0", "12_1", "12_2", "12_5"]
    assert expand_job_ids("12_3") == ["12_3"]


def test_failure_classification():
    assert JobState("1_0", "TIMEOUT").failure == "timeout"
    assert JobState("1_0", "OUT_OF_MEMORY").failure == "out of memory"
    assert JobState("1_0", "NODE_FAIL").failure == "node failure"
    assert JobState("1_0", "PREEMPTED").failure == "preempted"
    assert JobState("1_0", "COMPLETED").phase == "finished"
    assert JobState("1_0", "REQUEUED").phase == "pending"
    # A person's scancel ("CANCELLED by <uid>") is not a failed dependency, whatever sacct's reason column kept.
    assert JobState("1_0", "CANCELLED", reason="Dependency", cancelled_by="0").failure == "cancelled (scancel by root)"
    assert JobState("1_0", "CANCELLED", reason="Dependency").failure == "cancelled: a task it depended on failed"
    requeued = JobState("1_0", "PENDING", attempts=2, previous="NODE_FAIL", previous_nodes="n3")
    assert requeued.requeued_after == "requeued after node failure on n3 (attempt 2)"


def test_plan_write_flag(tmp_path, capsys):
    from hpc_instruct.cli import main

    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.replace("OUT", str(tmp_path / "studies")))
    assert main(["plan", str(path), "--write", "--format", "json"]) == 0
    plan = json.loads((tmp_path / "studies" / "s" / "plan.json").read_text())
    assert len(plan["trials"]) == 5


def test_local_executor_packs_single_rank_tasks_into_one_process_per_slot(tmp_path):
    """Process start-up dominates tiny trials: single-rank tasks share `parallelism` processes (balanced by
    work), a checkpoint's eval shards stay together and in order, a multi-rank trial runs alone."""
    from hpc_instruct.launch.local import _units

    study, ex = make(tmp_path)
    tasks = build_tasks(study, ex)
    train = [t for t in tasks if t.stage == "train"]
    params = {name: shape.num_parameters for name, shape in study.shapes.items()}
    units = _units(train, ex, parallelism=2, params=params)
    wide = [u for u in units if ex.trial(u[0].id).tp > 1]
    assert len(wide) == 2 and all(len(u) == 1 for u in wide)  # the two tp=2 trials: one torchrun each
    packed = [u for u in units if u not in wide]
    assert len(packed) == 2 and sorted(t.id for u in packed for t in u) == sorted(
        t.id for t in train if ex.trial(t.id).tp == 1)
    def flops(t):
        return ex.trial(t.id).tokens * params[ex.trial(t.id).model]

    work = [sum(flops(t) for t in u) for u in packed]
    assert min(work) > 0 and max(work) - min(work) <= max(flops(t) for t in train)  # balanced to one trial
    evals = [t for t in tasks if t.stage == "eval"]
    units = _units(evals, ex, parallelism=2)
    assert len(units) == 2 and sorted(t.id for u in units for t in u) == sorted(t.id for t in evals)
    for unit in units:  # each checkpoint's shards are contiguous in their process, in plan order
        keys = [f"{t.owner}/{t.checkpoint}" for t in unit]
        assert all(keys.index(k) + keys.count(k) - 1 == max(i for i, x in enumerate(keys) if x == k) for k in keys)
    assert len(_units(evals, ex, parallelism=1)) == 1
