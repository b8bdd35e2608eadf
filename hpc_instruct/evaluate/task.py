"""The eval task: one shard (an item range of one eval set) on one checkpoint -> one Parquet file + marker.

    python -m hpc_instruct.launch.entry eval STUDY_DIR TASK_ID

Steps: resolve the checkpoint (`epoch-NNN`, `base`, or `selected` = the epoch chosen on valid, see
`checkpoints`), read the eval set and take the shard's items, answer them (`inference`: ranking for rank3
items, greedy generation with answer-letter log-probs for the rest), score them (`results.score_evidence`),
and write one row per item with exactly `RESULT_SCHEMA`'s columns, atomically, then the marker naming the
EvalTask id. The entry point skips a shard whose marker names the task; a killed shard leaves only a
temporary dot-file and no marker, so it is redone and never read.

Environment: `HPCI_THREADS` sets torch's CPU threads (the local executor sets it per task);
`HPCI_SELECT_WAIT_S` (default 300) is how long a `selected` shard waits for its trial's valid results.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from hpc_instruct.atomic import write_marker
from hpc_instruct.data.abilities import RANK3
from hpc_instruct.data.prepare import TEMPLATE_KINDS  # training.template -> TemplateConfig.kind
from hpc_instruct.evaluate.checkpoints import (
    BASE,
    SELECTED,
    SELECTION_RULE,
    Checkpoint,
    LoadedModel,
    base_checkpoint,
    epoch_checkpoint,
    load_checkpoint,
    select_epoch,
    wait_for_selection,
)
from hpc_instruct.evaluate.result_schema import SCHEMA_VERSION
from hpc_instruct.evaluate.results import build_table, rule_of, score_evidence, scorer_version, write_shard
from hpc_instruct.evaluate.sets import LETTER_FORMATS, EvalItem, EvalSet, load_eval_set

log = logging.getLogger(__name__)

LIBRARIES = ("torch", "transformers", "tokenizers", "accelerate", "megatron-core", "pyarrow", "numpy")


@dataclass(frozen=True)
class Owner:
    """Whose checkpoint a shard evaluates: a trained trial or an untrained base model, as rows record it."""

    id: str
    label: str
    model: str
    size: str
    source: str
    mixture: str  # JSON
    samples_per_ability: str  # JSON
    total_samples: int
    synthetic_samples: int
    seed: int
    trial: Any = None  # the Trial, None for base models


@dataclass(frozen=True)
class Evidence:
    """What the model produced for one item."""

    response: str
    letter_logprobs: tuple[float, ...] | None
    candidate_ppl: tuple[float, ...] | None
    prompt_tokens: int
    response_tokens: int
    latency_s: float


def run_eval(ctx) -> Path:
    """Evaluate the shard `ctx.task` names and write its Parquet file and marker (see the module docstring)."""
    task = ctx.eval_task()
    study, ev = ctx.study, ctx.study.recipe.evaluation
    _set_threads()
    owner = _owner(ctx, task.trial)
    ckpt = _resolve(ctx, task, owner)
    eval_set = _eval_set(ctx, task)
    items = eval_set.range(task.start, task.stop)
    model_cfg = next(m for m in study.recipe.models if m.name == owner.model)
    device = "cuda" if model_cfg.device == "cuda" and _cuda_available() else "cpu"
    if device != model_cfg.device:
        log.warning("model %s asks for CUDA but none is visible: evaluating on the CPU", owner.model)
    loaded = load_checkpoint(
        ckpt, TEMPLATE_KINDS[study.recipe.training.template], study.shapes.get(owner.model), device
    )
    started = time.perf_counter()
    evidence = answer_items(loaded, items, ev.batch_size, ev.max_new_tokens)
    rows = [
        _row(ctx, task, owner, ckpt, eval_set, loaded, item, ev_item, ev.mc_mode)
        for item, ev_item in zip(items, evidence, strict=True)
    ]
    digest = write_shard(build_table(rows), ctx.output)
    write_marker(
        ctx.output,
        task.id,
        rows=len(rows),
        sha256=digest,
        checkpoint=ckpt.name,
        scorer_version=scorer_version(ev.mc_mode),
    )
    log.info(
        "eval %s: %s %s items %d..%d on %s: %d rows in %.1f s, accuracy %.3f",
        task.id,
        owner.label,
        task.eval_set,
        task.start,
        task.stop,
        ckpt.name,
        len(rows),
        time.perf_counter() - started,
        sum(r["correct"] for r in rows) / max(1, len(rows)),
    )
    return ctx.output


def answer_items(
    loaded: LoadedModel, items: tuple[EvalItem, ...] | list[EvalItem], batch_size: int, max_new_tokens: int
) -> list[Evidence]:
    """Rank the rank3 items and generate for the others, in two batched passes; evidence in item order."""
    from hpc_instruct.evaluate.inference import Inference, InferenceConfig

    engine = Inference(
        loaded.model, loaded.template, InferenceConfig(batch_size=batch_size, max_new_tokens=max_new_tokens)
    )
    out: list[Evidence | None] = [None] * len(items)
    ranked = [i for i, it in enumerate(items) if it.format == RANK3]
    generated = [i for i, it in enumerate(items) if it.format != RANK3]
    if ranked:
        results = engine.rank([items[i].prompt for i in ranked], [items[i].candidates for i in ranked])
        for i, r in zip(ranked, results, strict=True):
            out[i] = Evidence("", None, r.perplexities, r.prompt_tokens, 0, r.latency_s)
    if generated:
        letters = [items[i].option_letters if items[i].format in LETTER_FORMATS else "" for i in generated]
        results = engine.generate([items[i].prompt for i in generated], letters)
        for i, g in zip(generated, results, strict=True):
            out[i] = Evidence(
                g.text, g.letter_logprobs or None, None, g.prompt_tokens, g.response_tokens, g.latency_s
            )
    return [e for e in out if e is not None]


# --------------------------------------------------------------------------------------------- resolution
def _owner(ctx, owner_id: str) -> Owner:
    trial = next((t for t in ctx.expansion.trials if t.id == owner_id), None)
    if trial is not None:
        return Owner(
            trial.id,
            trial.label,
            trial.model,
            trial.size,
            trial.source,
            _json(trial.mixture),
            _json(trial.samples_per_ability),
            trial.total_samples,
            trial.synthetic_samples,
            trial.seed,
            trial,
        )
    b = next(b for b in ctx.expansion.baselines if b.id == owner_id)
    return Owner(b.id, f"base/{b.model}", b.model, b.size, "base", "{}", "{}", 0, 0, -1)


def _resolve(ctx, task, owner: Owner) -> Checkpoint:
    if task.checkpoint == BASE:
        return base_checkpoint(ctx.study, ctx.layout, owner.model)
    if task.checkpoint == SELECTED:
        abilities = tuple(ctx.study.recipe.data.abilities)
        timeout = float(os.environ.get("HPCI_SELECT_WAIT_S", "300"))
        epoch, scores = wait_for_selection(
            lambda partial: select_epoch(ctx.layout, ctx.expansion, owner.trial, abilities, partial), timeout
        )
        log.info(
            "selected epoch %d of %s by %s: %s",
            epoch,
            owner.label,
            SELECTION_RULE,
            ", ".join(f"epoch {s.epoch}: {s.mean_accuracy:.4f}" for s in scores),
        )
        return epoch_checkpoint(ctx.layout, owner.trial, epoch, SELECTION_RULE)
    return epoch_checkpoint(ctx.layout, owner.trial, int(task.checkpoint.split("-")[1]))


def _eval_set(ctx, task) -> EvalSet:
    from hpc_instruct.data.prepare import data_root

    ev = ctx.study.recipe.evaluation
    few_shot = ev.few_shot if task.ability in ev.out_of_domain else 0
    return load_eval_set(data_root(ctx.study, ctx.layout), task.ability, task.split, few_shot=few_shot)


# ------------------------------------------------------------------------------------------------ rows
def _row(
    ctx,
    task,
    owner: Owner,
    ckpt: Checkpoint,
    eval_set: EvalSet,
    loaded: LoadedModel,
    item: EvalItem,
    e: Evidence,
    mode: str,
) -> dict[str, Any]:
    s = score_evidence(
        item.format,
        e.response,
        item.reference,
        letter_logprobs=e.letter_logprobs,
        candidate_ppl=e.candidate_ppl,
        mode=mode,
    )
    return {
        "schema_version": SCHEMA_VERSION, "study": ctx.study.recipe.study.name, "trial_id": owner.id,
        "eval_task_id": task.id, "label": owner.label, "model": owner.model, "size": owner.size,
        "num_parameters": loaded.num_parameters, "source": owner.source, "mixture": owner.mixture,
        "samples_per_ability": owner.samples_per_ability, "total_samples": owner.total_samples,
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
        "library_versions": library_versions(),
    }  # fmt: skip


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# ------------------------------------------------------------------------------------------ provenance
@functools.cache
def code_version() -> str:
    """`<package version>+git.<revision>[.dirty]` from the checkout, or `+code.<hash>` of the package files
    when it runs from a code snapshot (`hpc_instruct.launch.snapshot`) or an installed copy."""
    import hpc_instruct
    from hpc_instruct.launch.snapshot import code_hash

    package = Path(hpc_instruct.__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=package,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "diff", "--quiet", "HEAD", "--", "."], cwd=package, capture_output=True, timeout=30
            ).returncode
            != 0
        )
        inside = (
            subprocess.run(
                ["git", "ls-files", "--error-unmatch", "__init__.py"],
                cwd=package,
                capture_output=True,
                timeout=10,
            ).returncode
            == 0
        )
        if rev and inside:
            return (
                f"{hpc_instruct.__version__}+git.{rev}{'.dirty' if dirty else ''}.code.{code_hash(package)}"
            )
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{hpc_instruct.__version__}+code.{code_hash(package)}"


@functools.cache
def library_versions() -> str:
    """JSON of the versions that can change a result: python, torch, transformers, ... (absent: omitted)."""
    versions = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return json.dumps(versions, sort_keys=True)


def _set_threads() -> None:
    threads = os.environ.get("HPCI_THREADS")
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
