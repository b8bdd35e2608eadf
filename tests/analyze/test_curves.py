"""Growth curves, sensitivity, rankings and curated-vs-synthetic efficiency recover the planted truth.

Covers: hpc_instruct.analyze.curves, hpc_instruct.analyze.fits, hpc_instruct.analyze.sensitivity,
hpc_instruct.analyze.efficiency."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hpc_instruct.analyze.curves import Curve
from hpc_instruct.analyze.efficiency import synthetic_efficiency
from hpc_instruct.analyze.fits import (
    fit_log_linear,
    fit_saturating,
    fit_spline,
    invert_broken_line,
    invert_saturating,
    saturating,
)


@pytest.fixture(scope="module")
def analysis(main_analysis):
    return main_analysis


def test_planted_data_slopes_are_recovered_within_their_intervals(analysis, main_study):
    table = analysis.sensitivity.table.set_index("ability")
    inside, worst = 0, 0.0
    for ability in main_study.plan.abilities:
        true = main_study.truth.abilities[ability].slope
        row = table.loc[ability]
        inside += row["data_slope_lo"] <= true <= row["data_slope_hi"]
        worst = max(worst, abs(row["data_slope"] - true) / row["data_slope_se"])
    # 95% intervals: with 10 abilities one or two may miss by chance; none may be far off.
    assert inside >= 8 and worst < 4, (inside, worst)


def test_planted_size_slopes_are_recovered(analysis, main_study):
    table = analysis.sensitivity.table.set_index("ability")
    inside = sum(
        table.loc[a, "size_slope_lo"]
        <= main_study.truth.abilities[a].size_slope
        <= table.loc[a, "size_slope_hi"]
        for a in main_study.plan.abilities
    )
    assert inside >= 8


def test_ranking_matches_the_planted_one_and_is_stable_across_seeds(analysis, main_study):
    table = analysis.sensitivity.table
    ranked = table[table["ability"].isin(main_study.plan.abilities)]
    planted = [main_study.truth.abilities[a].slope for a in ranked["ability"]]
    assert stats.kendalltau(ranked["data_slope"], planted).statistic >= 0.85
    assert list(ranked["rank_data"]) == sorted(ranked["rank_data"])  # the table is ordered by rank
    assert len(analysis.sensitivity.stability) == 1  # seeds 0 and 1: one pair
    assert analysis.sensitivity.tau_data >= 0.7 and analysis.sensitivity.tau_size >= 0.5


def test_out_of_domain_and_overall_are_fitted_but_not_ranked(analysis):
    table = analysis.sensitivity.table.set_index("ability")
    assert {"overall", "ceval_physician"} <= set(table.index)
    assert table.loc[["overall", "ceval_physician"], "rank_data"].isna().all()


def test_curves_per_model_and_source(analysis, main_study):
    curves = analysis.curve_table
    assert set(curves["source"]) == {"curated", "synthetic"}
    assert set(curves.loc[curves["source"] == "synthetic", "model"]) == {"mini"}
    curated = curves[(curves["source"] == "curated") & (curves["ability"] == "role_play")]
    assert len(curated) == 3 and (curated["points"] == 12).all()  # 6 volumes x 2 seeds per model
    synthetic = curves[(curves["source"] == "synthetic") & curves["ability"].isin(["role_play", "math"])]
    assert (synthetic["preferred"] == "saturating").all()  # planted: synthetic data saturates
    assert (synthetic["n95"] < 10240).all() and synthetic["saturates_in_range"].all()


def test_synthetic_never_buys_many_curated_samples(analysis, main_study):
    eff = analysis.efficiency.set_index(["ability", "curated_per_ability"])
    truth = main_study.truth
    strong = [a for a in main_study.plan.abilities if truth.abilities[a].slope >= 7]  # clear curves
    assert len(strong) >= 4
    for ability in strong:
        top = eff.loc[(ability, 1000)]
        assert top["never"] and top["p_never"] > 0.9
        assert top["answer"] == "> 40,960" and top["beyond"] == "above"  # 4 x the largest synthetic volume
        for n in (1, 4):
            row = eff.loc[(ability, n)]
            planted = truth.synthetic_equivalent(ability, n)
            assert row["synthetic_lo"] <= planted <= row["synthetic_hi"], (ability, n, planted, row["answer"])
            if math.isfinite(row["synthetic_needed"]):
                assert row["ratio"] == pytest.approx(
                    row["synthetic_needed"] / (n * len(main_study.plan.abilities))
                )


def test_fits_on_exact_curves():
    n = np.array([1, 4, 16, 64, 256, 1000], dtype=float)
    line = fit_log_linear(n, 30 + 5 * np.log10(n), y_se=np.full(6, 1.0))
    assert line.a == pytest.approx(30) and line.b == pytest.approx(5)
    assert line.invert(40) == pytest.approx(100)
    assert line.fit.source_of_error == "items"  # a perfect fit has no residual error; items set the floor
    sat = fit_saturating(n, saturating(n, 70, 30, 0.01))
    assert (sat.ceiling, sat.start, sat.rate) == pytest.approx((70, 30, 0.01), rel=1e-3)
    assert sat.n_at(0.95) == pytest.approx(math.log(20) / 0.01, rel=1e-3)
    assert sat.invert(69.0) == pytest.approx(math.log(40 / 1) / 0.01, rel=1e-3)
    assert math.isinf(sat.invert(75)) and invert_saturating(np.array([20.0]), 70, 30, 0.01)[0] == 0
    assert fit_saturating(n[:2], n[:2]) is None and fit_log_linear(n[:1], n[:1]) is None


def test_paces_that_differ_are_named_in_the_findings(analysis, main_study):
    from hpc_instruct.analyze.report_content import findings, separated_pairs

    table = analysis.sensitivity.table
    pairs = separated_pairs(table[table["rank_data"].notna()])  # the ten ranked abilities, not out-of-domain sets
    rows = table.set_index("ability")
    for fast, slow in pairs:
        assert rows.loc[fast, "data_slope_lo"] > rows.loc[slow, "data_slope_hi"]
    slope = {a: main_study.truth.abilities[a].slope for a in main_study.plan.abilities}
    planted = max(slope, key=slope.get), min(slope, key=slope.get)
    assert planted in pairs  # the planted fastest and slowest abilities are told apart
    line = next(f for f in findings(analysis) if f.startswith("Growth paces differ"))
    assert f"{len(pairs)} of 45 ability pairs" in line


def test_the_broken_line_runs_through_the_volume_means_and_reads_back():
    n = np.repeat([80.0, 240.0, 640.0], 2)
    y = np.array([36.0, 41.0, 43.0, 43.0, 89.0, 88.0])  # flat, then a jump: a format learned late
    spline = fit_spline(n, y, y_se=np.full(6, 2.0))
    assert spline.predict(np.array([80.0, 240.0, 640.0])) == pytest.approx([38.5, 43.0, 88.5])
    assert spline.fit.dof == 3 and np.isfinite(spline.fit.cov).all()
    knots, values = spline.knots, spline.knot_values(spline.fit.coef)
    assert values[0] == pytest.approx([38.5, 43.0, 88.5])
    # halfway up the jump: halfway between log10(240) and log10(640); past the top: along the last segment
    mid = invert_broken_line(np.array([65.75]), knots, values)[0]
    assert mid == pytest.approx(10 ** ((math.log10(240) + math.log10(640)) / 2))
    slope = 45.5 / (math.log10(640) - math.log10(240))
    assert invert_broken_line(np.array([90.0]), knots, values)[0] == pytest.approx(640 * 10 ** (1.5 / slope))
    flat = np.array([[30.0, 30.0, 29.0]])
    assert invert_broken_line(np.array([35.0]), knots, flat)[0] == math.inf  # never: the end segment falls
    assert invert_broken_line(np.array([20.0]), knots, flat)[0] == 0.0  # there with no data at all
    assert invert_broken_line(np.array([30.0]), knots, values)[0] < 80  # on the first segment's extension
    assert fit_spline(n[:4], y[:4]) is None  # two volumes: that is the log-linear line


def test_a_curve_that_jumps_gets_a_bounded_efficiency_answer():
    """The demo's tiny models learn role-play between 240 and 640 samples, curated and synthetic alike. A
    straight line in log10(n) misses every point of such a curve, and that lack of fit put the interval's upper
    end past 4x the largest synthetic volume; the broken line through the volumes answers within the data."""
    def curve(source, volumes, scores, with_spline=True):
        n, y, se = np.asarray(volumes, float), np.asarray(scores, float), np.full(len(volumes), 2.0)
        sat = fit_saturating(n, y)
        return Curve("role_play", source, "tiny", 1000, n, y, se, fit_log_linear(n, y, se), sat, "log-linear",
                     fit_spline(n, y, se) if with_spline else None)

    curated = ([8] * 3 + [24] * 3 + [64] * 3, [46, 37, 35, 50, 41, 45, 89, 93, 88])
    synthetic = ([80] * 2 + [240] * 2 + [640] * 2, [36, 41, 43, 43, 89, 88])
    eff = synthetic_efficiency({("role_play", "curated", "tiny"): curve("curated", *curated),
                                ("role_play", "synthetic", "tiny"): curve("synthetic", *synthetic)}, 10)
    top = eff.set_index("curated_per_ability").loc[64]
    assert (top["curated_form"], top["synthetic_form"]) == ("spline", "spline")
    assert top["target"] == pytest.approx(90.0)  # the curated mean at 64, not a line's 82.7
    assert 640 < top["synthetic_needed"] < 700 and top["beyond"] == ""
    assert top["synthetic_lo"] > 400 and top["synthetic_hi"] < 1000  # within the data's reach
    lines = synthetic_efficiency({("role_play", "curated", "tiny"): curve("curated", *curated, False),
                                  ("role_play", "synthetic", "tiny"): curve("synthetic", *synthetic, False)}, 10)
    assert math.isinf(lines.set_index("curated_per_ability").loc[64, "synthetic_hi"])  # what the line said
