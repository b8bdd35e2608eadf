"""What a study should contain: its planned trials, base models and eval shards (one `Expansion`, read from
`plan.json` or given in memory) and its data facts.

Aggregation checks the result files against this, never the other way round: a shard that is on disk but not
in the plan (an older recipe, a copy) is reported and ignored, and a planned shard that is absent or whose
completion marker names another task id is reported as missing or stale. Both sources give the same `StudyPlan`,
so tests and the simulator can work from an in-memory `Expansion` while the CLI reads the study directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpc_instruct.data.abilities import REGISTRY
from hpc_instruct.errors import UserError
from hpc_instruct.expansion import EvalTask, Expansion, Owner
from hpc_instruct.study_dir import SELECTED, StudyDir


@dataclass(frozen=True)
class StudyPlan:
    """Everything analysis expects of a study: its `Expansion` (trials, base models and eval shards, looked up
    by id) and its data facts; `abilities` are trainable, `out_of_domain` are test-only sets."""

    study: str
    fingerprint: str
    abilities: tuple[str, ...]
    out_of_domain: tuple[str, ...]
    expansion: Expansion
    pool_sizes: Mapping[str, int]
    synthetic_pool: int

    @property
    def trials(self) -> tuple[Owner, ...]:
        """Trained trials, then base models (source 'base')."""
        return self.expansion.owners()

    @property
    def shards(self) -> tuple[EvalTask, ...]:
        return self.expansion.eval_tasks

    def trial(self, trial_id: str) -> Owner:
        return self.expansion.owner(trial_id)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in ("valid", "test") if any(p.split == s for p in self.shards))

    @property
    def test_on_selected(self) -> bool:
        return any(p.checkpoint == SELECTED for p in self.shards)

    def set_sizes(self) -> dict[str, int]:
        """Items per eval set ('<ability>/<split>'), from the shard ranges."""
        sizes: dict[str, int] = {}
        for p in self.shards:
            sizes[p.eval_set] = max(sizes.get(p.eval_set, 0), p.stop)
        return sizes


def load_plan(study_dir: str | os.PathLike) -> StudyPlan:
    """Read `<study>/plan.json` (written by `hpci plan --format json` / `plan_dict`)."""
    path = StudyDir(Path(study_dir)).plan
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
    """A `StudyPlan` from `plan.json` content (`hpc_instruct.launch.plan.plan_dict`)."""
    return plan_from_expansion(Expansion.from_dict(data), str(data.get("study", "")), **_facts(data),
                               out_of_domain=out_of_domain)


def _facts(data: Mapping[str, Any]) -> dict[str, Any]:
    facts = data.get("data", {})
    return {"fingerprint": str(facts.get("fingerprint", "")), "pool_sizes": dict(facts.get("pool_sizes", {})),
            "synthetic_pool": int(facts.get("synthetic_pool", 0))}


def plan_from_expansion(
    expansion: Expansion,
    study: str,
    fingerprint: str = "",
    pool_sizes: Mapping[str, int] | None = None,
    synthetic_pool: int = 0,
    out_of_domain: tuple[str, ...] | None = None,
) -> StudyPlan:
    """A `StudyPlan` from an `Expansion` in memory (the same content as going through plan.json)."""
    abilities, ood = _ability_kinds(expansion.owners(), expansion.eval_tasks, out_of_domain)
    return StudyPlan(study, fingerprint, abilities, ood, expansion, dict(pool_sizes or {}), synthetic_pool)


def _ability_kinds(
    trials: tuple[Owner, ...], shards: tuple[EvalTask, ...], out_of_domain: tuple[str, ...] | None
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
    recipe = StudyDir(study_dir).recipe
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
