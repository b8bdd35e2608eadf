"""The `hpci` command line (hpc_instruct/cli.py): validate / plan: output shape, JSON contract, and a torch-free login-node path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hpc_instruct.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_plan_json_contract(write_recipe, capsys):
    assert main(["plan", str(write_recipe()), "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert {"trials", "eval_tasks", "jobs", "totals", "assumptions"} <= plan.keys()
    t = plan["trials"][0]
    for key in ("id", "model", "size", "source", "samples_per_ability", "total_samples", "seed", "nodes", "gpus",
                "tp", "pp", "dp", "steps"):
        assert key in t
    assert t["source"] in {"curated", "synthetic", "mix", "single"}
    assert plan["totals"]["trials"] == len(plan["trials"]) == 6  # (2 curated + 1 synthetic) x 2 seeds
    stages = [j["stage"] for j in plan["jobs"]]
    assert stages[0] == "prepare" and stages[-1] == "aggregate" and "train" in stages and "eval" in stages


def test_plan_table_lists_stages_trials_and_totals(write_recipe, capsys):
    assert main(["plan", str(write_recipe())]) == 0
    out = capsys.readouterr().out
    assert "curated-4/m/seed1" in out and "totals: 6 trials" in out and "assumptions:" in out


def test_validate_ok(write_recipe, capsys):
    assert main(["validate", str(write_recipe())]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_plan_does_not_import_torch():
    code = ("import sys, io, contextlib; from hpc_instruct.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): rc = main(['plan', 'recipes/doit.yaml', '--format', 'json'])\n"
            "heavy = [m for m in ('torch', 'pyarrow', 'transformers', 'megatron', 'datasets') if m in sys.modules]\n"
            "print(rc, heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0 []"


def test_shipped_recipes_validate_and_open_with_their_command():
    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        first = recipe.read_text().splitlines()[:4]
        assert any("hpci " in line for line in first if line.startswith("#")), recipe
        assert main(["validate", str(recipe)]) == 0


def test_help_explains_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "validate" in out and "plan" in out and "key.path=value" in out
