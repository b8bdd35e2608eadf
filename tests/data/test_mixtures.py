"""Nested deterministic sampling, units, capping and the paper's guideline mixes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from data_builders import make_sample
from hypothesis import given, settings
from hypothesis import strategies as st

from hpc_instruct.data.abilities import ABILITY_KEYS, REGISTRY
from hpc_instruct.data.doit_reader import SYNTHETIC, DoitData
from hpc_instruct.data.mixtures import (
    ALL,
    GUIDELINE_MIXES,
    MixtureError,
    MixtureSpec,
    draw,
    guideline_mix,
    nested_order,
    plan_mixture,
)
from hpc_instruct.data.records import Message, Sample


def pool_of(name: str, size: int):
    return [make_sample(name, i) for i in range(size)]


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 300),
    seed=st.integers(0, 2**31),
    a=st.integers(0, 300),
    b=st.integers(0, 300),
    name=st.sampled_from(ABILITY_KEYS),
)
def test_smaller_draw_is_a_prefix_of_a_larger_one(size, seed, a, b, name):
    pool = pool_of(name, size)
    small, large = sorted((a, b))
    got_small = draw(pool, small, seed=seed, pool=name, cap=True).taken
    got_large = draw(pool, large, seed=seed, pool=name, cap=True).taken
    assert got_large[: len(got_small)] == got_small
    assert len(got_small) == min(small, size) and len(got_large) == min(large, size)


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(1, 200),
    seed=st.integers(0, 10**6),
    f1=st.floats(0.01, 1.0),
    f2=st.floats(0.01, 1.0),
    shuffle_seed=st.integers(0, 1000),
)
def test_fractions_nest_and_order_ignores_input_order(size, seed, f1, f2, shuffle_seed):
    pool = pool_of("history", size)
    shuffled = list(pool)
    random.Random(shuffle_seed).shuffle(shuffled)
    lo, hi = sorted((f1, f2))
    small = draw(pool, lo, seed=seed, pool="history", cap=False)
    large = draw(shuffled, hi, seed=seed, pool="history", cap=False)
    assert large.taken[: len(small.taken)] == small.taken
    assert nested_order(pool, seed=seed, pool="history") == nested_order(shuffled, seed=seed, pool="history")


def test_order_depends_on_seed_and_pool_name():
    pool = pool_of("math", 50)
    base = nested_order(pool, seed=0, pool="math")
    assert nested_order(pool, seed=1, pool="math") != base
    assert nested_order(pool, seed=0, pool="code") != base
    assert sorted(s.uid for s in base) == sorted(s.uid for s in pool)


def test_units():
    pool = pool_of("code", 100)
    assert len(draw(pool, 1, seed=0, pool="code", cap=False).taken) == 1
    assert len(draw(pool, 1.0, seed=0, pool="code", cap=False).taken) == 100
    assert len(draw(pool, 0.29, seed=0, pool="code", cap=False).taken) == 29
    assert len(draw(pool, ALL, seed=0, pool="code", cap=False).taken) == 100
    assert MixtureSpec(default=1).content_hash != MixtureSpec(default=1.0).content_hash
    for bad in (True, -1, 0.0, 1.5, float("nan"), "most", None):
        with pytest.raises(MixtureError):
            MixtureSpec(default=bad)


def test_cap_or_a_clear_error():
    pool = pool_of("biology", 10)
    with pytest.raises(MixtureError, match=r"biology: asked for 16 samples, the pool holds 10 \(set cap"):
        draw(pool, 16, seed=0, pool="biology", cap=False)
    capped = draw(pool, 16, seed=0, pool="biology", cap=True)
    assert (capped.requested, capped.available, len(capped.taken), capped.capped) == (16, 10, 10, True)


def test_spec_is_normalised_and_round_trips():
    a = MixtureSpec({"math": 4, "code": 0.5}, default=ALL, synthetic_total=10, seed=3)
    b = MixtureSpec((("code", 0.5), ("math", 4)), default="all", synthetic_total=10, seed=3)
    assert a == b and a.content_hash == b.content_hash and hash(a) == hash(b)
    assert MixtureSpec.from_dict(a.to_dict()) == a
    recipe = MixtureSpec.from_amounts({"default": 1305, "ethics": 64}, {"math": 0.5}, 2560, cap=True)
    assert recipe.per_ability == (("ethics", 64), ("math", 0.5)) and recipe.default == 1305
    with pytest.raises(MixtureError, match="both a sample count and a fraction"):
        MixtureSpec.from_amounts({"math": 4}, {"math": 0.5})
    with pytest.raises(MixtureError, match="not in abilities"):
        MixtureSpec({"math": 4}, abilities=("code",))
    with pytest.raises(MixtureError, match="pool"):
        MixtureSpec(pool="half")


def doit_sized_data() -> DoitData:
    """Fake pools with DoIT's pool sizes (no files): what the guideline mixes were designed for.

    Built cheaply (one shared dialogue, uid = the index) because only the counts and the order matter here.
    """
    messages = (Message("user", "q"), Message("assistant", "a"))

    def fake(name: str, n: int) -> tuple[Sample, ...]:
        return tuple(Sample(name, i, messages, 0, None, None, "full", name, i, f"{i:016x}") for i in range(n))

    full = {a: fake(a, REGISTRY[a].pool_size) for a in ABILITY_KEYS}
    return DoitData(Path("doit"), (), {"full": full, SYNTHETIC: {SYNTHETIC: fake(SYNTHETIC, 40960)}})


@pytest.fixture(scope="module")
def doit_data():
    return doit_sized_data()


@pytest.fixture(scope="module")
def guideline_plans(doit_data):
    return {name: plan_mixture(guideline_mix(name), doit_data) for name in GUIDELINE_MIXES}


def test_guideline_mixes_at_doit_scale(guideline_plans):
    taken = {name: {d.pool: len(d.taken) for d in plan.draws} for name, plan in guideline_plans.items()}
    assert taken["baseline"] == {a: 1000 for a in ABILITY_KEYS}
    rec = taken["reconstruct"]
    assert (rec["ethics"], rec["role_play"], rec["creative_writing"], rec["biology"]) == (64, 64, 1000, 1042)
    assert {
        rec[a] for a in ABILITY_KEYS if a not in ("ethics", "role_play", "creative_writing", "biology")
    } == {1305}
    assert sum(rec.values()) == 10000  # the paper's ~10k budget
    assert sum(taken["maximum"].values()) == 39618  # "~39.6k"
    assert taken["mix-2560"][SYNTHETIC] == 2560 and taken["mix-40960"][SYNTHETIC] == 40960
    # nesting across mixes: reconstruct's 1305 history items start maximum's order for the same seed
    hist = {
        n: next(d for d in guideline_plans[n].draws if d.pool == "history").taken
        for n in ("reconstruct", "maximum")
    }
    assert hist["maximum"][:1305] == hist["reconstruct"]


def test_unknown_and_short_pools_are_reported_together(doit_data):
    with pytest.raises(MixtureError) as info:
        plan_mixture(MixtureSpec({"biolgy": 4, "ethics": 5000}, synthetic_total=50000), doit_data)
    text = str(info.value)
    assert "ability 'biolgy' has no curated/full data (did you mean 'biology'?)" in text
    assert "ethics: asked for 5000 samples, the pool holds 1000" in text
    assert "synthetic: asked for 50000 samples, the pool holds 40960" in text
    with pytest.raises(MixtureError, match="did you mean 'reconstruct'"):
        guideline_mix("reconstrct")
    no_synthetic = DoitData(Path("x"), (), {"full": {"math": tuple(pool_of("math", 3))}})
    with pytest.raises(MixtureError, match="has no synthetic pool"):
        plan_mixture(MixtureSpec(default=1, synthetic_total=1), no_synthetic)


def test_study_ability_subset_and_mixture_id(doit_data):
    spec = MixtureSpec(default=4, abilities=("math", "code"))
    plan = plan_mixture(spec, doit_data)
    assert [d.pool for d in plan.draws] == ["code", "math"]
    assert plan.mixture_id == plan_mixture(spec, doit_data).mixture_id
    assert (
        plan.mixture_id
        != plan_mixture(MixtureSpec(default=4, abilities=("math", "code"), seed=1), doit_data).mixture_id
    )


def test_curated_request_on_data_without_pools_is_an_error():
    only_synthetic = DoitData(Path("x"), (), {SYNTHETIC: {SYNTHETIC: tuple(pool_of(SYNTHETIC, 5))}})
    with pytest.raises(MixtureError, match="holds no curated/full pools"):
        plan_mixture(MixtureSpec(default=4), only_synthetic)
    assert len(plan_mixture(MixtureSpec(synthetic_total=5), only_synthetic).samples) == 5
