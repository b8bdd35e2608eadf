"""What a study should contain: its planned trials, base models and eval shards, read from `plan.json` or an
`Expansion`.

Aggregation checks the result files against this, never the other way round: a shard that is on disk but not
in the plan (an older recipe, a copy) is reported and ignored, and a planned shard that is absent or whose
completion marker names another task id is reported as missing or stale. Both sources give the same `StudyPlan`,
so tests and the simulator can work from an in-memory `Expansion` while the CLI reads the study directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hpc_instruct.data.abilities import REGISTRY
from hpc_instruct.errors import UserError
from hpc_instruct.launch.layout import StudyLayout

BASE_CHECKPOINT = "base"
SELECTED_CHECKPOINT = "selected"


@dataclass(frozen=True)
class PlannedTrial:
    """A trained trial or an untrained base model (source 'base'), as far as analysis needs to know it."""

    id: str
    label: str  # e.g. curated-64/llama-7b/seed0 or base/llama-7b
    also: tuple[str, ...]  # other sweep labels that are this same experiment
    model: str
    size: str
    source: str  # curated | synthetic | mix | single | base
    samples_per_ability: Mapping[str, int]
    synthetic_samples: int
    total_samples: int
    seed: int  # -1 for base models
    checkpoints: tuple[int, ...]  # epochs exported for evaluation ((), for base models)
    steps_per_epoch: int = 0
    mixture: str = "{}"  # the mixture request as canonical JSON

    @property
    def arm(self) -> str:
        """The sweep cell without model and seed: 'curated-64', 'single-math-256', 'base'."""
        return self.label.split("/")[0]


@dataclass(frozen=True)
class PlannedShard:
    """One planned eval task: a shard of an eval set on a checkpoint ('epoch-003', 'selected', 'base')."""

    task_id: str
    owner: str
    checkpoint: str
    ability: str
    split: str
    shard: int
    shards: int
    start: int
    stop: int

    @property
    def eval_set(self) -> str:
        return f"{self.ability}/{self.split}"

    def path(self, layout: StudyLayout) -> Path:
        return layout.eval_part(
            self.owner, self.checkpoint, self.ability, self.split, self.shard, self.shards
        )


@dataclass(frozen=True)
class StudyPlan:
    """Everything analysis expects of a study; `abilities` are trainable, `out_of_domain` are test-only sets."""

    study: str
    fingerprint: str
    abilities: tuple[str, ...]
    out_of_domain: tuple[str, ...]
    trials: tuple[PlannedTrial, ...]
    shards: tuple[PlannedShard, ...]
    pool_sizes: Mapping[str, int]
    synthetic_pool: int

    def trial(self, trial_id: str) -> PlannedTrial:
        return self._by_id()[trial_id]

    def _by_id(self) -> dict[str, PlannedTrial]:
        return {t.id: t for t in self.trials}

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in ("valid", "test") if any(p.split == s for p in self.shards))

    @property
    def test_on_selected(self) -> bool:
        return any(p.checkpoint == SELECTED_CHECKPOINT for p in self.shards)

    def set_sizes(self) -> dict[str, int]:
        """Items per eval set ('<ability>/<split>'), from the shard ranges."""
        sizes: dict[str, int] = {}
        for p in self.shards:
            sizes[p.eval_set] = max(sizes.get(p.eval_set, 0), p.stop)
        return sizes


def load_plan(study_dir: str | os.PathLike) -> StudyPlan:
    """Read `<study>/plan.json` (written by `hpci plan --format json` / `plan_dict`)."""
    path = StudyLayout(Path(study_dir)).plan
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{path}: no plan.json in the study directory (write it with `hpci plan --format json`)"
        ) from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    return plan_from_dict(data, out_of_domain=_recipe_out_of_domain(Path(study_dir)))


def plan_from_dict(data: Mapping[str, Any], out_of_domain: tuple[str, ...] | None = None) -> StudyPlan:
    """A `StudyPlan` from `plan_dict(...)` output (the JSON form)."""
    trials = [_trial(t) for t in data.get("trials", [])]
    trials += [_base(b) for b in data.get("baselines", [])]
    shards = tuple(
        PlannedShard(
            e["id"],
            e["trial"],
            e["checkpoint"],
            e["ability"],
            e["split"],
            int(e["shard"]),
            int(e["shards"]),
            int(e["start"]),
            int(e["stop"]),
        )
        for e in data.get("eval_tasks", [])
    )
    facts = data.get("data", {})
    abilities, ood = _ability_kinds(trials, shards, out_of_domain)
    return StudyPlan(
        str(data.get("study", "")),
        str(facts.get("fingerprint", "")),
        abilities,
        ood,
        tuple(trials),
        shards,
        dict(facts.get("pool_sizes", {})),
        int(facts.get("synthetic_pool", 0)),
    )


def plan_from_expansion(
    expansion: Any,
    study: str,
    fingerprint: str = "",
    pool_sizes: Mapping[str, int] | None = None,
    synthetic_pool: int = 0,
    out_of_domain: tuple[str, ...] | None = None,
) -> StudyPlan:
    """A `StudyPlan` from an in-memory `Expansion` (same content as going through plan.json)."""
    data = {
        "study": study,
        "data": {
            "fingerprint": fingerprint,
            "pool_sizes": dict(pool_sizes or {}),
            "synthetic_pool": synthetic_pool,
        },
        "trials": [asdict(t) for t in expansion.trials],
        "baselines": [asdict(b) for b in expansion.baselines],
        "eval_tasks": [asdict(e) for e in expansion.eval_tasks],
    }
    return plan_from_dict(data, out_of_domain)


def _trial(t: Mapping[str, Any]) -> PlannedTrial:
    return PlannedTrial(
        t["id"],
        t["label"],
        tuple(t.get("also", ())),
        t["model"],
        t["size"],
        t["source"],
        {str(k): int(v) for k, v in t.get("samples_per_ability", {}).items()},
        int(t.get("synthetic_samples", 0)),
        int(t.get("total_samples", 0)),
        int(t.get("seed", 0)),
        tuple(int(e) for e in t.get("checkpoints", ())),
        int(t.get("steps_per_epoch", 0)),
        json.dumps(t.get("mixture", {}), sort_keys=True, separators=(",", ":")),
    )


def _base(b: Mapping[str, Any]) -> PlannedTrial:
    return PlannedTrial(b["id"], f"base/{b['model']}", (), b["model"], b["size"], "base", {}, 0, 0, -1, ())


def _ability_kinds(
    trials: list[PlannedTrial], shards: tuple[PlannedShard, ...], out_of_domain: tuple[str, ...] | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split eval sets into trainable abilities and out-of-domain sets.

    The recipe's `evaluation.out_of_domain` decides when known; otherwise a set is in-domain when some trial
    trains on it or it has a valid split, and out-of-domain when the registry says so or it is test-only.
    """
    order: list[str] = []
    for p in shards:
        if p.ability not in order:
            order.append(p.ability)
    if out_of_domain is not None:
        ood = set(out_of_domain)
    else:
        trained = {a for t in trials for a in t.samples_per_ability}
        with_valid = {p.ability for p in shards if p.split == "valid"}
        ood = {
            a
            for a in order
            if a not in trained and a not in with_valid or (a in REGISTRY and REGISTRY[a].out_of_domain)
        }
    return tuple(a for a in order if a not in ood), tuple(a for a in order if a in ood)


def _recipe_out_of_domain(study_dir: Path) -> tuple[str, ...] | None:
    """`evaluation.out_of_domain` of the study's resolved recipe, if it can be read without loading the study."""
    recipe = StudyLayout(study_dir).recipe
    if not recipe.is_file():
        return None
    try:
        import yaml

        tree = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
        if "include" in tree:  # not resolved: the included files may set it
            return None
        value = (tree.get("evaluation") or {}).get("out_of_domain", [])
        return tuple(str(v) for v in value) if isinstance(value, list) else None
    except Exception:  # an unreadable recipe only costs us the hint; the plan still decides
        return None
