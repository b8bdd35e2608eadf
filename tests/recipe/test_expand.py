"""Expansion of the DoIT grid and of small studies into trials, eval tasks and derived numbers."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
from recipe_base import BASE

from hpc_instruct.recipe.expand import take
from hpc_instruct.recipe.study import load_study

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def doit(tmp_path_factory):
    env_free = ("study.output_root=" + str(tmp_path_factory.mktemp("s")),)
    study = load_study(ROOT / "recipes" / "doit.yaml", env_free)
    return study, study.expand()


def test_doit_grid(doit):
    study, ex = doit
    by = Counter(t.source for t in ex.trials)
    assert by["curated"] == 18 and by["synthetic"] == 14
    curated = {(t.model, t.total_samples // 10) for t in ex.trials if t.source == "curated"}
    assert curated == {(m, n) for m in ("llama-7b", "llama-13b", "llama-33b") for n in (1, 4, 16, 64, 256, 1000)}
    synthetic = {(t.model, t.synthetic_samples) for t in ex.trials if t.source == "synthetic"}
    assert synthetic == {(m, n) for m in ("llama-7b", "llama-13b") for n in (10, 40, 160, 640, 2560, 10000, 40960)}
    labels = {lab.split("/")[0] for t in ex.trials for lab in (t.label,) + t.also}
    assert {"mix-baseline", "mix-reconstruct", "mix-maximum", "mix-2560", "mix-40960"} <= labels


def test_baseline_mix_is_the_curated_1000_experiment(doit):
    _, ex = doit
    (t,) = [t for t in ex.trials if t.label == "curated-1000/llama-7b/seed0"]
    assert t.also == ("mix-baseline/llama-7b/seed0",)
    assert len({e.id for e in ex.eval_tasks}) == len(ex.eval_tasks)  # no task planned twice


def test_doit_mixes_match_the_paper(doit):
    _, ex = doit
    mixes = {t.label.split("/")[0]: t for t in ex.trials if t.model == "llama-7b" and t.source == "mix"}
    r = mixes["mix-reconstruct"].samples_per_ability
    assert (r["ethics"], r["role_play"], r["creative_writing"], r["biology"], r["math"]) == (64, 64, 1000, 1042, 1305)
    assert sum(r.values()) == 10000
    assert mixes["mix-maximum"].total_samples == 39618  # "~39.6k"
    assert mixes["mix-2560"].synthetic_samples == 2560 and mixes["mix-40960"].synthetic_samples == 40960


def test_doit_resources_fit_each_size(doit):
    study, ex = doit
    for t in ex.trials:
        shape = study.shapes[t.model]
        assert t.tp * t.pp * t.dp == t.gpus and shape.num_attention_heads % t.tp == 0
        assert shape.num_layers % t.pp == 0
    sizes = {t.size: (t.nodes, t.gpus, t.tp, t.pp) for t in ex.trials}
    assert sizes["7b"] == (1, 8, 1, 1) and sizes["13b"] == (1, 8, 2, 1)
    assert sizes["33b"][0] == 2 and sizes["33b"][2] * sizes["33b"][3] > 1  # 33B spans nodes with TP/PP


def test_doit_steps_are_the_papers_when_padded(tmp_path):
    overrides = ("study.output_root=" + str(tmp_path), "training.packing=false")
    ex = load_study(ROOT / "recipes" / "doit.yaml", overrides).expand(with_eval=False)
    for t in ex.trials:  # padded (one sample per sequence), global batch 64, 15 epochs
        assert t.steps_per_epoch == max(1, math.ceil(t.total_samples / 64))
        assert t.steps == 15 * t.steps_per_epoch and t.checkpoints == tuple(range(1, 16))


def test_doit_packs_by_default_into_fewer_steps(doit):
    study, ex = doit
    assert study.recipe.training.packing
    for t in ex.trials:  # 64 packed rows of <= 2048 tokens per step
        assert t.steps_per_epoch == max(1, math.ceil(math.ceil(t.tokens / 15 / 2048) / 64))
        assert t.steps_per_epoch <= max(1, math.ceil(t.total_samples / 64))


def test_eval_tasks_cover_valid_every_checkpoint_and_test_once(doit):
    study, ex = doit
    t = ex.trials[0]
    mine = [e for e in ex.eval_tasks if e.trial == t.id]
    valid = Counter(e.checkpoint for e in mine if e.split == "valid")
    assert set(valid) == {f"epoch-{e:03d}" for e in range(1, 16)} and set(valid.values()) == {10}
    test = [e for e in mine if e.split == "test"]
    assert {e.checkpoint for e in test} == {"selected"} and len(test) == 13  # 10 abilities + 3 C-Eval


def test_min_steps_and_packing(write_recipe):
    study = load_study(write_recipe(), ("training.min_steps=30", "training.packing=true"))
    for t in study.expand(with_eval=False).trials:
        assert t.steps >= 30 and t.steps == t.epochs * t.steps_per_epoch
        assert t.checkpoints[-1] == t.epochs


def test_take_units():
    assert take(4, 10) == 4 and take("all", 10) == 10 and take({"fraction": 0.25}, 10) == 2
    assert take({"fraction": 0.01}, 10) == 0 and take({"fraction": 0.29}, 100) == 29 and take(40, 10) == 10


def test_shards_cover_each_set_exactly_once(write_recipe):
    study = load_study(write_recipe(), ("evaluation.items_per_shard=33",))
    ex = study.expand()
    owner = ex.trials[0].id
    by_set: dict[tuple, list] = {}
    for e in ex.eval_tasks:
        if e.trial == owner:
            by_set.setdefault((e.checkpoint, e.eval_set), []).append((e.start, e.stop))
    for ranges in by_set.values():
        ranges.sort()
        assert ranges[0][0] == 0 and ranges[-1][1] == 100
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
        assert len(ranges) == 4


def test_held_out_mixes_are_random_volumes_fixed_by_their_seed(write_recipe):
    text = BASE.replace("training:", "  held_out: {{count: 6, min_per_ability: 2, max_per_ability: 40, seed: 5}}\ntraining:")
    ex = load_study(write_recipe(text)).expand()
    held = [t for t in ex.trials if t.source == "held_out"]
    assert len(held) == 12 and {t.label.split("/")[0] for t in held} == {f"heldout-{k}" for k in range(1, 7)}
    mixes = {t.label.split("/")[0]: dict(t.samples_per_ability) for t in held}
    assert len({tuple(sorted(m.items())) for m in mixes.values()}) == 6  # six different mixes
    values = [n for m in mixes.values() for n in m.values()]
    assert min(values) >= 2 and max(values) <= 40 and len(set(values)) > 10
    again = {t.label.split("/")[0]: dict(t.samples_per_ability) for t in load_study(write_recipe(text)).expand().trials
             if t.source == "held_out"}
    assert again == mixes  # the seed alone fixes the draw
    other = load_study(write_recipe(text.replace("seed: 5", "seed: 6"))).expand()
    assert {t.label.split("/")[0]: dict(t.samples_per_ability) for t in other.trials if t.source == "held_out"} != mixes


def test_an_arm_with_its_own_seeds_runs_only_those(write_recipe):
    """`seeds` on an arm replaces sweep.seeds for that arm alone; the other arms keep the sweep's, and a trial's
    id does not depend on which list its seed came from."""
    path = write_recipe()
    ex = load_study(path, ("sweep.synthetic.seeds=[5]",)).expand()
    seeds: dict[str, set[int]] = {}
    for t in ex.trials:
        seeds.setdefault(t.source, set()).add(t.seed)
    assert seeds == {"curated": {0, 1}, "synthetic": {5}}
    wider = load_study(path, ("sweep.synthetic.seeds=[0,5]",)).expand()
    assert ({t.id for t in ex.trials if t.source == "synthetic"}
            < {t.id for t in wider.trials if t.source == "synthetic"})


def test_the_synthetic_mean_length_plans_the_synthetic_epochs(write_recipe):
    """`data.mean_tokens.synthetic` reaches the plan (it was dropped for generated data, so a packed synthetic
    trial planned 8x the rows it has and got far fewer steps than `training.min_steps`)."""
    path = write_recipe()
    short = load_study(path, ("data.mean_tokens={synthetic: 30}", "training.min_steps=40")).expand()
    long = load_study(path, ("data.mean_tokens={synthetic: 240}", "training.min_steps=40")).expand()
    (s,) = [t for t in short.trials if t.source == "synthetic" and t.seed == 0]
    (lg,) = [t for t in long.trials if t.source == "synthetic" and t.seed == 0]
    assert s.steps >= 40 and s.epochs > lg.epochs
