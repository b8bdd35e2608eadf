"""The base stage end to end: `hpci run` on a two-model study, one tiny model pretrained (`pretrain: 40 steps`) and
one not, on the same mixture. The base task runs once, its loss falls, the pretrained model's trial starts from its
export (a first-step loss far below the raw model's on the same first batch), its base eval rows evaluate the
export, and a train task refuses to run before its base is done. About a minute on one CPU core.

Covers: hpc_instruct.stages.base, hpc_instruct.stages.train (init_from), hpc_instruct.stages.eval (the pretrained
base checkpoint), hpc_instruct.launch.entry (needs), hpc_instruct.train.loop (max_steps)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

RECIPE = """\
study:
  name: base-stage
  output_root: {root}
models:
  - name: pre
    size: tiny
    device: cpu
    micro_batch: 4
    global_batch: 4
    pretrain: {{steps: 40, lr: 3.0e-3, warmup_steps: 4}}
  - name: raw
    size: tiny
    device: cpu
    micro_batch: 4
    global_batch: 4
data:
  generate: {{seed: 0, pool_size: 16, synthetic_size: 8}}
  abilities: [math, ethics]
  mean_tokens: {{default: 40, synthetic: 40}}
sweep:
  seeds: [0]
  curated:
    samples_per_ability: [8]
training:
  epochs: 1
  lr: 2.0e-3
  warmup_steps: 1
  max_length: 128
  precision: fp32
  activation_checkpointing: false
evaluation:
  include_base: true
  checkpoints: last
  test_on: all
  splits: [valid]
  max_new_tokens: 8
  batch_size: 32
execution:
  local_parallelism: 2
  train: {{time_min: 30, mem_gb: 4, cpus_per_task: 1}}
