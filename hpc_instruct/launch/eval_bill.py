"""The eval bill: GPU-hours of every eval task of a plan, by part, and what the knobs that move it most change.

Each eval task costs `evaluate.throughput.shard_cost` on the GPUs it holds (`tasks.eval_gpus`), with the
engine it resolves to, its item count, and the mean prompt / reply / candidate lengths of its eval set:
measured on the eval files when the data is there (characters / CHARS_PER_TOKEN), else the stated
assumptions below. Parts: base models, valid (every evaluated checkpoint), test, out-of-domain.
Knobs: `evaluation.checkpoints`, `evaluation.test_on`, `evaluation.max_new_tokens`, and `evaluation.engine`
(each re-planned alone).
Torch-free: `hpci plan` runs on a login node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from hpc_instruct.data.abilities import MATH, MC, MULTI_SELECT, RANK3, REGISTRY
from hpc_instruct.evaluate.engines import resolve_engine
from hpc_instruct.evaluate.throughput import Hardware, SetLengths, shard_cost
from hpc_instruct.expansion import BASE_SOURCE, Expansion
from hpc_instruct.launch.tasks import eval_gpus
from hpc_instruct.recipe.data_facts import eval_file
from hpc_instruct.recipe.study import Study
from hpc_instruct.study_dir import StudyDir

CHARS_PER_TOKEN = 1.5  # Chinese text with LLaMA-Chinese / Qwen tokenizers (about 1.3-1.8)
ASSUMED_REPLY = {MC: 2, MULTI_SELECT: 4, MATH: 300}  # tokens of a reference reply; other formats: 8
ASSUMED_PROMPT_SHARE = 0.6  # of an ability's mean training-sample tokens (the registry's planning figure)
LETTERS = {MC: 4, MULTI_SELECT: 4}


@dataclass(frozen=True)
class EvalBill:
    gpu_hours: float
    by_part: dict[str, float]
    by_job: dict[str, float]  # eval array job (resource group) -> GPU-hours
    engines: dict[str, str]  # model -> engine
    lengths_source: str
    knobs: dict[str, float]  # "evaluation.checkpoints=last" -> GPU-hours with that change alone


def set_lengths(study: Study) -> dict[str, SetLengths]:
    """Mean lengths per eval set ("ability/split"), measured on the files where present."""
    root = _data_root(study)
    out = {}
    for key in study.facts.eval_sizes:
        ability, split = key.split("/")
        path = eval_file(root, ability, split) if root is not None else None
        measured = _measure(path, ability) if path is not None and path.is_file() else None
        out[key] = measured or _assumed(ability, study.recipe.training.max_length)
    return out


def eval_bill(study: Study, ex: Expansion, with_knobs: bool = True) -> EvalBill:
    lengths = set_lengths(study)
    total, parts, jobs = _sum(study, ex, lengths)
    sources = {v.source for v in lengths.values()}
    engines = {m.name: resolve_engine(study.recipe.evaluation.engine, m.device) for m in study.recipe.models}
    knobs: dict[str, float] = {}
    if with_knobs:
        ev = study.recipe.evaluation
        changes = {"evaluation.checkpoints=last": {"checkpoints": "last"},
                   f"evaluation.test_on={'all' if ev.test_on == 'selected' else 'selected'}":
                       {"test_on": "all" if ev.test_on == "selected" else "selected"},
                   f"evaluation.max_new_tokens={max(1, ev.max_new_tokens // 2)}":
                       {"max_new_tokens": max(1, ev.max_new_tokens // 2)}}
        if any(e != "native" for e in engines.values()):
            changes["evaluation.engine=native"] = {"engine": "native"}
        for name, change in changes.items():
            if all(getattr(ev, k) == v for k, v in change.items()):
                continue
            other = replace(study, recipe=replace(study.recipe, evaluation=replace(ev, **change)))
            knobs[name] = _sum(other, other.expand(), lengths)[0]
    return EvalBill(total, parts, jobs, engines, " + ".join(sorted(sources)), knobs)


def _sum(study: Study, ex: Expansion, lengths: dict[str, SetLengths]) -> tuple[float, dict[str, float], dict[str, float]]:
    from hpc_instruct.launch.tasks import eval_group

    ev, gpu = study.recipe.evaluation, study.recipe.execution.gpu_spec("eval")
    ood = set(ev.out_of_domain)
    per_model = {}
    for m in study.recipe.models:
        shape, gpus = study.shapes[m.name], eval_gpus(study, m.name)
        engine = resolve_engine(ev.engine, m.device)
        per_model[m.name] = (shape, gpus, engine, eval_group(gpus, engine))
    cache: dict[tuple, float] = {}
    parts = {"base": 0.0, "valid": 0.0, "test": 0.0, "out-of-domain": 0.0}
    jobs: dict[str, float] = {}
    for e in ex.eval_tasks:
        owner = ex.owner(e.trial)
        shape, gpus, engine, group = per_model[owner.model]
        if not gpus:
            continue  # CPU models cost no GPU-hours
        key = (owner.model, e.eval_set, e.stop - e.start)
        if key not in cache:
            kv = 2 * shape.num_layers * shape.num_query_groups * shape.head_dim * 2
            hw = Hardware(gpus, gpu.bf16_tflops, gpu.memory_tbps)
            cache[key] = shard_cost(e.stop - e.start, lengths[e.eval_set], shape.num_parameters, kv, hw, engine,
                                    ev.batch_size, ev.max_new_tokens).gpu_hours
        part = ("base" if owner.source == BASE_SOURCE else "out-of-domain" if e.ability in ood else e.split)
        parts[part] += cache[key]
        jobs[f"eval-{group}"] = jobs.get(f"eval-{group}", 0.0) + cache[key]
    return sum(parts.values()), parts, jobs


def _data_root(study: Study) -> Path | None:
    data = study.recipe.data
    if data.generate is not None:
        return StudyDir(study.directory).root / "data"
    return Path(data.root) if data.root else None


def _measure(path: Path, ability: str) -> SetLengths | None:
    """Mean prompt, reference reply and candidate lengths of one eval file (JSON lines, DoIT record format)."""
    prompt = reply = cands = 0.0
    ranked = n = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        messages = record.get("messages") or []
        prompt += sum(len(str(m.get("content", ""))) for m in messages[:-1])
        reply += len(str(messages[-1].get("content", ""))) if messages else 0
        cands += sum(len(str(c)) for c in record.get("choices") or ())
        ranked += record.get("question_format") == 1
        n += 1
    if not n:
        return None
    formats = REGISTRY[ability].formats if ability in REGISTRY else ()
    letters = max((LETTERS.get(f, 0) for f in formats), default=0)
    return SetLengths(prompt / n / CHARS_PER_TOKEN, reply / n / CHARS_PER_TOKEN, cands / n / CHARS_PER_TOKEN,
                      letters, ranked > n / 2, "measured")


def _assumed(ability: str, max_length: int) -> SetLengths:
    a = REGISTRY.get(ability)
    fmt = a.formats[0] if a is not None else MC
    tokens = a.mean_tokens if a is not None else 300
    prompt = min(max_length, ASSUMED_PROMPT_SHARE * tokens)
    if fmt == RANK3:
        return SetLengths(prompt, 0.0, 3 * (1 - ASSUMED_PROMPT_SHARE) * tokens, 0, True)
    return SetLengths(prompt, ASSUMED_REPLY.get(fmt, 8), 0.0, LETTERS.get(fmt, 0), False)
