"""The study's data and tokenizer on disk, shared by the prepare, train and eval stages.

Study-wide steps (generating the demo data, training the study tokenizer) run under a file lock in the study
directory, so concurrent tasks do them once.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hpc_instruct.expansion import Trial
from hpc_instruct.recipe.study import Study
from hpc_instruct.study_dir import StudyDir
from hpc_instruct.train.config import ModelConfig

log = logging.getLogger(__name__)

TEMPLATE_KINDS = {"doit": "doit", "tokenizer": "native"}  # training.template -> TemplateConfig.kind


@contextmanager
def shared_step(sdir: StudyDir, name: str) -> Iterator[None]:
    sdir.root.mkdir(parents=True, exist_ok=True)
    with open(sdir.lock(name), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def data_root(study: Study, sdir: StudyDir) -> Path:
    """The study's data in the DoIT release layout: generated into <study>/data (once), or the recipe's root."""
    gen = study.recipe.data.generate
    if gen is None:
        return Path(study.recipe.data.root)
    from hpc_instruct.data.demo import write_demo_study

    with shared_step(sdir, "data"):  # a no-op when the folder already holds this demo (same arguments)
        write_demo_study(sdir.data, seed=gen.seed, pool_size=gen.pool_size, synthetic_size=gen.synthetic_size)
    return sdir.data


def tokenizer_source(sdir: StudyDir, model: ModelConfig) -> str:
    """The tokenizer a model trains with: its own (recipe or weights folder), else the study tokenizer."""
    if model.tokenizer:
        return model.tokenizer
    if model.path and Path(model.path).is_dir():
        return model.path
    return str(sdir.tokenizer)


def ensure_tokenizer(study: Study, sdir: StudyDir, model: ModelConfig) -> str:
    """`tokenizer_source`, training the study tokenizer on the study's data first when that is the source
    (deterministic, once, under a lock)."""
    source = tokenizer_source(sdir, model)
    target = sdir.tokenizer
    if source != str(target) or (target / "tokenizer.json").is_file():
        return source
    from hpc_instruct.data.doit_reader import read_doit
    from hpc_instruct.data.tokenizer import build_builtin_tokenizer

    root = data_root(study, sdir)
    with shared_step(sdir, "tokenizer"):
        if not (target / "tokenizer.json").is_file():
            data = read_doit(root, splits=(study.recipe.data.pool, "synthetic"), abilities=study.recipe.data.abilities)
            texts = [content for split in data.samples.values() for pool in split.values() for s in pool
                     for _, content in _messages(s)]
            log.info("training the study tokenizer on %d texts", len(texts))
            build_builtin_tokenizer(target, texts=texts)
    return source


def _messages(sample: Any) -> list[tuple[str, str]]:
    return [(m[0], m[1]) if isinstance(m, (tuple, list)) else (m.role, m.content) for m in sample.messages]


def mixture_spec(study: Study, trial: Trial):
    """The data library's MixtureSpec for a trial's mixture request (units carried over exactly)."""
    from hpc_instruct.data.mixtures import MixtureSpec

    pairs = []
    for ability, amount in trial.mixture["per_ability"].items():
        pairs.append((ability, float(amount["fraction"]) if isinstance(amount, dict) else amount))
    return MixtureSpec(tuple(pairs), 0, trial.mixture["synthetic"], bool(trial.mixture["cap"]), trial.seed,
                       study.recipe.data.pool, tuple(study.recipe.data.abilities))