"""


@dataclass(frozen=True)
class RanStudy:
    recipe: Path
    study: object
    expansion: object
    refusal: str  # what the train task of `pre` said when asked to run before its base
    run_exit: int


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> RanStudy:
    from hpc_instruct.cli import main
    from hpc_instruct.launch.entry import run_tasks
    from hpc_instruct.launch.local import run_local
    from hpc_instruct.launch.study_files import write_study
    from hpc_instruct.recipe.study import load_study

    folder = tmp_path_factory.mktemp("base-stage")
    recipe = folder / "r.yaml"
    recipe.write_text(RECIPE.format(root=folder / "studies"))
    study = load_study(recipe)
    ex = study.expand()
    write_study(study, ex)
    assert not run_local(study, ex, progress=False, stages=("prepare",)).failed
    (trial,) = [t for t in ex.trials if t.model == "pre"]
    with pytest.raises(RuntimeError) as refused:
        run_tasks(str(study.directory.resolve()), "train", [trial.id])
    code = main(["run", str(recipe), "--quiet"])
    return RanStudy(recipe, study, ex, str(refused.value), code)


def _sdir(ran: RanStudy):
    from hpc_instruct.study_dir import StudyDir

    return StudyDir(ran.study.directory.resolve())


def _losses(path: Path) -> list[float]:
    return pq.read_table(path, columns=["loss"]).column("loss").to_pylist()


def test_a_train_task_refuses_to_run_before_its_base(ran):
    from hpc_instruct.stages.base import base_id

    bid = base_id(ran.study, "pre")
    assert f"needs base {bid} (base/pre), which has not finished" in ran.refusal
    assert "hpci status" in ran.refusal


def test_the_base_task_ran_once_and_its_loss_fell(ran):
    from hpc_instruct.launch.tasks import build_tasks
    from hpc_instruct.stages.base import base_id

    assert ran.run_exit == 0
    bases = [t for t in build_tasks(ran.study, ran.expansion) if t.stage == "base"]
    assert [t.label for t in bases] == ["base/pre"] and bases[0].done(_sdir(ran))
    bid = base_id(ran.study, "pre")
    summary = json.loads(_sdir(ran).base_summary(bid).read_text())
    losses = _losses(_sdir(ran).base_step_log(bid))
    assert summary["steps"] == len(losses) == 40
    assert summary["tokens"] > 0 and summary["seconds"] > 0 and summary["code"]["code_version"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.5, losses  # it learnt the corpus
    assert summary["final_loss"] == pytest.approx(losses[-1])
    assert not _sdir(ran).base_checkpoints(bid).exists() or not any(_sdir(ran).base_checkpoints(bid).iterdir())


def test_trials_of_the_pretrained_model_start_from_its_export(ran):
    from hpc_instruct.stages.base import base_id
    from hpc_instruct.stages.context import TaskContext
    from hpc_instruct.stages.prepare import mixture_id
    from hpc_instruct.stages.train import context, job

    sdir = _sdir(ran)
    trials = {t.model: t for t in ran.expansion.trials}
    assert mixture_id(ran.study, trials["pre"]) == mixture_id(ran.study, trials["raw"])  # the same rows, same order
    first = {m: _losses(sdir.step_log(t.id))[0] for m, t in trials.items()}
    # The raw tiny model starts at ~ln(vocab) on the same first batch; the pretrained one far below it.
    assert first["pre"] < first["raw"] - 1.0, first
    for name, t in trials.items():
        ctx = context(TaskContext(ran.study, sdir, ran.expansion, t.id, sdir.trial_summary(t.id),
                                  mixture_id(ran.study, t)))
        expected = sdir.base_export(base_id(ran.study, "pre")) if name == "pre" else None
        assert job(ctx).init_from == expected


def test_the_base_checkpoint_of_the_pretrained_model_is_its_export(ran):
    from hpc_instruct.evaluate.checkpoints import load_checkpoint
    from hpc_instruct.stages.base import base_id
    from hpc_instruct.stages.eval import base_checkpoint

    sdir = _sdir(ran)
    ckpt = base_checkpoint(ran.study, sdir, "pre")
    assert (ckpt.kind, ckpt.path, ckpt.name) == ("export", str(sdir.base_export(base_id(ran.study, "pre"))), "base")
    assert base_checkpoint(ran.study, sdir, "raw").kind == "preset"
    import pandas as pd

    shards = [sdir.eval_shard(e) for b in ran.expansion.baselines for e in ran.expansion.eval_tasks_of(b.id)]
    base_rows = pd.concat([pq.read_table(path).to_pandas() for path in shards])
    assert set(base_rows["checkpoint"]) == {"base"}
    assert set(base_rows["model"]) == {"pre", "raw"}
    # Both bases start from the same seeded init (seed 0); the pretrained one answers differently.
    by_model = {m: g.sort_values("item_id") for m, g in base_rows.groupby("model")}
    assert list(by_model["pre"]["item_id"]) == list(by_model["raw"]["item_id"])
    differ = (by_model["pre"]["response"].to_numpy() != by_model["raw"]["response"].to_numpy()).mean()
    assert differ > 0.5, differ
    # And what the rows say is what the export answers (the model evaluated is the one loaded from it).
    loaded = load_checkpoint(ckpt, "doit", ran.study.shapes["pre"])
    assert loaded.num_parameters == int(by_model["pre"]["num_parameters"].iloc[0])


def test_plan_and_status_show_the_base_stage(ran, capsys):
    from hpc_instruct.cli import main

    assert main(["plan", str(ran.recipe)]) == 0
    plan = capsys.readouterr().out
    assert "base-1n1cpu" in plan and "1 base models pretrained (pre; 40 steps in all)" in plan
    assert main(["status", str(ran.study.directory)]) == 0
    status = capsys.readouterr().out.splitlines()
    (line,) = [ln for ln in status if ln.startswith("base ")]
    assert line.split()[1] == "1"  # done
    assert main(["run", str(ran.recipe), "--quiet"]) == 0
    assert "ran 0 tasks" in capsys.readouterr().out  # nothing redone: the base is skipped as done
