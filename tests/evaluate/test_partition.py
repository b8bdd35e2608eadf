"""Shard planning: every item evaluated exactly once, deterministic, sized by cost; packing of small shards."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hpc_instruct.evaluate.partition import (
    count_shards,
    item_cost,
    pack_shards,
    plan_shards,
    set_item_cost,
    split_range,
)
from hpc_instruct.recipe.study import load_study

sizes_strategy = st.dictionaries(
    st.sampled_from(
        ["biology/valid", "math/valid", "code/test", "ceval_x/test", "role_play/valid", "mine/test"]
    ),
    st.integers(0, 5000),
    min_size=1,
)


def _covered_once(ranges, n):
    items = [i for a, b in ranges for i in range(a, b)]
    return items == list(range(n))


@given(st.integers(0, 10_000), st.integers(1, 500))
def test_split_range_covers_exactly_once(n, k):
    ranges = split_range(n, k)
    assert _covered_once(ranges, n)
    sizes = [b - a for a, b in ranges]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=200)
@given(sizes_strategy, st.floats(1, 5000), st.integers(1, 64), st.integers(1, 2048))
def test_every_item_is_evaluated_exactly_once(sizes, budget, min_items, max_new_tokens):
    plan = plan_shards(sizes, budget, max_new_tokens=max_new_tokens, min_items=min_items)
    assert list(plan) == list(sizes)
    for name, shards in plan.items():
        n = sizes[name]
        assert _covered_once([(s.start, s.stop) for s in shards], n)
        assert [s.shard for s in shards] == list(range(len(shards))) and {s.shards for s in shards} == {
            len(shards)
        }
        if len(shards) > 1:
            assert min(s.items for s in shards) >= min_items  # never cut below a batch
    assert plan == plan_shards(dict(sizes), budget, max_new_tokens=max_new_tokens, min_items=min_items)


def test_generation_sets_get_more_shards_than_ranking_sets():
    plan = plan_shards(
        {"code/valid": 1000, "biology/valid": 1000, "math/valid": 1000},
        budget=500,
        max_new_tokens=1024,
        min_items=16,
    )
    shards = {k: len(v) for k, v in plan.items()}
    assert shards["code/valid"] < shards["biology/valid"] < shards["math/valid"]
    assert (
        set_item_cost("math/valid", 1024)
        > set_item_cost("biology/valid", 1024)
        > set_item_cost("code/valid", 1024)
    )
    assert item_cost(["math"], 16) < item_cost(["math"], 1024)  # capped by max_new_tokens


def test_count_rule_matches_the_recipe_expansion(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""\
study: {{name: p, output_root: {tmp_path}}}
models: [{{name: m, size: tiny, device: cpu}}]
data: {{generate: {{pool_size: 10, synthetic_size: 10}}}}
sweep: {{curated: {{samples_per_ability: [1]}}}}
training: {{max_length: 256}}
evaluation: {{items_per_shard: 33, out_of_domain: [ceval_physician]}}
""")
    ex = load_study(recipe).expand()
    planned: dict[str, set] = {}
    for e in ex.eval_tasks:
        planned.setdefault(e.eval_set, set()).add((e.start, e.stop))
    sizes = {name: max(b for _, b in r) for name, r in planned.items()}
    ours = count_shards(sizes, 33)
    assert {k: {(s.start, s.stop) for s in v} for k, v in ours.items()} == planned


def test_pack_shards_groups_small_ones_and_is_deterministic():
    costs = {"big": 900.0, "a": 100.0, "b": 300.0, "c": 250.0, "d": 50.0, "e": 400.0, "huge": 5000.0}
    packed = pack_shards(costs, budget=500)
    assert sorted(t for element in packed for t in element) == sorted(costs)  # each task once
    assert ["huge"] in packed and ["big"] in packed
    assert all(sum(costs[t] for t in el) <= 500 for el in packed if len(el) > 1)
    assert packed == pack_shards(dict(reversed(list(costs.items()))), budget=500)
    assert len(packed) < len(costs)
