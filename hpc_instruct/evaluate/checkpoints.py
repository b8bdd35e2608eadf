"""Which weights an eval task evaluates, and loading them as a transformers model with the study's template.

Checkpoint names in eval tasks:
- `epoch-NNN`: the HF folder the train task exported for that epoch (`StudyDir.export`, with tokenizer files;
  complete when its `<folder>.done` marker exists).
- `base`: the untrained model (the eval stage resolves it, `hpc_instruct.stages.eval.base_checkpoint`). A
  model with `path` is read from there (an HF folder, or a `.gguf` file, dequantised to fp32); a size preset is
  the seeded random init that training starts from (`preset_model`), with the study tokenizer. When the DoIT
  template adds `<user>/<assistant>/<eot>` to a base tokenizer, the new embedding and output rows are the mean
  of the existing rows, as training grows them, so base and epoch 0 of training agree.
- `selected`: the epoch chosen on the valid split (`select_epoch`, with `hpc_instruct.evaluate.selection`'s
  rule), then loaded as `epoch-NNN`.

Loaded models are cached in the process (one at a time): an array element that runs several shards of one
checkpoint loads it once. A model larger than one GPU is split over the task's GPUs by tensor parallelism
(`hpc_instruct.evaluate.sharded`), from the same HF export.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hpc_instruct.atomic import is_done, read_marker
from hpc_instruct.evaluate.results import read_shard
from hpc_instruct.evaluate.selection import best_epoch
from hpc_instruct.expansion import EvalTask, Expansion, Trial
from hpc_instruct.study_dir import StudyDir, epoch_name, parse_epoch
from hpc_instruct.train.export_check import export_problem

log = logging.getLogger(__name__)



class CheckpointUnavailable(RuntimeError):
    """The weights an eval task needs are not there yet (training not exported, valid results incomplete)."""


@dataclass(frozen=True)
class Checkpoint:
    """What to load for an eval task, and what its rows record about it."""

    name: str  # epoch-003 | base (for `selected`: the chosen epoch's name)
    epoch: int  # 0 for base
    step: int
    selection_rule: str  # "" unless the epoch was selected on valid
    kind: str  # export | hf | gguf | preset
    path: str  # folder or file ("" for a preset init)
    tokenizer: str  # tokenizer source (a folder, a .gguf file)
    seed: int = 0  # preset init only


@dataclass(frozen=True)
class EpochScore:
    """Mean valid accuracy of one epoch over the study's abilities (what selection compares)."""

    epoch: int
    mean_accuracy: float
    per_ability: tuple[tuple[str, float], ...]


def epoch_checkpoint(folder: Path, trial: Trial, epoch: int, rule: str = "") -> Checkpoint:
    """The exported HF folder of `trial` at `epoch`; raises CheckpointUnavailable until it is complete."""
    if not is_done(folder, trial.id):  # the train task writes the folder, then its marker naming the trial
        raise CheckpointUnavailable(
            f"trial {trial.label} ({trial.id}) has no complete export for epoch {epoch} at {folder} "
            "(train task not finished?)"
        )
    problem = export_problem(folder)
    if problem:  # marked done, yet the weights are not all there: its train task must run again
        raise CheckpointUnavailable(f"trial {trial.label} ({trial.id}): {problem}; `hpci run` (or `hpci resubmit`) "
                                    "trains it again")
    facts = read_marker(folder) or {}
    step = int(facts.get("step", epoch * trial.steps_per_epoch))
    return Checkpoint(epoch_name(epoch), epoch, step, rule, "export", str(folder), str(folder))


def select_epoch(
    sdir: StudyDir, expansion: Expansion, trial: Trial, abilities: tuple[str, ...], partial: bool = False
) -> tuple[int, list[EpochScore]]:
    """The epoch with the highest mean valid accuracy over `abilities`; ties go to the later epoch.

    Every planned valid shard of the trial must be complete (CheckpointUnavailable otherwise), so the writer
    chooses what the analysis will recompute. With `partial`, epochs whose valid shards are all complete
    compete and the others are left out (the analysis then flags a disagreement if a left-out epoch wins).
    Returns the chosen epoch and every competing epoch's score (for the log).
    """
    by_epoch: dict[int, list[EvalTask]] = {}
    for e in expansion.eval_tasks_of(trial.id):
        epoch = parse_epoch(e.checkpoint)
        if e.split == "valid" and epoch is not None and e.ability in abilities:
            by_epoch.setdefault(epoch, []).append(e)
    scores: list[EpochScore] = []
    missing: list[str] = []
    for epoch, tasks in sorted(by_epoch.items()):
        paths = [
            sdir.eval_part(e.trial, e.checkpoint, e.ability, e.split, e.shard, e.shards) for e in tasks
        ]
        absent = [str(p) for p, e in zip(paths, tasks, strict=True) if not is_done(p, e.id)]
        if absent:
            missing.extend(absent)
            continue
        correct: dict[str, list[int]] = {}
        for p in paths:
            table = read_shard(p, ["ability", "correct"])
            for ability, n, k in _counts(table):
                c = correct.setdefault(ability, [0, 0])
                c[0], c[1] = c[0] + k, c[1] + n
        per_ability = tuple(sorted((a, k / n if n else 0.0) for a, (k, n) in correct.items()))
        mean = sum(v for _, v in per_ability) / len(per_ability) if per_ability else 0.0
        scores.append(EpochScore(epoch, mean, per_ability))
    if not scores or (missing and not partial):
        raise CheckpointUnavailable(
            f"cannot select a checkpoint of trial {trial.label} ({trial.id}): valid results incomplete "
            f"({len(missing)} valid shards missing, e.g. {missing[:2]}); run its valid eval tasks first"
        )
    epoch, _ = best_epoch((s.epoch, s.mean_accuracy) for s in scores)
    return epoch, scores


