"""The train stage: `run_train(ctx)` trains one trial and writes `trials/<id>/trial.json` with its marker.

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

log = logging.getLogger("hpc_instruct.train")


def run_train(ctx) -> None:
    """Stage function for `train` tasks (see `hpc_instruct.launch.entry`)."""
    import torch.distributed as dist

    from hpc_instruct.atomic import write_json, write_marker
    from hpc_instruct.train.job import job_from_context
    from hpc_instruct.train.loop import start_distributed, train

    env = start_distributed()
    try:
        job = job_from_context(ctx)
        result = train(job)
        hosts = [None] * dist.get_world_size()  # where each rank ran (Slurm's node name: emulated nodes share a host)
        dist.all_gather_object(hosts, os.environ.get("SLURMD_NODENAME") or socket.gethostname())
        if env.is_main:
            from hpc_instruct.train.export import missing_exports
            from hpc_instruct.train.resume import ResumeStore

            folders = {e: job.export_dir(e) for e in job.export_epochs}
            missing = missing_exports(folders, job.trial_id)
            if missing:
                raise RuntimeError(
                    f"trial {job.trial_id} finished training but exports for epochs {missing} are "
                    f"missing or incomplete under {job.trial_dir / 'export'}; run the task again"
                )
            summary = trial_summary(job, result, folders) | {"world_size": len(hosts), "hosts": hosts}
            write_json(ctx.output, summary)
            write_marker(ctx.output, ctx.task.id)
            ResumeStore(job.checkpoints_dir, job.trial_id, job.training.keep_last).clear()
            log.info(
                "trial %s done: %d steps, final loss %.4f, %.0f tokens/s, %.0f s",
                job.trial_id,
                result.steps,
                result.final_loss,
                result.tokens_per_s,
                result.wall_seconds,
            )
        dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def trial_summary(job, result, folders) -> dict:
    """trial.json: what was trained, how, how fast, and with which code (provenance for every later number)."""
    from hpc_instruct.launch.snapshot import code_hash
    from hpc_instruct.recipe.hashing import TRAIN_CODE_VERSION
    from hpc_instruct.train.loop import library_versions

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
        "code": {
            "train_code_version": TRAIN_CODE_VERSION,
            "package_hash": code_hash(),
            "git": _git_revision(),
            "libraries": library_versions(),
        },
        "host": socket.gethostname(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _git_revision() -> str | None:
    """The checkout's commit when the code runs from a git checkout (a snapshot under state/code has none)."""
    import subprocess
    from pathlib import Path

    import hpc_instruct

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(hpc_instruct.__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except OSError:
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
