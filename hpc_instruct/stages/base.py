"""The base stage: a size-preset model with `pretrain` trained once on a plain-text corpus, the study's base model.

One task per such model. It writes
    <study>/bases/<id>/packed/      the corpus, tokenised with the study tokenizer and packed (every token trained)
    <study>/bases/<id>/export/      the HF folder (+ marker) every trial of the model starts from, and what
                                    `evaluation.include_base` evaluates as the model's `base` checkpoint
    <study>/bases/<id>/base.json    (+ .done marker) steps, losses, tokens, seconds, code version
It trains with the trials' loop (`hpc_instruct.train.loop.train`) for exactly `pretrain.steps` optimizer steps,
from the preset's seeded init (seed `BASE_SEED`), with the model's backend and layout. Its vocabulary is the
trials' (the study tokenizer plus what the template adds), so a trial loads the export with its shape unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.hashing import TRAIN_CODE_VERSION, digest, identity
from hpc_instruct.recipe.study import Study
from hpc_instruct.stages.context import TaskContext
from hpc_instruct.stages.study_data import data_root, ensure_tokenizer
from hpc_instruct.study_dir import StudyDir
from hpc_instruct.train.config import ModelConfig, TrainingConfig

log = logging.getLogger("hpc_instruct.train")

BASE_SEED = 0  # the base model's init and data order: one base per model, whatever the sweep's seeds


def base_training(study: Study, model: ModelConfig) -> TrainingConfig:
    """The optimisation of pretraining: the recipe's training section with the pretrain lr and warmup, a cosine
    to lr/10, packed rows, no step floor, and resume checkpoints on the time cadence only (a small corpus has
    epochs of a few steps)."""
    p = model.pretrain
    assert p is not None, f"model {model.name!r} has no pretrain section"
    return dataclasses.replace(study.recipe.training, lr=p.lr, warmup_steps=p.warmup_steps, warmup_ratio=0.0,
                               schedule="cosine", min_lr=p.lr / 10, min_steps=0, packing=True, epochs=1,
                               checkpoint_every_epochs=10**9)


def base_model(model: ModelConfig) -> ModelConfig:
    """The model with the pretrain batch sizes (the model's own where pretrain leaves them unset)."""
    p = model.pretrain
    assert p is not None
    return dataclasses.replace(model, micro_batch=p.micro_batch or model.micro_batch,
                               global_batch=p.global_batch or model.global_batch)


def corpus_path(study: Study, sdir: StudyDir, model: ModelConfig, root: Path | None = None) -> Path:
    """The pretraining corpus: absolute, or relative to the study's data root (`root` when it is known)."""
    assert model.pretrain is not None
    path = Path(model.pretrain.corpus)
    if path.is_absolute():
        return path
    if root is None:
        root = sdir.data if study.recipe.data.generate is not None else Path(study.recipe.data.root or ".")
    return root / path


def base_id(study: Study, model: str | ModelConfig) -> str:
    """A base task's id: the model (shape, pretrain section, backend), the tokenizer and data pin (the study
    tokenizer is trained on the study's data, the demo corpus is generated with it), the corpus when it lies
    outside the pinned data, the template (it sets the vocabulary), the max length, the optimisation and the seed."""
    m = study.model(model) if isinstance(model, str) else model
    training = base_training(study, m)
    corpus = m.pretrain.corpus if m.pretrain else ""
    return "p" + digest([identity(m), identity(study.shapes[m.name]), m.tokenizer or m.path or "study-tokenizer",
                         study.facts.fingerprint, _corpus_pin(corpus), identity(training), BASE_SEED,
                         TRAIN_CODE_VERSION], 15)


def _corpus_pin(corpus: str) -> str:
    """An absolute corpus outside the data pin: its content hash when it is there (else its path)."""
    path = Path(corpus)
    if not path.is_absolute() or not path.is_file():
        return corpus
    stat = path.stat()
    return _file_sha256(str(path), stat.st_mtime_ns, stat.st_size)


@functools.cache
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    """A file's content hash, once per (path, mtime, size) in a process (plan, status and tasks ask often)."""
    with open(path, "rb") as fh:
        return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()


@dataclass(frozen=True)
class BaseContext:
    study: Study
    sdir: StudyDir
    model: ModelConfig
    task_id: str
    output: Path  # bases/<id>/base.json


def context(task: TaskContext) -> BaseContext:
    for m in task.study.recipe.models:
        if m.pretrain is not None and base_id(task.study, m) == task.task_id:
            return BaseContext(task.study, task.sdir, m, task.task_id, task.output)
    raise KeyError(f"base task {task.task_id} pretrains no model of the study's current recipe")


def job(ctx: BaseContext, packed: Path, tokenizer: str):
    """The `TrainJob` of pretraining: `steps` optimizer steps on the packed corpus, one export at the end."""
    from hpc_instruct.train.job import TrainJob

    recipe = ctx.study.recipe
    assert ctx.model.pretrain is not None
    return TrainJob(
        trial_id=ctx.task_id, label=f"base/{ctx.model.name}", seed=BASE_SEED, epochs=1, export_epochs=(),
        model=base_model(ctx.model), training=base_training(ctx.study, ctx.model), shape=ctx.study.shapes[ctx.model.name],
        packed=packed, tokenizer=tokenizer, template=recipe.training.template, root=ctx.sdir.root,
        gpu_peak_tflops=recipe.execution.gpu_spec().peak_tflops(recipe.training.precision),
        planned_steps=ctx.model.pretrain.steps, max_steps=ctx.model.pretrain.steps, kind="base",
    )  # fmt: skip


def run(ctx: BaseContext) -> None:
    import torch.distributed as dist

    from hpc_instruct.atomic import write_json, write_marker
    from hpc_instruct.train.export import missing_exports
    from hpc_instruct.train.loop import start_distributed, train
    from hpc_instruct.train.resume import ResumeStore

    env = start_distributed()
    try:
        packed = _packed_corpus(ctx) if env.is_main else None
        box = [packed]
        if dist.get_world_size() > 1:
            dist.broadcast_object_list(box, src=0)
        the_job = job(ctx, Path(box[0][0]), box[0][1])
        result = train(the_job)
        if env.is_main:
            folder = the_job.export_dir(0)
            if missing_exports({0: folder}, the_job.trial_id):
                raise RuntimeError(f"base {ctx.task_id} of {ctx.model.name} finished training but its export "
                                   f"{folder} is missing or incomplete; run the task again")
            write_json(ctx.output, base_summary(the_job, result, box[0][2]))
            write_marker(ctx.output, ctx.task_id)
            ResumeStore(the_job.checkpoints_dir, the_job.trial_id, the_job.training.keep_last).clear()
            log.info("base %s (%s) done: %d steps, loss %.4f -> %.4f, %d tokens, %.0f s", ctx.task_id,
                     ctx.model.name, result.steps, _first_loss(the_job), result.final_loss, result.tokens,
                     result.wall_seconds)
        dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _packed_corpus(ctx: BaseContext) -> tuple[str, str, dict]:
    """(packed folder, tokenizer source, packing stats): the corpus packed with the study tokenizer, as trials'
    mixtures are (the DoIT tokens added when the template adds them, so the vocabulary is the trials')."""
    from hpc_instruct.data.packing import PackingConfig
    from hpc_instruct.data.plain_text import pack_corpus
    from hpc_instruct.data.template import add_doit_tokens
    from hpc_instruct.data.tokenizer import load_tokenizer

    study, sdir = ctx.study, ctx.sdir
    root = data_root(study, sdir)
    source = ensure_tokenizer(study, sdir, ctx.model)
    tokenizer = load_tokenizer(source)
    if study.recipe.training.template == "doit":
        add_doit_tokens(tokenizer)
    threads = max(1, int(os.environ.get("HPCI_THREADS", os.cpu_count() or 1)))
    config = PackingConfig(max_length=study.recipe.training.max_length, seed=BASE_SEED, num_proc=threads)
    packed = pack_corpus(corpus_path(study, sdir, ctx.model, root), tokenizer, config, sdir.base_packed(ctx.task_id))
    return str(packed.path), source, packed.stats.__dict__


def _first_loss(job) -> float:
    import pyarrow.parquet as pq

    try:
        return float(pq.read_table(job.log_path, columns=["loss"]).column("loss")[0].as_py())
    except (OSError, IndexError, KeyError):
        return float("nan")


def base_summary(job, result, corpus_stats: dict) -> dict:
    """base.json: what was pretrained, on what, how long, and with which code."""
    from hpc_instruct.provenance import code_version, library_versions

    return {
        "base": job.trial_id, "model": job.model.name, "steps": result.steps, "first_loss": _first_loss(job),
        "final_loss": result.final_loss, "tokens": result.tokens, "tokens_per_s": result.tokens_per_s,
        "step_seconds": result.step_seconds, "seconds": result.wall_seconds, "epochs_of_corpus": result.steps
        / result.steps_per_epoch, "rows": result.rows, "corpus": corpus_stats, "backend": result.backend,
        "device": result.device, "precision": result.precision, "layout": result.layout, "batch": result.batch,
        "seed": job.seed, "export": str(job.export_dir(0).relative_to(job.root)),
        "log": str(job.log_path.relative_to(job.root)), "pretrain": dataclasses.asdict(job.model.pretrain),
        "training": dataclasses.asdict(job.training),
        "code": {"train_code_version": TRAIN_CODE_VERSION, "code_version": code_version(),
                 "libraries": library_versions()},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }  # fmt: skip
