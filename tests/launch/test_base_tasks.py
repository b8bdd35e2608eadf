"""The base stage in the task graph: one base task per pretrained model, train tasks and base-checkpoint eval shards
that need it, the local executor running bases of different models side by side, and the Slurm arrays chained on
it (train `afterany` prepare and base; base-checkpoint shards `afterany` base).

The Slurm test records what would be submitted instead of calling sbatch (`_Submitter._sbatch` is replaced): the
dependency graph is decided before that call; tests/launch/test_slurm_submit.py submits for real to a local Slurm.

Covers: hpc_instruct.launch.tasks (base tasks, needs, group_ranks), hpc_instruct.launch.local (ranks_of, _units),
hpc_instruct.launch.slurm (base arrays), hpc_instruct.stages (ORDER)."""

from __future__ import annotations

from hpc_instruct.launch.tasks import build_tasks, group_ranks, resources
from hpc_instruct.recipe.study import load_study
from hpc_instruct.stages import ORDER
from hpc_instruct.stages.base import base_id

RECIPE = """\
study: {name: s, output_root: OUT}
models:
  - {name: m, size: tiny, device: cpu, global_batch: 8, micro_batch: 8, pretrain: {steps: 20}}
  - {name: w, size: mini, device: cpu, tp: 2, global_batch: 8, micro_batch: 8, pretrain: {steps: 30}}
  - {name: r, size: tiny, device: cpu, global_batch: 8, micro_batch: 8}
data: {generate: {pool_size: 50, synthetic_size: 100}}
sweep: {curated: {samples_per_ability: [1, 4]}}
training: {epochs: 2, precision: fp32, max_length: 128}
evaluation: {items_per_shard: 50, include_base: true}
execution: {train: {cpus_per_task: 3}}
"""


def make(tmp_path, text=RECIPE):
    path = tmp_path / "r.yaml"
    path.write_text(text.replace("OUT", str(tmp_path / "studies")))
    study = load_study(path)
    return study, study.expand()


def test_base_tasks_and_what_needs_them(tmp_path):
    assert ORDER == ("prepare", "base", "train", "eval", "aggregate")
    study, ex = make(tmp_path)
    tasks = build_tasks(study, ex)
    bases = {t.label: t for t in tasks if t.stage == "base"}
    assert set(bases) == {"base/m", "base/w"}
    assert bases["base/m"].id == base_id(study, "m") and bases["base/w"].group == "1n2cpu"
    assert group_ranks(bases["base/w"].group) == 2 and resources(study, "base", "1n2cpu").cpus_per_task == 3
    model_of = {b.id: b.model for b in ex.baselines}
    for t in tasks:
        model = ex.trial(t.id).model if t.stage == "train" else model_of.get(t.owner)
        if t.stage == "train" or (t.stage == "eval" and t.owner in model_of):
            assert t.needs == ((bases[f"base/{model}"].id,) if model in ("m", "w") else ()), t
        else:
            assert t.needs == (), t
    assert [t.stage for t in tasks].index("base") < [t.stage for t in tasks].index("train")


def test_a_base_is_made_only_for_models_the_study_uses(tmp_path):
    text = RECIPE.replace("sweep: {curated: {samples_per_ability: [1, 4]}}",
                          "sweep: {curated: {samples_per_ability: [1, 4], models: [r]}}")
    study, ex = make(tmp_path, text.replace("include_base: true", "include_base: false"))
    assert not [t for t in build_tasks(study, ex) if t.stage == "base"]


def test_local_executor_runs_the_bases_of_different_models_side_by_side(tmp_path):
    from hpc_instruct.launch.local import _units, ranks_of

    study, ex = make(tmp_path, RECIPE.replace(", tp: 2", ""))
    bases = [t for t in build_tasks(study, ex) if t.stage == "base"]
    units = _units(bases, ex, parallelism=2)
    assert len(units) == 2 and sorted(len(u) for u in units) == [1, 1]  # one process each, at once
    study, ex = make(tmp_path)
    (wide,) = [t for t in build_tasks(study, ex) if t.label == "base/w"]
    assert ranks_of(wide, ex) == 2  # its own torchrun, as the model's trials


def test_slurm_train_arrays_wait_for_the_base_arrays(tmp_path, monkeypatch):
    from hpc_instruct.launch import slurm

    submitted = []

    def record(self, stage, group, elements, dependency):
        job = str(1000 + len(submitted))
        submitted.append((job, stage, group, elements, dependency))
        return job

    monkeypatch.setattr(slurm._Submitter, "_sbatch", record)
    study, ex = make(tmp_path)
    slurm.submit_study(study, ex, slurm.SubmitOptions(max_array_size=1000))
    jobs = {job: (stage, group, elements, dep) for job, stage, group, elements, dep in submitted}
    of = lambda stage: [j for j, v in jobs.items() if v[0] == stage]  # noqa: E731
    (prepare,) = of("prepare")
    base_jobs = of("base")
    assert sorted(jobs[j][1] for j in base_jobs) == ["1n1cpu", "1n2cpu"] and all(not jobs[j][3] for j in base_jobs)
    for j in of("train"):
        assert set(jobs[j][3].removeprefix("afterany:").split(":")) == {prepare, *base_jobs}
    tasks = {t.id: t for t in build_tasks(study, ex)}
    for j in of("eval"):
        ids = [i for element in jobs[j][2] for i in element]
        if any(tasks[i].needs for i in ids):  # base checkpoints of pretrained models: after the bases
            assert all(tasks[i].needs for i in ids) and jobs[j][3] == "afterany:" + ":".join(base_jobs)
    pretrained_base_shards = {t.id for t in tasks.values() if t.stage == "eval" and t.needs}
    assert pretrained_base_shards and pretrained_base_shards <= {i for j in of("eval") for e in jobs[j][2] for i in e}
