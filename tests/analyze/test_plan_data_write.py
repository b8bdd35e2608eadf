"""`hpci plan-data --write` on a small finished study (really trained and evaluated), then the written recipe run
with `hpci run`: its report sets the plan, uniform and reconstruct arms' predicted scores beside their measured
ones, with the measured plan - uniform and plan - reconstruct differences and their intervals.

Slow: trains 2 + 3 tiny models and evaluates them and the base model (a few minutes on 2 cores).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpc_instruct.analyze.analysis import analyze_study

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
HPCI = [sys.executable, "-m", "hpc_instruct.cli"]
SMALL = (
    "models=[{name: tiny, size: tiny, device: cpu, micro_batch: 8, global_batch: 8}]",
    "sweep.seeds=[0]",
    "sweep.curated.samples_per_ability=[4, 64]",
    "sweep.synthetic=null",
    "training.min_steps=60",
    "evaluation.splits=[test]",
    "sweep.single_ability=null",
    "sweep.mixes=[]",
    "sweep.held_out=null",
    "evaluation.out_of_domain=[]",
)


def _run(*args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    proc = subprocess.run([*HPCI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_plan_data_write_then_run_measures_the_plan(tmp_path):
    out = tmp_path / "studies"
    _run("run", str(ROOT / "recipes" / "demo.yaml"), f"study.output_root={out}", *SMALL, "--quiet")
    study = out / "demo"
    printed = _run("plan-data", str(study), "--budget", "640", "--write").stdout
    recipe = study / "results" / "plan-640.yaml"
    assert f"hpci run {recipe}" in printed and recipe.is_file()
    tree = yaml.safe_load(recipe.read_text())
    names = [m["name"] for m in tree["sweep"]["mixes"]]
    assert names == ["mix-plan-640", "mix-uniform-640", "mix-reconstruct-640"]
    assert all(sum(m["samples_per_ability"].values()) == 640 for m in tree["sweep"]["mixes"])

    _run("run", str(recipe), "--quiet")
    planned = out / "demo-plan-640"
    a = analyze_study(planned)
    arms = a.plan_check.arms.set_index("arm")
    assert set(arms.index) == set(names)
    assert arms["stated"].notna().all() and arms["measured"].between(0, 100).all()
    assert (arms["measured_lo"] < arms["measured"]).all() and (arms["measured"] < arms["measured_hi"]).all()
    contrasts = a.plan_check.contrasts.set_index("contrast")
    assert set(contrasts.index) == {"plan - uniform", "plan - reconstruct"}
    report = (planned / "results" / "report.md").read_text()
    answer = report.split("### (iv) A data plan from these findings")[1].split("###")[0]
    assert "Named mixes, predicted -> measured: mix-plan-640" in answer
    assert "Measured plan - uniform on tiny" in answer and "Measured plan - reconstruct on tiny" in answer
    print(answer)
