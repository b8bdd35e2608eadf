"""Loading a study: recipe file (+ includes, env, overrides) -> validated, resolved `Study`.

This is the one entry point the CLI and the stages use. Nothing is written here; any problem raises
RecipeError listing every problem found, each with file:line, key, expectation and a suggestion.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from hpc_instruct.errors import RecipeError
from hpc_instruct.expansion import Expansion
from hpc_instruct.recipe.checks import Checker
from hpc_instruct.recipe.coerce import INVALID, Builder
from hpc_instruct.recipe.data_facts import DataFacts, gather
from hpc_instruct.recipe.expand import expand
from hpc_instruct.recipe.memory_checks import ModelMemory, check_memory
from hpc_instruct.recipe.record_checks import check_records
from hpc_instruct.recipe.schema import Recipe
from hpc_instruct.recipe.source import Tree, load_tree
from hpc_instruct.train.config import ModelConfig
from hpc_instruct.train.presets import ModelShape


@dataclass(frozen=True)
class Study:
    recipe: Recipe
    tree: Tree
    shapes: dict[str, ModelShape]
    facts: DataFacts
    directory: Path
    warnings: tuple[str, ...]
    records: str = ""  # what the record check read ("43490 records in 31 files checked ..."), "" when not asked
    memory: dict[str, ModelMemory] = field(default_factory=dict)  # per model: GPU, node and eval memory

    def expand(self, with_eval: bool = True) -> Expansion:
        return expand(self.recipe, self.shapes, self.facts, with_eval=with_eval)

    def model(self, name: str) -> ModelConfig:
        """The recipe's model of that name (O(1); KeyError naming it when the recipe has none)."""
        return self._models[name]

    @functools.cached_property
    def _models(self) -> dict[str, ModelConfig]:
        return {m.name: m for m in self.recipe.models}


def load_study(path: str | os.PathLike, overrides: tuple[str, ...] = (), env=None, *,
               check_data: bool = False) -> Study:
    """Load and check a recipe. `check_data` also reads every record of the study's data files (validate, plan,
    submit and run ask for it; a stage task does not: its study was checked before it was queued)."""
    tree = load_tree(path, overrides, env)
    builder = Builder(tree, Recipe)
    recipe = builder.build()
    if builder.problems or recipe is INVALID:
        raise RecipeError(builder.problems)
    checker = Checker(recipe, tree)
    checker.study()
    if checker.problems:  # a path-like name must not reach the file system below
        raise RecipeError(checker.problems)
    shapes = checker.models()
    checker.data()
    checker.training()
    directory = Path(recipe.study.output_root) / recipe.study.name
    facts = gather(recipe.data, recipe.evaluation.out_of_domain, directory)
    checker.sweep(facts)
    memory = check_memory(checker, shapes) if not checker.problems else {}
    records = check_records(recipe) if check_data and not checker.problems else None
    if checker.problems or (records and records.problems):
        what = "recipe and its data" if records and records.problems else "recipe"
        raise RecipeError(checker.problems + list(records.problems if records else ()), what)
    warnings = tuple(checker.warnings) + facts.warnings + (records.warnings if records else ())
    summary = records.report.summary() if records and records.report else ""
    return Study(recipe, tree, shapes, facts, directory, warnings, summary, memory)
