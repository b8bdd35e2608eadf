"""Loading a study: recipe file (+ includes, env, overrides) -> validated, resolved `Study`.

This is the one entry point the CLI and the stages use. Nothing is written here; any problem raises
RecipeError listing every problem found, each with file:line, key, expectation and a suggestion.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.errors import RecipeError
from hpc_instruct.recipe.checks import Checker
from hpc_instruct.recipe.coerce import INVALID, Builder
from hpc_instruct.recipe.data_facts import DataFacts, gather
from hpc_instruct.recipe.expand import Expansion, expand
from hpc_instruct.recipe.schema import Recipe
from hpc_instruct.recipe.source import Tree, load_tree
from hpc_instruct.train.presets import ModelShape


@dataclass(frozen=True)
class Study:
    recipe: Recipe
    tree: Tree
    shapes: dict[str, ModelShape]
    facts: DataFacts
    directory: Path
    warnings: tuple[str, ...]

    def expand(self, with_eval: bool = True) -> Expansion:
        return expand(self.recipe, self.shapes, self.facts, with_eval=with_eval)


def load_study(path: str | os.PathLike, overrides: tuple[str, ...] = (), env=None) -> Study:
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
    if checker.problems:
        raise RecipeError(checker.problems)
    return Study(recipe, tree, shapes, facts, directory, tuple(checker.warnings) + facts.warnings)
