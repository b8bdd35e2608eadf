"""The train stage: one trial trained, its exports checked, `trials/<id>/trial.json` written with its marker.

Every rank of the trial runs this (torchrun locally, srun/submitit on Slurm). The summary is written by rank 0
only after every planned export is complete (its marker carries the trial id), so a trial marked done always
has the checkpoints evaluation will ask for. The resume checkpoints are then deleted: the exports are what
the study keeps (a 7B trial's optimizer state is ~6x its bf16 weights).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.expansion import Trial
from hpc_instruct.hashing import TRAIN_CODE_VERSION
from hpc_instruct.recipe.study import Study
from hpc_instruct.stages.base import base_id
from hpc_instruct.stages.context import TaskContext
from hpc_instruct.stages.prepare import read_prepared
from hpc_instruct.study_dir import StudyDir

log = logging.getLogger("hpc_instruct.train")


@dataclass(frozen=True)
class TrainContext:
    study: Study
    sdir: StudyDir
    trial: Trial
    output: Path  # trials/<id>/trial.json
    prepare_id: str  # the prepare task whose mixture this trial trains on


def context(base: TaskContext) -> TrainContext:
    return TrainContext(base.study, base.sdir, base.expansion.trial(base.task_id), base.output, base.after)


def job(ctx: TrainContext):
    """The trial's `TrainJob`: the recipe's model and training settings, the trial's seed, epochs and export
    epochs fixed at plan time, the prepared mixture, and the pretrained base export when the model has one."""
    from hpc_instruct.train.job import TrainJob

    trial, recipe = ctx.trial, ctx.study.recipe
    model = ctx.study.model(trial.model)
    prep = read_prepared(ctx.sdir, ctx.prepare_id)
    return TrainJob(
        trial_id=trial.id,
        label=trial.label,
        seed=trial.seed,
        epochs=trial.epochs,
        export_epochs=tuple(trial.checkpoints),
        model=model,
        training=recipe.training,
        shape=ctx.study.shapes[model.name],
        packed=ctx.sdir.root / prep["packed"],
        tokenizer=prep["tokenizer"],
        template=prep["template"],
        root=ctx.sdir.root,
        gpu_peak_tflops=recipe.execution.gpu_spec().peak_tflops(recipe.training.precision),
        planned_steps=trial.steps,
        init_from=ctx.sdir.base_export(base_id(ctx.study, model)) if model.pretrain else None,
    )


def run(ctx: TrainContext) -> None:
    import torch.distributed as dist

    from hpc_instruct.atomic import write_json, write_marker
    from hpc_instruct.train.export import missing_exports
    from hpc_instruct.train.loop import start_distributed, train
    from hpc_instruct.train.resume import ResumeStore

    env = start_distributed()
    try:
        the_job = job(ctx)
        result = train(the_job)
        hosts = [None] * dist.get_world_size()  # where each rank ran (Slurm's node name: emulated nodes share a host)
        dist.all_gather_object(hosts, os.environ.get("SLURMD_NODENAME") or socket.gethostname())
        if env.is_main:
            folders = {e: the_job.export_dir(e) for e in the_job.export_epochs}
            missing = missing_exports(folders, the_job.trial_id)
            if missing:
                raise RuntimeError(
                    f"trial {the_job.trial_id} finished training but exports for epochs {missing} are "
                    f"missing or incomplete under {ctx.sdir.exports(the_job.trial_id)}; run the task again"
                )
            summary = trial_summary(the_job, result, folders) | {"world_size": len(hosts), "hosts": hosts}
            write_json(ctx.output, summary)
            write_marker(ctx.output, ctx.trial.id)
            ResumeStore(the_job.checkpoints_dir, the_job.trial_id, the_job.training.keep_last).clear()
            log.info("trial %s done: %d steps, final loss %.4f, %.0f tokens/s, %.0f s", the_job.trial_id,
                     result.steps, result.final_loss, result.tokens_per_s, result.wall_seconds)
        dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def trial_summary(job, result, folders) -> dict:
    """trial.json: what was trained, how, how fast, and with which code (provenance for every later number)."""
    from hpc_instruct.provenance import code_version, library_versions

    return {
        "trial": job.trial_id,
        "label": job.label,
        "seed": job.seed,
        "backend": result.backend,
        "device": result.device,
        "precision": result.precision,
        "layout": result.layout,
        "batch": result.batch,
        "global_batch": job.model.global_batch,
        "rows": result.rows,
        "packing": job.training.packing,
        "data_key": result.data_key,
        "steps": result.steps,
        "steps_per_epoch": result.steps_per_epoch,
        "planned_steps": job.planned_steps,
        "min_steps": job.training.min_steps,
        "epochs": result.epochs,
        "final_loss": result.final_loss,
        "tokens": result.tokens,
        "tokens_per_s": result.tokens_per_s,
        "step_seconds": result.step_seconds,
        "wall_seconds": result.wall_seconds,
        "attempts": result.attempts,
        "peak_tflops": result.peak_tflops,
        "mfu": result.mfu,
        "exports": {str(e): str(f.relative_to(job.root)) for e, f in sorted(folders.items())},
        "log": str(job.log_path.relative_to(job.root)),
        "model": dataclasses.asdict(job.model),
        "training": dataclasses.asdict(job.training),
        "code": {"train_code_version": TRAIN_CODE_VERSION, "code_version": code_version(),
                 "libraries": library_versions()},
        "host": socket.gethostname(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
