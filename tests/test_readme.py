"""The README stays true: its recipe example validates, and its two commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from hpc_instruct.recipe.study import load_study

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_recipe_example_is_valid(tmp_path):
    block = re.search(r"```yaml\n(.*?)```", README, re.S).group(1)
    path = tmp_path / "example.yaml"
    path.write_text(block)
    study = load_study(path, (f"study.output_root={tmp_path}",))
    assert len(study.expand(with_eval=False).trials) > 0


def test_ci_runs_the_readme_test_command():
    assert "bash tools/test.sh" in README
    assert "exec bash tools/test.sh" in (ROOT / ".ci" / "run").read_text()
