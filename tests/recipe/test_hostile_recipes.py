"""Recipes are data, never code: hostile YAML, path-like study names and non-finite numbers are each refused as one
located problem (file:line), exit code 2, quickly, with no traceback and nothing written.

Covers: hpc_instruct.recipe.yaml_guard."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from recipe_base import BASE

ROOT = Path(__file__).resolve().parents[2]

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
) + "study: {name: t}\n"


def _hpci(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "hpc_instruct.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def _refused(recipe: Path, line: int, words: str) -> str:
    """Validate `recipe` in a fresh process: exit 2, one problem at recipe:line that mentions `words`, fast."""
    start = time.monotonic()
    done = _hpci("validate", str(recipe), cwd=recipe.parent)
    took = time.monotonic() - start
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{recipe.name}:{line}: " in done.stderr, done.stderr
    assert words in done.stderr, done.stderr
    assert took < 20, f"took {took:.1f} s"  # a Python start-up or two; the bomb alone used to run past 2 minutes
    return done.stderr


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        pytest.param(ALIAS_BOMB, 6, "alias bomb", id="nine-level-alias-bomb"),
        pytest.param("study: &s\n  name: t\n  again: *s\n", 3, "recursive alias *s", id="recursive-alias"),
        pytest.param("x: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nesting deeper than 64 levels", id="5000-deep"),
        pytest.param("study:\n  name: !!python/object/apply:os.system ['touch pwned']\n", 2,
                     "tag tag:yaml.org,2002:python/object/apply:os.system is not allowed", id="python-tag-sequence"),
        pytest.param("study:\n  name: !!python/name:os.system\n", 2, "tag tag:yaml.org,2002:python/name:os.system",
                     id="python-tag-scalar"),
        pytest.param("study:\n  name: !custom t\n", 2, "tag !custom is not allowed", id="custom-tag"),
        pytest.param("study:\n  name: !!int abc\n", 2, "cannot read 'abc' as int", id="bad-int-tag"),
        pytest.param("study:\n  name: t\0\n", 2, "YAML error", id="raw-nul-in-file"),
    ],
)
def test_hostile_yaml_is_one_located_problem(tmp_path, text, line, words):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    _refused(recipe, line, words)
    assert not (tmp_path / "pwned").exists()


def test_anchors_and_aliases_within_limits_still_work(tmp_path):
    from hpc_instruct.recipe.source import load_tree

    p = tmp_path / "a.yaml"
    p.write_text("base: &b {lr: 0.1, epochs: 2}\ntraining: *b\nseeds: &s [1, 2]\nmore: [*s, *s]\n")
    tree = load_tree(p)
    assert tree.data["training"] == {"lr": 0.1, "epochs": 2}
    assert tree.data["more"] == [[1, 2], [1, 2]]


def test_hostile_override_is_a_problem_too(tmp_path):
    from hpc_instruct.errors import RecipeError
    from hpc_instruct.recipe.source import load_tree

    p = tmp_path / "a.yaml"
    p.write_text("training: {lr: 0.1}\n")
    with pytest.raises(RecipeError, match="nesting deeper than 64"):
        load_tree(p, ("training.lr=" + "[" * 3000 + "]" * 3000,))


def _with_name(name: str) -> str:
    return BASE.replace("  name: t\n", f"  name: {name}\n", 1)


@pytest.mark.parametrize("name", ['"../../x"', "/tmp/hpci-escape", '""', '"a\\0b"', '"."', '".."', '"a/b"', '"-x"'])
def test_path_like_study_names_are_refused_and_plan_writes_nothing(write_recipe, tmp_path, name):
    recipe = write_recipe(_with_name(name))
    before = sorted(p for p in tmp_path.parent.rglob("*") if "hpci-escape" in str(p))
    stderr = _refused(recipe, 2, "study.name: expected")
    assert "plain name" in stderr or "NUL" in stderr
    done = _hpci("plan", str(recipe), "--write", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert not (tmp_path / "studies").exists() and not Path("/tmp/hpci-escape").exists()
    assert not (tmp_path.parent / "x").exists() and not (tmp_path / "x").exists()
    assert sorted(p for p in tmp_path.parent.rglob("*") if "hpci-escape" in str(p)) == before


def test_plain_study_names_pass(write_recipe, capsys):
    from hpc_instruct.cli import main

    for name in ("t", "my-study_2.v1", "A"):
        assert main(["validate", str(write_recipe(_with_name(name)))]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN", "[.nan]"])
def test_non_finite_numbers_are_refused(write_recipe, value):
    recipe = write_recipe(BASE.replace("  lr: 1.0e-3\n", f"  lr: {value}\n"))
    _refused(recipe, 21, "training.lr: expected a number")
