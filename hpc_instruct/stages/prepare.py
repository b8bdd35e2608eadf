"""The prepare stage: data on disk, the tokenizer, then one mixture sampled, materialised and packed.

One prepare task per distinct (mixture request, seed, data pin, tokenizer) (`mixture_id`). It writes
    <study>/data/                           generated demo data (once per study, when the recipe says `generate`)
    <study>/tokenizer/                      the study tokenizer for preset models (BPE trained on the study's data)
    <study>/mixtures/<task>/<content>/      the sampled mixture: samples.jsonl + manifest.json (requested,
                                            available, taken, item ids, source hashes, seed)
    <study>/mixtures/<task>/packed/         tokenized and packed rows (Arrow), cached by mixture/tokenizer/template
    <study>/mixtures/<task>/prepared.json   (+ .done marker) what the train tasks read (`read_prepared`)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.atomic import write_json, write_marker
from hpc_instruct.expansion import Trial
from hpc_instruct.hashing import digest
from hpc_instruct.recipe.study import Study
from hpc_instruct.stages.context import TaskContext
from hpc_instruct.stages.study_data import TEMPLATE_KINDS, data_root, ensure_tokenizer, mixture_spec
from hpc_instruct.study_dir import StudyDir

log = logging.getLogger(__name__)


def mixture_id(study: Study, trial: Trial) -> str:
    """A prepare task's id: the mixture request, its seed, the data pin, and the tokenizer the packing uses."""
    m = study.model(trial.model)
    tokenizer = m.tokenizer or m.path or "study-tokenizer"
    return "m" + digest([trial.mixture, trial.seed, study.facts.fingerprint, tokenizer], 15)


@dataclass(frozen=True)
class PrepareContext:
    study: Study
    sdir: StudyDir
    task_id: str
    output: Path
    trials: tuple[Trial, ...]  # the trials that train on this mixture (the first one's request is the mixture)


def context(base: TaskContext) -> PrepareContext:
    trials = tuple(t for t in base.expansion.trials if mixture_id(base.study, t) == base.task_id)
    if not trials:
        raise KeyError(f"prepare task {base.task_id} feeds no trial of the study's current plan")
    return PrepareContext(base.study, base.sdir, base.task_id, base.output, trials)


def run(ctx: PrepareContext) -> None:
    from hpc_instruct.data.doit_reader import read_doit
    from hpc_instruct.data.mixture_store import materialise_mixture
    from hpc_instruct.data.packing import PackingConfig, pack_mixture
    from hpc_instruct.data.template import TemplateConfig
    from hpc_instruct.data.tokenizer import load_tokenizer

    study, sdir = ctx.study, ctx.sdir
    trial = ctx.trials[0]
    model = study.model(trial.model)
    root = data_root(study, sdir)
    source = ensure_tokenizer(study, sdir, model)
    data = read_doit(root, splits=(study.recipe.data.pool, "synthetic"), abilities=study.recipe.data.abilities)
    folder = sdir.mixture(ctx.task_id)
    mixture = materialise_mixture(mixture_spec(study, trial), data, folder)
    tokenizer = load_tokenizer(source)
    t = study.recipe.training
    threads = max(1, int(os.environ.get("HPCI_THREADS", os.cpu_count() or 1)))
    packed = pack_mixture([s for s in _read_samples(mixture.samples_path)], tokenizer,
                          TemplateConfig(kind=TEMPLATE_KINDS[t.template]),
                          PackingConfig(max_length=t.max_length, seed=trial.seed, num_proc=threads),
                          cache_dir=sdir.packed(ctx.task_id), mixture_hash=mixture.mixture_id)
    write_json(ctx.output, {
        "mixture_task": ctx.task_id,
        "mixture_id": mixture.mixture_id,
        "mixture_dir": str(mixture.path.relative_to(sdir.root)),
        "samples": str(mixture.samples_path.relative_to(sdir.root)),
        "packed": str(packed.path.relative_to(sdir.root)),
        "packing_key": packed.key,
        "stats": packed.stats.__dict__,
        "tokenizer": source,
        "template": t.template,
        "trials": [tr.id for tr in ctx.trials],
    })
    write_marker(ctx.output, ctx.task_id)
    log.info("prepared %s: %d samples -> %d rows", ctx.task_id, packed.stats.num_samples, packed.stats.num_rows)


def read_prepared(sdir: StudyDir, prepare_id: str) -> dict:
    """What a prepare task wrote (the train task's input)."""
    return json.loads(sdir.prepared(prepare_id).read_text())


def _read_samples(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
