"""The eval stage: one shard (an item range of one eval set) on one checkpoint -> one Parquet file + marker.

Steps: resolve the checkpoint (`epoch-NNN`, `base`, or `selected` = the epoch chosen on valid, see
`hpc_instruct.evaluate.checkpoints`), read the eval set and take the shard's items, answer them
(`hpc_instruct.evaluate.answering`: ranking for rank3 items, greedy generation with answer-letter log-probs for
the rest), score them (`results.score_evidence`), and write one row per item with exactly `RESULT_SCHEMA`'s
columns, atomically, then the marker naming the EvalTask id. The launcher skips a shard whose marker names the
task; a killed shard leaves only a temporary dot-file and no marker, so it is redone and never read.

Environment: `HPCI_THREADS` sets torch's CPU threads (the local executor sets it per task);
`HPCI_SELECT_WAIT_S` (default 300) is how long a `selected` shard waits for its trial's valid results.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpc_instruct.atomic import write_marker
from hpc_instruct.expansion import EvalTask, Expansion, Owner, canonical_json
from hpc_instruct.recipe.study import Study
from hpc_instruct.stages.base import base_id
from hpc_instruct.stages.context import TaskContext
from hpc_instruct.stages.study_data import TEMPLATE_KINDS, data_root, ensure_tokenizer
from hpc_instruct.study_dir import BASE, SELECTED, StudyDir, parse_epoch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalContext:
    study: Study
    sdir: StudyDir
    expansion: Expansion  # a `selected` shard reads its trial's valid shards
    task: EvalTask
    owner: Owner
    output: Path


def context(base: TaskContext) -> EvalContext:
    task = base.expansion.eval_task(base.task_id)
    return EvalContext(base.study, base.sdir, base.expansion, task, base.expansion.owner(task.trial), base.output)


def run(ctx: EvalContext) -> Path:
    """Evaluate the shard `ctx.task` names and write its Parquet file and marker (see the module docstring).

    Several ranks (a model split over the task's GPUs, `hpc_instruct.evaluate.sharded`) all compute; rank 0
    writes. With the vLLM engine one process holds every GPU of the task.
    """
    from hpc_instruct.data.abilities import RANK3
    from hpc_instruct.evaluate.answering import answer_items
    from hpc_instruct.evaluate.engines import NATIVE, resolve_engine
    from hpc_instruct.evaluate.results import build_table, scorer_version, write_shard
    from hpc_instruct.evaluate.sets import load_eval_set
    from hpc_instruct.evaluate.sharded import barrier, world

    task, study, ev = ctx.task, ctx.study, ctx.study.recipe.evaluation
    _set_threads()
    ckpt = resolve_checkpoint(ctx)
    few_shot = ev.few_shot if task.ability in ev.out_of_domain else 0
    eval_set = load_eval_set(data_root(study, ctx.sdir), task.ability, task.split, few_shot=few_shot)
    items = eval_set.range(task.start, task.stop)
    model_cfg = study.model(ctx.owner.model)
    device = "cuda" if model_cfg.device == "cuda" and _cuda_available() else "cpu"
    if device != model_cfg.device:
        log.warning("model %s asks for CUDA but none is visible: evaluating on the CPU", ctx.owner.model)
    engine = resolve_engine(ev.engine, model_cfg.device)  # as planned (and hashed), not as this node happens to be
    kind = TEMPLATE_KINDS[study.recipe.training.template]
    shape = study.shapes.get(ctx.owner.model)
    batch = None if device == "cuda" else ev.batch_size  # on a GPU: as many rows as free memory holds
    started = time.perf_counter()
    if engine == NATIVE:
        loaded = _load_native(ckpt, kind, shape, device)
        evidence = answer_items(loaded, items, batch, ev.max_new_tokens)
        facts = loaded
    else:
        generated = any(it.format != RANK3 for it in items)
        facts, generator = _vllm(ctx, ckpt, kind, shape, device, ev.max_new_tokens) if generated else (None, None)
        loaded = _load_native(ckpt, kind, shape, device) if any(it.format == RANK3 for it in items) else None
        facts = facts or loaded
        evidence = answer_items(loaded, items, batch, ev.max_new_tokens, generator, engine)
    rank, _ = world()
    if rank == 0:
        rows = [_row(ctx, ckpt, eval_set, facts, item, e) for item, e in zip(items, evidence, strict=True)]
        digest = write_shard(build_table(rows), ctx.output)
        write_marker(ctx.output, task.id, rows=len(rows), sha256=digest, checkpoint=ckpt.name,
                     scorer_version=scorer_version(ev.mc_mode), engine=engine)
        log.info("eval %s: %s %s items %d..%d on %s (%s): %d rows in %.1f s, accuracy %.3f", task.id,
                 ctx.owner.label, task.eval_set, task.start, task.stop, ckpt.name, engine, len(rows),
                 time.perf_counter() - started, sum(r["correct"] for r in rows) / max(1, len(rows)))
    barrier()  # every rank leaves the task together, so none sees the marker early and skips a task alone
    return ctx.output


def _load_native(ckpt, kind: str, shape, device: str):
    """The model on this process's GPU (or CPU), or split over the task's ranks when there are several."""
    from hpc_instruct.evaluate.checkpoints import load_checkpoint
    from hpc_instruct.evaluate.sharded import load_tensor_parallel, world

    _, size = world()
    return load_tensor_parallel(ckpt, kind, shape, device) if size > 1 else load_checkpoint(ckpt, kind, shape, device)


def _vllm(ctx: EvalContext, ckpt, kind: str, shape, device: str, max_new_tokens: int):
    """(model facts for the rows, a `VllmEngine` over every visible GPU) for the checkpoint."""
    from hpc_instruct.evaluate.engines import EngineUnavailable, require_vllm
    from hpc_instruct.evaluate.sharded import folder_facts, materialized_folder
    from hpc_instruct.evaluate.vllm_engine import VllmEngine

    require_vllm(ctx.owner.model, ctx.study.recipe.evaluation.engine)
    if device != "cuda":
        raise EngineUnavailable(f"model {ctx.owner.model!r} is evaluated with vLLM, which needs CUDA, and none is "
                                "visible: run on a GPU node or set evaluation.engine=native")
    import torch

    folder = materialized_folder(ckpt, kind, shape)
    facts = folder_facts(folder, kind)
    length = ctx.study.recipe.training.max_length + max_new_tokens
    return facts, VllmEngine(folder, facts.template, max_new_tokens, torch.cuda.device_count(), max_model_len=length)


def resolve_checkpoint(ctx: EvalContext):
    """The `Checkpoint` the shard evaluates: the base model, an epoch's export, or the epoch selected on valid."""
    from hpc_instruct.evaluate.checkpoints import epoch_checkpoint, select_epoch, wait_for_selection
    from hpc_instruct.evaluate.selection import SELECTION_RULE

    task, owner = ctx.task, ctx.owner
    if task.checkpoint == BASE:
        return base_checkpoint(ctx.study, ctx.sdir, owner.model)
    if task.checkpoint == SELECTED:
        abilities = tuple(ctx.study.recipe.data.abilities)
        timeout = float(os.environ.get("HPCI_SELECT_WAIT_S", "300"))
        epoch, scores = wait_for_selection(
            lambda partial: select_epoch(ctx.sdir, ctx.expansion, owner, abilities, partial), timeout)
        log.info("selected epoch %d of %s by %s: %s", epoch, owner.label, SELECTION_RULE,
                 ", ".join(f"epoch {s.epoch}: {s.mean_accuracy:.4f}" for s in scores))
        return epoch_checkpoint(ctx.sdir.export(owner.id, epoch), owner, epoch, SELECTION_RULE)
    epoch = parse_epoch(task.checkpoint)
    if epoch is None:
        raise ValueError(f"eval task {task.id}: unknown checkpoint name {task.checkpoint!r}")
    return epoch_checkpoint(ctx.sdir.export(owner.id, epoch), owner, epoch)


def base_checkpoint(study: Study, sdir: StudyDir, model_name: str):
    """The untrained model `model_name`: its weights folder or .gguf file, its pretrained base export (a preset
    with `pretrain`), or the seeded init of a size preset (seed = the sweep's first seed) with the study tokenizer, which base shards train themselves if needed
    (they do not wait for the prepare stage)."""
    from hpc_instruct.evaluate.checkpoints import Checkpoint

    m = study.model(model_name)
    seed = study.recipe.sweep.seeds[0] if study.recipe.sweep.seeds else 0
    if m.pretrain is not None:
        return pretrained_base_checkpoint(sdir, base_id(study, m), m.name)
    tokenizer = ensure_tokenizer(study, sdir, m)
    if m.path:
        path = Path(m.path)
        kind = "gguf" if path.suffix == ".gguf" else "hf"
        if kind == "gguf" and not m.tokenizer:
            tokenizer = str(path)
        return Checkpoint(BASE, 0, 0, "", kind, str(path), tokenizer, seed)
    return Checkpoint(BASE, 0, 0, "", "preset", "", tokenizer, seed)


def pretrained_base_checkpoint(sdir: StudyDir, bid: str, model_name: str):
    """A preset's pretrained base (`models[].pretrain`): the base stage's export, once its task is done."""
    from hpc_instruct.atomic import is_done
    from hpc_instruct.evaluate.checkpoints import Checkpoint, CheckpointUnavailable
    from hpc_instruct.train.export_check import export_problem

    folder = sdir.base_export(bid)
    if not is_done(folder, bid) or export_problem(folder):
        raise CheckpointUnavailable(f"model {model_name!r} is pretrained by base task {bid}, whose export {folder} "
                                    "is not complete (base task not finished?)")
    # epoch and step 0: the zero point of the study's fine-tuning (base.json records the pretraining steps)
    return Checkpoint(BASE, 0, 0, "", "export", str(folder), str(folder))


def _row(ctx: EvalContext, ckpt, eval_set, loaded, item, e) -> dict[str, Any]:
    """One result row (`hpc_instruct.evaluate.result_schema`), with the provenance every row carries."""
    from hpc_instruct.evaluate.result_schema import SCHEMA_VERSION
    from hpc_instruct.evaluate.results import rule_of, score_evidence, scorer_version
    from hpc_instruct.provenance import code_version, library_versions_json

    task, owner, mode = ctx.task, ctx.owner, ctx.study.recipe.evaluation.mc_mode
    s = score_evidence(item.format, e.response, item.reference, letter_logprobs=e.letter_logprobs,
                       candidate_ppl=e.candidate_ppl, mode=mode)
    return {
        "schema_version": SCHEMA_VERSION, "study": ctx.study.recipe.study.name, "trial_id": owner.id,
        "eval_task_id": task.id, "label": owner.label, "model": owner.model, "size": owner.size,
        "num_parameters": loaded.num_parameters, "source": owner.source, "mixture": owner.mixture_json,
        "samples_per_ability": canonical_json(owner.samples_per_ability), "total_samples": owner.total_samples,
        "synthetic_samples": owner.synthetic_samples, "seed": owner.seed,
        "checkpoint": ckpt.name, "epoch": ckpt.epoch, "step": ckpt.step, "selection_rule": ckpt.selection_rule,
        "split": task.split, "eval_set": task.eval_set, "ability": task.ability, "item_id": item.uid,
        "item_index": item.index, "format": item.format, "question_format": item.question_format,
        "response": e.response, "parsed": s.parsed, "reference": item.reference, "correct": s.correct,
        "chance": s.chance, "parse_mode": rule_of(s),
        "candidate_ppl": list(e.candidate_ppl) if e.candidate_ppl is not None else None,
        "letter_logprobs": list(e.letter_logprobs) if e.letter_logprobs is not None else None,
        "prompt_tokens": e.prompt_tokens, "response_tokens": e.response_tokens, "latency_s": e.latency_s,
        "data_fingerprint": f"{ctx.study.facts.fingerprint}|{eval_set.name}:sha256:{eval_set.sha256}",
        "template_hash": loaded.template_hash, "tokenizer_hash": loaded.tokenizer_hash,
        "scorer_version": scorer_version(mode), "code_version": code_version(),
        "library_versions": library_versions_json(), "engine": e.engine,
    }  # fmt: skip


def _set_threads() -> None:
    threads = os.environ.get("HPCI_THREADS")
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
