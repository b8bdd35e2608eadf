"""What a study is made of, once its recipe is expanded: trials, base models and eval tasks, one type each.

`hpc_instruct.recipe.expand` builds an `Expansion` from a recipe; `plan.json` stores it (`to_dict`) and
`Expansion.from_dict` reads it back, so the stages, evaluation and analysis all use these same types. An
"owner" is whoever a checkpoint belongs to: a `Trial` (trained) or a `Baseline` (an untrained base model); both
answer the questions result rows and analysis ask of an owner (label, source, seed, samples, ...).
Lookups by id are O(1): `trial(id)`, `baseline(id)`, `owner(id)`, `eval_task(id)`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

BASE_SOURCE = "base"


def canonical_json(value: Any) -> str:
    """The one JSON spelling of a mixture request or count map in result rows (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Trial:
    """One training run: a model fine-tuned on one mixture with one seed."""

    id: str
    label: str  # <arm>/<model>/seed<seed>, e.g. curated-64/llama-7b/seed0
    model: str
    size: str
    source: str  # curated | synthetic | mix | single | held_out
    mixture: dict[str, Any]  # the request: per ability a count, 'all' or {'fraction': f}; synthetic; cap
    samples_per_ability: dict[str, int]  # what will be taken (after cap / fractions / 'all')
    synthetic_samples: int
    total_samples: int
    seed: int
    nodes: int
    gpus: int
    tp: int
    pp: int
    dp: int
    steps_per_epoch: int
    epochs: int
    steps: int
    tokens: int
    checkpoints: tuple[int, ...]  # epochs at which a checkpoint is exported for evaluation
    gpu_hours: float
    also: tuple[str, ...] = ()  # labels of other sweep cells that are this same experiment (same id)

    @property
    def arm(self) -> str:
        """The sweep cell without model and seed: 'curated-64', 'single-math-256'."""
        return self.label.split("/")[0]

    @property
    def mixture_json(self) -> str:
        return canonical_json(self.mixture)


@dataclass(frozen=True)
class Baseline:
    """A base model evaluated without training (the zero point of every gain and of the transfer matrix)."""

    id: str
    model: str
    size: str

    # An owner's answers, for a model that was not trained.
    source = BASE_SOURCE
    seed = -1
    synthetic_samples = 0
    total_samples = 0
    steps_per_epoch = 0
    checkpoints = ()  # class constants, not fields: plan.json keeps a base model as (id, model, size)
    also = ()
    mixture_json = "{}"

    @property
    def label(self) -> str:
        return f"{BASE_SOURCE}/{self.model}"

    @property
    def arm(self) -> str:
        return BASE_SOURCE

    @property
    def samples_per_ability(self) -> dict[str, int]:
        return {}


Owner = Trial | Baseline


@dataclass(frozen=True)
class EvalTask:
    """One shard of one eval set on one checkpoint of a trial or of a base model."""

    id: str
    trial: str  # owner id: a trial id or a base-model id
    checkpoint: str  # epoch-003 | selected | base (hpc_instruct.study_dir's vocabulary)
    eval_set: str  # <ability>/<split>
    ability: str
    split: str
    shard: int
    shards: int
    start: int
    stop: int

    @property
    def owner(self) -> str:
        return self.trial


@dataclass(frozen=True)
class Expansion:
    trials: tuple[Trial, ...]
    baselines: tuple[Baseline, ...]
    eval_tasks: tuple[EvalTask, ...]

    def trial(self, trial_id: str) -> Trial:
        return self._trials[trial_id]

    def baseline(self, baseline_id: str) -> Baseline:
        return self._baselines[baseline_id]

    def owner(self, owner_id: str) -> Owner:
        """The trial or base model a checkpoint belongs to (KeyError naming the id when it is neither)."""
        found = self._trials.get(owner_id) or self._baselines.get(owner_id)
        if found is None:
            raise KeyError(f"{owner_id} is neither a trial nor a base model of this study")
        return found

    def eval_task(self, task_id: str) -> EvalTask:
        return self._eval_tasks[task_id]

    def owners(self) -> tuple[Owner, ...]:
        return self.trials + self.baselines

    def eval_tasks_of(self, owner_id: str) -> tuple[EvalTask, ...]:
        return self._by_owner.get(owner_id, ())

    @functools.cached_property
    def _trials(self) -> dict[str, Trial]:
        return {t.id: t for t in self.trials}

    @functools.cached_property
    def _baselines(self) -> dict[str, Baseline]:
        return {b.id: b for b in self.baselines}

    @functools.cached_property
    def _eval_tasks(self) -> dict[str, EvalTask]:
        return {e.id: e for e in self.eval_tasks}

    @functools.cached_property
    def _by_owner(self) -> dict[str, tuple[EvalTask, ...]]:
        grouped: dict[str, list[EvalTask]] = {}
        for e in self.eval_tasks:
            grouped.setdefault(e.trial, []).append(e)
        return {k: tuple(v) for k, v in grouped.items()}

    # ------------------------------------------------------------------ plan.json
    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        trials = [asdict(t) | {"checkpoints": list(t.checkpoints), "also": list(t.also)} for t in self.trials]
        return {"trials": trials, "baselines": [asdict(b) for b in self.baselines],
                "eval_tasks": [asdict(e) for e in self.eval_tasks]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Expansion:
        """Read back `to_dict` output (extra keys such as a plan's per-trial `eval_tasks` count are ignored)."""
        trials = tuple(_build(Trial, t) for t in data.get("trials", ()))
        baselines = tuple(_build(Baseline, b) for b in data.get("baselines", ()))
        tasks = tuple(_build(EvalTask, e) for e in data.get("eval_tasks", ()))
        return cls(trials, baselines, tasks)


def _build(kind, row: Mapping[str, Any]):
    values = {f.name: row[f.name] for f in fields(kind) if f.name in row}
    for name in ("checkpoints", "also"):
        if name in values:
            values[name] = tuple(values[name])
    if kind is Trial:
        values["samples_per_ability"] = {str(k): int(v) for k, v in values.get("samples_per_ability", {}).items()}
    return kind(**values)
