"""The report does not overclaim: efficiency answers stay within the extrapolation bound, targets and predictions
within [0, 100], and the Findings name a ranking only where the intervals separate it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from overclaim import efficiency_violations, ranking_violations, target_violations

from hpc_instruct.analyze.answers import findings
from hpc_instruct.analyze.claims import extreme, resolved_sign, separated_pairs
from hpc_instruct.analyze.curves import Curve
from hpc_instruct.analyze.efficiency import synthetic_efficiency
from hpc_instruct.analyze.fits import fit_log_linear


def _curve(source: str, volumes, scores, se=1.5) -> Curve:
    n, y = np.asarray(volumes, float), np.asarray(scores, float)
    return Curve("role_play", source, "tiny", 1000, n, y, np.full(len(n), se),
                 fit_log_linear(n, y, np.full(len(n), se)), None, "log-linear")


def test_planted_study_reports_nothing_beyond_its_bounds(main_analysis):
    assert efficiency_violations(main_analysis.efficiency) == []
    assert target_violations(main_analysis) == []
    assert ranking_violations(main_analysis) == []


def test_a_flat_synthetic_curve_gives_bounded_answers_not_astronomical_ones():
    """The baseline demo's failure: curated role_play climbs past 100 on its line, synthetic stays flat; the old
    table printed a target of 105.5 and 2.3e30 samples. Now: targets <= 100 and '> 4 x the largest volume'."""
    curated = _curve("curated", [4, 16, 64, 256], [54.5, 71.5, 88.5, 100.0])
    flat = _curve("synthetic", [40, 160, 640], [20.0, 20.4, 20.9])
    falling = _curve("synthetic", [40, 160, 640], [22.0, 20.0, 18.0])
    for synthetic in (flat, falling):
        eff = synthetic_efficiency({("role_play", "curated", "tiny"): curated,
                                    ("role_play", "synthetic", "tiny"): synthetic}, n_abilities=10)
        assert efficiency_violations(eff) == [], efficiency_violations(eff)
        assert (eff["target"] <= 100).all() and (eff["target"] >= 0).all()
        top = eff.set_index("curated_per_ability").loc[256]
        assert top["answer"] == "> 2,560" and math.isnan(top["synthetic_needed"]) and math.isnan(top["ratio"])
        assert math.isinf(top["synthetic_hi"]) and top["ratio_text"] == "> 1"


def test_answers_inside_the_bound_are_numbers():
    curated = _curve("curated", [4, 16, 64, 256], [30.0, 36.0, 42.0, 48.0], se=0.5)
    synthetic = _curve("synthetic", [40, 160, 640, 2560], [30.0, 33.0, 36.0, 39.0], se=0.5)
    eff = synthetic_efficiency({("role_play", "curated", "tiny"): curated,
                                ("role_play", "synthetic", "tiny"): synthetic}, n_abilities=10)
    row = eff.set_index("curated_per_ability").loc[16]
    # curated: 30 + 10 log10(n/4) -> 36 at 16; synthetic: 30 + 5 log10(n/40) -> 36 at 40 * 10^1.2 = 634
    assert row["synthetic_needed"] == pytest.approx(40 * 10**1.2, rel=0.02)
    assert row["answer"] == f"{row['synthetic_needed']:,.0f}" and row["beyond"] == ""
    assert row["synthetic_lo"] < row["synthetic_needed"] < row["synthetic_hi"] < math.inf
    assert efficiency_violations(eff) == []


def test_the_checkers_catch_what_they_are_for(main_analysis):
    """A check that cannot fail is a defect: feed each checker the overclaims of the baseline demo report."""
    eff = main_analysis.efficiency.copy()
    i = eff.index[0]
    eff.loc[i, ["synthetic_needed", "target"]] = [6.8e95, 105.5]
    eff.loc[i, "answer"] = "6,800,000,000"
    bad = efficiency_violations(eff)
    assert any("target 105.5" in b for b in bad) and any("beyond" in b for b in bad)
    table = main_analysis.sensitivity.table
    ranked = table[table["rank_data"].notna()].sort_values("size_slope")
    # name the ability with the *second* largest size slope as the most sensitive: never supported
    wrong = ranked.iloc[-2]["ability"]
    assert ranking_violations(main_analysis, [f"Most sensitive to model size: {wrong} (+1.0)."])


def test_overlapping_intervals_are_reported_as_not_resolved(main_analysis):
    s = main_analysis.sensitivity
    wide = s.table.copy()
    for kind in ("data", "size"):
        wide[f"{kind}_slope_lo"] -= 100
        wide[f"{kind}_slope_hi"] += 100
    blurred = dataclasses.replace(main_analysis, sensitivity=dataclasses.replace(s, table=wide))
    lines = findings(blurred)
    for claim in ("Most sensitive to data", "Least sensitive to data", "Most sensitive to model size"):
        line = next(x for x in lines if x.startswith(claim))
        assert line.startswith(f"{claim}: not resolved"), line
    assert not any(x.startswith("Growth paces differ") for x in lines)
    assert any(x.startswith("Growth paces not told apart: none of 45") for x in lines)
    assert ranking_violations(blurred) == []


def test_extreme_and_pairs_on_a_small_table():
    table = pd.DataFrame({
        "ability": ["a", "b", "c", "d"],
        "data_slope": [20.0, 12.0, 10.0, 1.0],
        "data_slope_lo": [17.0, 8.0, 7.0, -2.0],
        "data_slope_hi": [25.0, 16.0, 13.0, 4.0],
    })
    top, low = extreme(table, "data", top=True), extreme(table, "data", top=False)
    assert top.resolved and top.name == "a" and low.resolved and low.name == "d"
    assert set(separated_pairs(table)) == {("a", "b"), ("a", "c"), ("a", "d"), ("b", "d"), ("c", "d")}
    table.loc[0, "data_slope_lo"] = 14.0  # a now overlaps b (b.hi = 16), not c (c.hi = 13)
    top = extreme(table, "data", top=True)
    assert not top.resolved and top.contenders == ("a", "b")
    assert resolved_sign(0.5, 2.0) == 1 and resolved_sign(-2.0, -0.1) == -1 and resolved_sign(-1.0, 1.0) == 0
    assert resolved_sign(math.nan, 1.0) == 0


def test_seed_stability_has_an_interval(main_analysis):
    s = main_analysis.sensitivity
    lo, hi = s.tau_data_interval
    assert math.isfinite(lo) and lo <= hi <= 1.0 and lo <= s.tau_data + 1e-9
    line = next(x for x in findings(main_analysis) if x.startswith("Ranking stability across seeds"))
    assert f"{s.tau_data:.2f} [{lo:.2f}, {hi:.2f}]" in line


def test_the_summary_quotes_each_abilitys_bounded_comparison_and_names_its_model():
    from types import SimpleNamespace

    from hpc_instruct.analyze.answers import efficiency_summary, synthetic_answer

    def row(ability, model, params, n, needed, hi, grows=True):
        return {"ability": ability, "model": model, "num_parameters": params, "curated_per_ability": n,
                "synthetic_needed": needed, "ratio": needed / (10 * n), "ratio_lo": 0.5, "ratio_hi": hi,
                "curated_grows": grows, "beyond": "" if math.isfinite(needed) else "above",
                "answer": f"{needed:,.0f}", "interval": "[0, 9]"}

    eff = pd.DataFrame([
        row("code", "micro", 1, 8, 100.0, 2.0), row("code", "tiny", 2, 8, 90.0, math.inf),  # bounded on micro
        row("code", "tiny", 2, 64, math.nan, math.inf),
        row("ethics", "micro", 1, 64, 900.0, 3.0), row("ethics", "tiny", 2, 8, 80.0, 2.0),
        row("ethics", "tiny", 2, 64, 1000.0, 3.0),  # bounded on both: the larger model, the larger N
        row("math", "tiny", 2, 64, 200.0, 1.5, grows=False), row("math", "micro", 1, 24, 150.0, 1.8),
    ])
    a = SimpleNamespace(efficiency=eff, plan=SimpleNamespace(abilities=("code", "ethics", "math")))
    picked = efficiency_summary(a).set_index("ability")[["model", "curated_per_ability"]]
    assert picked.to_dict("index") == {"code": {"model": "micro", "curated_per_ability": 8},
                                       "ethics": {"model": "tiny", "curated_per_ability": 64},
                                       "math": {"model": "micro", "curated_per_ability": 24}}
    text = " ".join(synthetic_answer(a).lines)
    assert "for 3 of 3 abilities" in text and "code on micro:" in text and "Per ability on micro or tiny" in text


def test_interval_text_never_prints_a_negative_zero():
    from hpc_instruct.analyze.claims import interval_text

    assert interval_text(2.0, -0.04, 4.1) == "+2.0 [0.0, 4.1]"  # the demo's planner line printed [-0.0, 4.1]
    assert interval_text(-0.01, -0.3, 0.2) == "+0.0 [-0.3, 0.2]"
    assert interval_text(-1.25, -2.0, -0.5, signed=False) == "-1.2 [-2.0, -0.5]"
    assert interval_text(1.0, math.nan, 2.0).endswith("[interval not estimable]")
