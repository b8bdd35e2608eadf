"""Runs the training loop on a prepared study's first trial with another backend/layout, for test_train.py.

    python -m torch.distributed.run --standalone --nproc_per_node=N tests/train/train_worker.py \
        STUDY_DIR OUT_ROOT SPEC_JSON

SPEC_JSON (all optional): backend, tp, pp, dp, distributed_optimizer, sequence_parallel, packing,
resume_every_minutes, keep_last, async_save (replace the recipe's values); signal_at + signal_rank (that rank sends
itself SIGUSR2 after that optimizer step: the real preemption path, agreed by all ranks); logits (rank 0
saves the trained backend's logits on the first micro-batch of step 0 together with that batch). Outputs
go under OUT_ROOT/trials/<id>/ (not the study's), and rank 0 writes OUT_ROOT/result.json at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from pathlib import Path


def main(study_dir: str, out_root: str, spec_json: str) -> None:
    import torch

    from hpc_instruct.launch.entry import _load, task_context
    from hpc_instruct.stages import train as train_stage
    from hpc_instruct.train.loop import TrainHooks, train

    spec = json.loads(spec_json)
    study, ex, tasks = _load(study_dir)
    task = next(t for t in tasks.values() if t.stage == "train")
    job = train_stage.job(train_stage.context(task_context(study_dir, task.id)))
    model_keys = ("backend", "tp", "pp", "dp", "distributed_optimizer", "sequence_parallel")
    model = {k: spec[k] for k in model_keys if k in spec}
    training = {k: spec[k] for k in ("packing", "resume_every_minutes", "keep_last", "async_save") if k in spec}
    job = dataclasses.replace(
        job,
        model=dataclasses.replace(job.model, **model),
        training=dataclasses.replace(job.training, **training),
        root=Path(out_root),
    )

    def after_step(step: int, stats) -> None:
        if step == spec.get("signal_at") and torch.distributed.get_rank() == spec.get("signal_rank", 0):
            os.kill(os.getpid(), signal.SIGUSR2)

    def before_close(backend, data) -> None:
        if not spec.get("logits"):
            return
        batch = data.step(0, 0).micro_batches[0]
        logits = backend.logits(batch)
        if logits is not None:
            torch.save({"logits": logits, "batch": batch}, Path(out_root) / "logits.pt")

    result = train(job, TrainHooks(after_step=after_step, before_close=before_close))
    if torch.distributed.get_rank() == 0:
        out = dataclasses.asdict(result) | {"trial": job.trial_id, "tokens_per_s": result.tokens_per_s}
        (Path(out_root) / "result.json").write_text(json.dumps(out, indent=1))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":  # dist_checkpointing.save spawns a Manager process that re-imports this module
    main(*sys.argv[1:4])
