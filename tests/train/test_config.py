"""The training library's configs as recipes reach them: `activation_checkpointing` choices and old booleans."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "recipe"))
from recipe_base import BASE  # noqa: E402

from hpc_instruct.errors import RecipeError  # noqa: E402
from hpc_instruct.recipe.study import load_study  # noqa: E402
from hpc_instruct.train.backend import AdamWSettings, BackendSettings, build_backend  # noqa: E402
from hpc_instruct.train.config import TrainingConfig  # noqa: E402
from hpc_instruct.train.presets import preset  # noqa: E402


def _recipe(tmp_path: Path, training_line: str, model_line: str = "") -> Path:
    text = BASE.replace("  precision: fp32", f"  precision: fp32\n{training_line}")
    if model_line:
        text = text.replace("    device: cpu", f"    device: cpu\n{model_line}")
    path = tmp_path / "r.yaml"
    path.write_text(text.replace("{out}", str(tmp_path / "studies")).replace("{{", "{").replace("}}", "}"))
    return path


@pytest.mark.parametrize(
    ("raw", "mode"), [(True, "full"), (False, "none"), ("selective", "selective"), ("full", "full")]
)
def test_old_booleans_mean_full_and_none(raw: object, mode: str) -> None:
    assert TrainingConfig(activation_checkpointing=raw).activation_checkpointing == mode


@pytest.mark.parametrize(("line", "mode"), [("true", "full"), ("false", "none"), ("selective", "selective")])
def test_recipes_accept_the_three_modes_and_booleans(tmp_path: Path, line: str, mode: str) -> None:
    study = load_study(_recipe(tmp_path, f"  activation_checkpointing: {line}"))
    assert study.recipe.training.activation_checkpointing == mode


def test_an_unknown_mode_names_the_key_and_the_choices(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as err:
        load_study(_recipe(tmp_path, "  activation_checkpointing: partial"))
    (problem,) = err.value.problems
    text = str(problem)
    assert "training.activation_checkpointing" in text and "r.yaml:" in text
    assert "'selective'" in text and "'full'" in text and "'none'" in text and "'partial'" in text


def test_selective_needs_the_megatron_backend(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as err:
        load_study(_recipe(tmp_path, "  activation_checkpointing: selective", "    backend: hf"))
    assert "recomputes whole layers only" in str(err.value) and "backend megatron" in str(err.value)
    settings = BackendSettings(
        "hf", "cpu", "fp32", 1, 1, 1, 1, False, False, "selective", 1, 1,
        AdamWSettings(1e-3, 0.0, (0.9, 0.95), 1e-8, 1.0), 0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="selective"):
        build_backend(settings, preset("tiny"), {})