def _counts(table) -> list[tuple[str, int, int]]:
    """(ability, items, correct) per ability of a table with `ability` and `correct` columns."""
    grouped = table.group_by("ability").aggregate([("correct", "count"), ("correct", "sum")])
    return [
        (a, int(n), int(k or 0))
        for a, n, k in zip(
            grouped["ability"].to_pylist(),
            grouped["correct_count"].to_pylist(),
            grouped["correct_sum"].to_pylist(),
            strict=True,
        )
    ]


def wait_for_selection(
    select: Callable[[bool], tuple[int, list[EpochScore]]], timeout_s: float, poll_s: float = 5.0
) -> tuple[int, list[EpochScore]]:
    """`select(partial=False)` until the trial's valid results are complete or `timeout_s` passes, then
    `select(partial=True)` once. (The local executor may start a `selected` shard while the last valid shard
    of its trial still runs; Slurm orders them by dependency, so there the first call succeeds.)"""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return select(False)
        except CheckpointUnavailable:
            if time.monotonic() >= deadline:
                log.warning(
                    "valid results still incomplete after %.0f s: selecting among complete epochs", timeout_s
                )
                return select(True)
            time.sleep(poll_s)


# ------------------------------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class LoadedModel:
    model: Any
    tokenizer: Any
    template: Any  # hpc_instruct.data.template.ChatTemplate
    num_parameters: int
    tokenizer_hash: str
    template_hash: str


def load_checkpoint(ckpt: Checkpoint, template_kind: str, shape=None, device: str = "cpu") -> LoadedModel:
    """Model, tokenizer and template for `ckpt` (cached: the same arguments return the same objects).

    Args:
        template_kind: "doit" or "native" (`hpc_instruct.data.template.TemplateConfig.kind`).
        shape: the study's `ModelShape` of the model (needed for a preset init only).
        device: "cpu" or "cuda"; CUDA loads bf16 weights, CPU fp32.
    """
    return _load(ckpt, template_kind, shape, device)


@functools.lru_cache(maxsize=1)
def _load(ckpt: Checkpoint, template_kind: str, shape, device: str) -> LoadedModel:
    import torch

    from hpc_instruct.data.template import ChatTemplate, TemplateConfig
    from hpc_instruct.data.tokenizer import load_tokenizer, tokenizer_hash

    started = time.perf_counter()
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = load_tokenizer(ckpt.tokenizer)
    template = ChatTemplate(tokenizer, TemplateConfig(kind=template_kind))  # may add the DoIT tokens
    if ckpt.kind == "preset":
        model = preset_model(shape, len(tokenizer), ckpt.seed)
    else:
        model = _pretrained(ckpt, dtype)
        _grow_vocabulary(model, len(tokenizer))
    model = model.to(device=device, dtype=dtype).eval()
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    log.info(
        "loaded %s %s (%s, %.1fM parameters) in %.1f s",
        ckpt.kind,
        ckpt.name,
        ckpt.path or "preset init",
        params / 1e6,
        time.perf_counter() - started,
    )
    return LoadedModel(model, tokenizer, template, params, tokenizer_hash(tokenizer), template.template_hash)


def _pretrained(ckpt: Checkpoint, dtype) -> Any:
    import transformers
    from transformers import AutoModelForCausalLM

    # transformers >= 4.56 names the argument `dtype`; older releases `torch_dtype`.
    key = (
        "dtype"
        if tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (4, 56)
        else "torch_dtype"
    )
    path = Path(ckpt.path)
    if ckpt.kind == "gguf":
        return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, **{key: dtype})
    return AutoModelForCausalLM.from_pretrained(str(path), **{key: dtype})


def _grow_vocabulary(model: Any, vocab: int) -> None:
    """Give tokens the template added to a base tokenizer the mean embedding/output row (as training does)."""
    import torch

    rows = model.get_input_embeddings().weight.shape[0]
    if vocab <= rows:
        return
    with torch.no_grad():
        old_in = model.get_input_embeddings().weight.detach().clone()
        old_out = (
            model.get_output_embeddings().weight.detach().clone() if model.get_output_embeddings() else None
        )
        model.resize_token_embeddings(vocab, mean_resizing=False)
        model.get_input_embeddings().weight[rows:] = old_in.float().mean(0).to(old_in.dtype)
        out = model.get_output_embeddings()
        if (
            old_out is not None
            and out is not None
            and out.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
        ):
            out.weight[rows:] = old_out.float().mean(0).to(old_out.dtype)


def preset_model(shape, vocab: int, seed: int) -> Any:
    """The seeded random init of a size preset, as an HF model (the weights training starts from)."""
    import torch
    from transformers import AutoModelForCausalLM

    from hpc_instruct.train.megatron.convert import hf_config
    from hpc_instruct.train.weights import initial_weights

    if shape is None:
        raise ValueError("a preset base model needs the study's model shape")
    shape = replace(shape, vocab_size=vocab)
    model = AutoModelForCausalLM.from_config(hf_config(shape, torch.float32))
    weights = dict(initial_weights(shape, seed, None))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = {"lm_head.weight"} if shape.tie_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(
            f"preset init does not match the HF model: missing {missing}, unexpected {unexpected}"
        )
    if shape.tie_embeddings:
        model.tie_weights()
    return model


def clear_cache() -> None:
    """Forget the cached model (tests; a long-lived process that evaluates many checkpoints)."""
    _load.cache_clear()
