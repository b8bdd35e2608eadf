"""Whole studies on the real local Slurm cluster: the miniature study runs to completion through train and eval
arrays with dependencies; a failing task shows its reason and log and `resubmit` re-runs only the failed work;
a preempted training task resumes from its checkpoint; a trial spans two nodes with Megatron tensor parallelism."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_helpers import DEMO, SMALL, element_job, rank_log, wait_for

from hpc_instruct.launch.slurm import SubmitOptions, cancel_study, submit_study
from hpc_instruct.launch.state import statuses
from hpc_instruct.launch.study_files import write_study
from hpc_instruct.launch.tasks import build_tasks
from hpc_instruct.recipe.study import load_study
from hpc_instruct.study_dir import StudyDir
from hpc_instruct.train.resume import ResumeStore

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
HPCI = str(Path(sys.executable).with_name("hpci"))


def hpci(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HPCI, *args], capture_output=True, text=True, timeout=600)


def test_submit_runs_the_study_to_completion(slurm_cluster, tmp_path):
    proc = hpci("submit", str(DEMO), f"study.output_root={tmp_path}", *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert "array jobs submitted" in proc.stdout
    study_dir = tmp_path / "demo"
    try:
        counts = wait_for(study_dir)
    finally:
        cancel_study(study_dir)
    assert all(set(c) == {"done"} for c in counts.values()), hpci("status", str(study_dir)).stdout
    status = hpci("status", str(study_dir))
    assert status.returncode == 0 and " 0 " in status.stdout
    assert (study_dir / "results" / "scores.parquet").is_file()
    parts = list((study_dir / "eval").rglob("part-*.parquet"))
    assert parts and all(p.with_name(p.name + ".done").is_file() for p in parts)


def test_failed_task_reason_log_and_resubmit_only_it(slurm_cluster, tmp_path):
    staged = tmp_path / "site" / "tokenizer"  # a site path that is not staged yet: tasks that need it fail
    models = ("models=[{name: tiny, size: tiny, device: cpu, micro_batch: 8, global_batch: 8}, "
              f"{{name: other, size: tiny, tokenizer: '{staged}', device: cpu, micro_batch: 8, global_batch: 8}}]")
    study = load_study(DEMO, (f"study.output_root={tmp_path}", *SMALL, models, "sweep.synthetic=null"))
    ex = study.expand()
    write_study(study, ex)
    submit_study(study, ex, SubmitOptions(slots_per_trial=1))
    try:
        wait_for(study.directory)
        sdir = StudyDir(study.directory)
        rows = statuses(sdir, build_tasks(study, ex))
        failed = {r.task.id: r for r in rows if r.status == "failed"}
        other = {t.id for t in ex.trials if t.model == "other"}
        bad_prepare = [r for r in failed.values() if r.task.stage == "prepare"]
        assert bad_prepare and all("error" in r.reason and r.log and "tokenizer" in r.log_tail for r in bad_prepare)
        assert {r.task.id for r in failed.values() if r.task.stage == "train"} == other
        assert not [r for r in rows if r.status == "failed" and r.task.stage == "train" and r.task.id not in other]
        # Stage the missing files, resubmit: exactly the failed tasks are submitted again, and the study completes.
        staged.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(study.directory / "tokenizer", staged)
        proc = hpci("resubmit", str(study.directory), "--slots", "1")
        assert proc.returncode == 0, proc.stderr
        subs = [json.loads(line) for line in (sdir.state / "submissions.jsonl").read_text().splitlines()]
        resubmitted = {tid for s in subs[-len([ln for ln in proc.stdout.splitlines() if ln.startswith("submitted")]):]
                       for element in s["elements"] for tid in element}
        assert resubmitted == set(failed)
        counts = wait_for(study.directory)
    finally:
        cancel_study(study.directory)
    assert all(set(c) == {"done"} for c in counts.values()), hpci("status", str(study.directory)).stdout


def _final_loss(trial_dir: Path) -> float:
    return json.loads((trial_dir / "trial.json").read_text())["final_loss"]


def test_preempted_training_resumes_with_the_same_final_loss(slurm_cluster, tmp_path):
    common = (*SMALL, "sweep.curated.samples_per_ability=[16]", "sweep.synthetic=null", "training.min_steps=200",
              "evaluation.splits=[valid]", "training.resume_every_minutes=0.05")
    local = load_study(DEMO, (f"study.output_root={tmp_path / 'local'}", *common, "execution.executor=local"))
    from hpc_instruct.launch.local import run_local

    ex = local.expand()
    write_study(local, ex)
    assert not run_local(local, ex, progress=False, stages=("prepare", "train")).failed
    reference = _final_loss(StudyDir(local.directory).trial(ex.trials[0].id))

    study = load_study(DEMO, (f"study.output_root={tmp_path / 'slurm'}", *common))
    ex = study.expand()
    write_study(study, ex)
    report = submit_study(study, ex, SubmitOptions(slots_per_trial=1))
    train = next(s for s in report.submissions if s.stage == "train")
    sdir = StudyDir(study.directory)
    trial = ex.trials[0]
    store = ResumeStore(sdir.checkpoints(trial.id), trial.id, keep_last=2)
    try:
        # Preempt only once a resume checkpoint exists (waiting on the event, not on a clock): the requeued
        # attempt must then resume from it, however slow this machine is.
        deadline = time.time() + 600
        while time.time() < deadline and not store.complete():
            time.sleep(0.1)
        first = store.newest()
        assert first is not None, f"no resume checkpoint within 600 s: {rank_log(train)}"
        assert first.state.step < first.state.total_steps, "the trial finished before it could be preempted"
        subprocess.run(["scontrol", "requeue", element_job(train)], check=True)  # preemption
        wait_for(study.directory)
        rows = {r.task.id: r for r in statuses(sdir, build_tasks(study, ex))}
    finally:
        cancel_study(study.directory)
    assert rows[trial.id].status == "done"
    history = subprocess.run(["sacct", "-D", "-n", "-X", "-j", train.job_id, "--format=State"],
                             capture_output=True, text=True).stdout.split()
    assert history[0] == "REQUEUED" and history[-1] == "COMPLETED", history  # Slurm's own record of the requeue
    summary = json.loads((sdir.trial(trial.id) / "trial.json").read_text())
    assert summary["attempts"] == 2  # the second attempt resumed from the first one's checkpoint
    assert abs(summary["final_loss"] - reference) < 1e-6


def test_trial_spans_two_nodes_with_tensor_parallelism(slurm_cluster, tmp_path):
    model = "models=[{name: tp2, size: tiny, device: cpu, tp: 2, nodes: 2, micro_batch: 8, global_batch: 8}]"
    study = load_study(DEMO, (f"study.output_root={tmp_path}", *SMALL, model, "sweep.curated.samples_per_ability=[4]",
                              "sweep.synthetic=null", "evaluation.include_base=false"))
    ex = study.expand()
    write_study(study, ex)
    report = submit_study(study, ex, SubmitOptions(slots_per_trial=1))
    train = next(s for s in report.submissions if s.stage == "train")
    assert train.group == "2n1cpu"
    try:
        counts = wait_for(study.directory)
    finally:
        cancel_study(study.directory)
    assert counts["train"] == {"done": 1}, hpci("status", str(study.directory)).stdout
    out = rank_log(train, rank=0).read_text() + rank_log(train, rank=1).read_text()
    summary = json.loads((StudyDir(study.directory).trial(ex.trials[0].id) / "trial.json").read_text())
    assert summary["layout"]["tp"] == 2 and summary["world_size"] == 2
    assert len(set(summary["hosts"])) == 2, out  # one rank on each emulated node
