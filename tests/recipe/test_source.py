"""Located YAML loading: includes, environment variables, overrides, and where every value came from."""

from __future__ import annotations

import pytest

from hpc_instruct.errors import RecipeError
from hpc_instruct.recipe.source import format_path, load_tree


def test_locations_point_at_the_key_line(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("study:\n  name: x\n\ntraining:\n  lr: 0.1\n  betas: [0.9, 0.95]\n")
    tree = load_tree(p)
    assert tree.where(("training", "lr")).line == 5
    assert tree.where(("training", "betas", 1)).line == 6
    assert tree.where(("training", "nothing", "here")).line == 4  # nearest ancestor


def test_include_merges_mappings_and_replaces_lists(tmp_path):
    (tmp_path / "base.yaml").write_text("training:\n  lr: 0.1\n  epochs: 3\nsweep:\n  seeds: [0, 1, 2]\n")
    (tmp_path / "top.yaml").write_text("include: base.yaml\ntraining:\n  lr: 0.2\nsweep:\n  seeds: [5]\n")
    tree = load_tree(tmp_path / "top.yaml")
    assert tree.data["training"] == {"lr": 0.2, "epochs": 3}
    assert tree.data["sweep"]["seeds"] == [5]
    assert tree.where(("training", "epochs")).file.endswith("base.yaml")
    assert tree.where(("training", "lr")).file.endswith("top.yaml")
    assert "include" not in tree.data


def test_environment_variables_with_defaults(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("data:\n  root: ${DATA_ROOT}/doit\n  revision: ${REV:-main}\n")
    tree = load_tree(p, env={"DATA_ROOT": "/scratch"})
    assert tree.data["data"] == {"root": "/scratch/doit", "revision": "main"}


def test_overrides_by_index_and_by_name(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("models:\n  - name: a\n    tp: 1\n  - name: b\n    tp: 1\ntraining: {lr: 0.1}\n")
    tree = load_tree(p, ("models.b.tp=4", "models[0].tp=2", "training.lr=1e-5", "sweep.seeds=[0,1]"))
    assert [m["tp"] for m in tree.data["models"]] == [2, 4]
    assert tree.data["sweep"]["seeds"] == [0, 1]
    assert str(tree.where(("models", 1, "tp"))) == "<override 1: models.b.tp=4>"


def test_problems_are_collected_not_first_only(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("data:\n  root: ${NOPE_ONE}\n  revision: ${NOPE_TWO}\n")
    with pytest.raises(RecipeError) as err:
        load_tree(p, ("no-equals-sign",), env={})
    assert len(err.value.problems) == 3


def test_format_path():
    assert format_path(("models", 0, "tp")) == "models[0].tp"
