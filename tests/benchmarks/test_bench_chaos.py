"""The chaos benchmark's plan and study: every kind is injected (dealt from a seeded deck, not drawn independently),
the same seed gives the same plan, and its own recipe (benchmarks/chaos.yaml, independent of recipes/demo.yaml)
stays a valid two-trial study. The injections themselves run only in the benchmark (an hour on 2 cores)."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_chaos", ROOT / "benchmarks" / "bench_chaos.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.mark.parametrize("seed", [0, 1, 11, 12345])
def test_fifty_injections_deal_every_kind(bench, seed):
    kinds = [*bench.LOCAL_KINDS, *bench.SLURM_KINDS]
    plan = bench.deal(kinds, 50, seed)
    assert len(plan) == 50
    assert Counter(plan) == {kind: 5 for kind in kinds}  # 10 kinds x 5 full decks
    for start in range(0, 50, len(kinds)):  # each deck holds every kind once
        assert sorted(plan[start:start + len(kinds)]) == sorted(kinds)


def test_a_partial_deck_still_deals_every_kind_once_per_block(bench):
    kinds = list(bench.LOCAL_KINDS)  # 7 kinds, 50 injections: 7 full decks and one of 1
    counts = Counter(bench.deal(kinds, 50, 3))
    assert set(counts) == set(kinds) and set(counts.values()) <= {7, 8} and sum(counts.values()) == 50


def test_the_plan_is_the_seeds(bench):
    kinds = [*bench.LOCAL_KINDS, *bench.SLURM_KINDS]
    assert bench.deal(kinds, 50, 11) == bench.deal(kinds, 50, 11)
    assert bench.deal(kinds, 50, 11) != bench.deal(kinds, 50, 12)
    assert bench.deal(kinds, 20, 11) == bench.deal(kinds, 50, 11)[:20]  # more injections extend the same plan


def test_the_chaos_study_is_its_own_small_recipe(bench, tmp_path):
    from hpc_instruct.recipe.study import load_study

    assert bench.RECIPE == ROOT / "benchmarks" / "chaos.yaml"
    study = load_study(bench.RECIPE, (f"study.output_root={tmp_path}",))
    assert study.directory == tmp_path / bench.STUDY
    ex = study.expand()
    assert [t.model for t in ex.trials] == ["tiny", "tiny"]
    assert len(ex.eval_tasks) == 30  # base + 2 trials on the valid split
    assert "demo.yaml" not in " ".join(bench.run_args(tmp_path))
