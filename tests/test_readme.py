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


def _readme_commands() -> list[str]:
    """The command lines of the README's "Two commands" block, in order."""
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", README, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_ci_runs_exactly_the_readme_test_command():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == "exec " + commands[1]  # .ci/run ends by running command 2 itself, nothing else after it
