"""The prepare stage: data on disk, the tokenizer, then one mixture sampled, materialised and packed.

One prepare task per distinct (mixture request, seed, data pin, tokenizer). It writes
    <study>/data/                       generated demo data (once per study, when the recipe says `generate`)
    <study>/tokenizer/                  the study tokenizer for preset models (BPE trained on the study's data)
    <study>/mixtures/<task>/<content>/  the sampled mixture: samples.jsonl + manifest.json (requested,
                                        available, taken, item ids, source hashes, seed)
    <study>/mixtures/<task>/packed/     tokenized and packed rows (Arrow), cached by mixture/tokenizer/template
    <study>/mixtures/<task>/prepared.json (+ .done marker)   what the train task reads
Study-wide steps run under a file lock, so concurrent prepare tasks generate data and the tokenizer once.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hpc_instruct.atomic import write_json, write_marker
from hpc_instruct.launch.layout import StudyLayout
from hpc_instruct.recipe.schema import ModelConfig
from hpc_instruct.recipe.study import Study

log = logging.getLogger(__name__)

TEMPLATE_KINDS = {"doit": "doit", "tokenizer": "native"}


@contextmanager
def study_lock(layout: StudyLayout, name: str) -> Iterator[None]:
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.root / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def data_root(study: Study, layout: StudyLayout) -> Path:
    """The study's data in the DoIT layout: generated into <study>/data (once), or the recipe's root."""
    gen = study.recipe.data.generate
    if gen is None:
        return Path(study.recipe.data.root)
    from hpc_instruct.data.demo import write_demo_study

    with study_lock(layout, "data"):  # a no-op when the folder already holds this demo (same arguments)
        write_demo_study(layout.data, seed=gen.seed, pool_size=gen.pool_size, synthetic_size=gen.synthetic_size)
    return layout.data


def tokenizer_source(study: Study, layout: StudyLayout, model: ModelConfig) -> str:
    """The tokenizer a model trains with: its own (recipe or weights folder), else the study tokenizer."""
    if model.tokenizer:
        return model.tokenizer
    if model.path and Path(model.path).is_dir():
        return model.path
    return str(layout.root / "tokenizer")


def ensure_study_tokenizer(study: Study, layout: StudyLayout, root: Path) -> Path:
    """Train the study tokenizer on the study's data (deterministic), once, under a lock."""
    target = layout.root / "tokenizer"
    if (target / "tokenizer.json").is_file():
        return target
    from hpc_instruct.data.doit_reader import read_doit
    from hpc_instruct.data.tokenizer import build_builtin_tokenizer

    with study_lock(layout, "tokenizer"):
        if not (target / "tokenizer.json").is_file():
            data = read_doit(root, splits=(study.recipe.data.pool, "synthetic"), abilities=study.recipe.data.abilities)
            texts = [content for split in data.samples.values() for pool in split.values() for s in pool
                     for _, content in _messages(s)]
            log.info("training the study tokenizer on %d texts", len(texts))
            build_builtin_tokenizer(target, texts=texts)
    return target


def _messages(sample: Any) -> list[tuple[str, str]]:
    return [(m[0], m[1]) if isinstance(m, (tuple, list)) else (m.role, m.content) for m in sample.messages]


def mixture_spec(study: Study, trial: Any):
    """The data layer's MixtureSpec for a trial's mixture request (units carried over exactly)."""
    from hpc_instruct.data.mixtures import MixtureSpec

    pairs = []
    for ability, amount in trial.mixture["per_ability"].items():
        pairs.append((ability, float(amount["fraction"]) if isinstance(amount, dict) else amount))
    return MixtureSpec(tuple(pairs), 0, trial.mixture["synthetic"], bool(trial.mixture["cap"]), trial.seed,
                       study.recipe.data.pool, tuple(study.recipe.data.abilities))


def run_prepare(ctx) -> None:
    from hpc_instruct.data.doit_reader import read_doit
    from hpc_instruct.data.mixture_store import materialise_mixture
    from hpc_instruct.data.packing import PackingConfig, pack_mixture
    from hpc_instruct.data.template import TemplateConfig
    from hpc_instruct.data.tokenizer import load_tokenizer

    study, layout = ctx.study, ctx.layout
    trials = ctx.trials_of_mixture()
    trial = trials[0]
    model = next(m for m in study.recipe.models if m.name == trial.model)
    root = data_root(study, layout)
    source = tokenizer_source(study, layout, model)
    if source == str(layout.root / "tokenizer"):
        ensure_study_tokenizer(study, layout, root)
    data = read_doit(root, splits=(study.recipe.data.pool, "synthetic"), abilities=study.recipe.data.abilities)
    folder = layout.mixtures / ctx.task.id
    mixture = materialise_mixture(mixture_spec(study, trial), data, folder)
    tokenizer = load_tokenizer(source)
    t = study.recipe.training
    threads = max(1, int(os.environ.get("HPCI_THREADS", os.cpu_count() or 1)))
    packed = pack_mixture([s for s in _read_samples(mixture.samples_path)], tokenizer,
                          TemplateConfig(kind=TEMPLATE_KINDS[t.template]),
                          PackingConfig(max_length=t.max_length, seed=trial.seed, num_proc=threads),
                          cache_dir=folder / "packed", mixture_hash=mixture.mixture_id)
    out = ctx.output
    write_json(out, {
        "mixture_task": ctx.task.id,
        "mixture_id": mixture.mixture_id,
        "mixture_dir": str(mixture.path.relative_to(layout.root)),
        "samples": str(mixture.samples_path.relative_to(layout.root)),
        "packed": str(packed.path.relative_to(layout.root)),
        "packing_key": packed.key,
        "stats": packed.stats.__dict__,
        "tokenizer": source,
        "template": t.template,
        "trials": [tr.id for tr in trials],
    })
    write_marker(out, ctx.task.id)
    log.info("prepared %s: %d samples -> %d rows", ctx.task.id, packed.stats.num_samples, packed.stats.num_rows)


def _read_samples(path: Path) -> Iterator[dict]:
    import json

    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def prepared(layout: StudyLayout, mixture_task_id: str) -> dict:
    """What a prepare task wrote (the train task's input)."""
    import json

    return json.loads((layout.mixtures / mixture_task_id / "prepared.json").read_text())
