"""Checks that a study's reported answers do not overclaim, shared by the simulated-study tests and the demo test.

Each check returns a list of violations (empty: fine), so a failing test prints every offending row at once.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from hpc_instruct.analyze.analysis import Analysis
from hpc_instruct.analyze.answers import findings

_NUMBER = re.compile(r"[<>]?\s*([0-9][0-9,]*\.?[0-9]*(?:e[+-]?\d+)?)")


def efficiency_violations(eff: pd.DataFrame) -> list[str]:
    """Every finite efficiency number inside [low_bound, high_bound] (0 allowed as a lower end), every target
    in [0, 100], and no number in the answer text beyond the bound."""
    bad = []
    for _, r in eff.iterrows():
        low, high = r["low_bound"], r["high_bound"]
        where = f"{r['ability']}/{r['model']}/N={r['curated_per_ability']}"
        if not 0.0 <= r["target"] <= 100.0:
            bad.append(f"{where}: target {r['target']} outside [0, 100]")
        n = r["synthetic_needed"]
        if math.isfinite(n) and not low <= n <= high:
            bad.append(f"{where}: answer {n} beyond [{low}, {high}]")
        if not (r["synthetic_lo"] == 0.0 or low <= r["synthetic_lo"] <= high):
            bad.append(f"{where}: lower end {r['synthetic_lo']} beyond [{low}, {high}]")
        if not (math.isinf(r["synthetic_hi"]) or low <= r["synthetic_hi"] <= high):
            bad.append(f"{where}: upper end {r['synthetic_hi']} beyond [{low}, {high}]")
        for text in (r["answer"], r["interval"]):
            for m in _NUMBER.finditer(str(text)):
                value = float(m.group(1).replace(",", ""))
                if value > high * (1 + 1e-9):
                    bad.append(f"{where}: {text!r} names {value} beyond the bound {high}")
    return bad


def ranking_violations(a: Analysis, lines: list[str] | None = None) -> list[str]:
    """Every 'Most/Least sensitive to data/model size: X' the Findings name must have X's 95% interval
    entirely above (below) every other ranked ability's; every 'A vs B' separation must hold."""
    table = a.sensitivity.table
    ranked = table[table["rank_data"].notna()].set_index("ability")
    bad = []
    for line in findings(a) if lines is None else lines:
        m = re.match(r"(Most|Least) sensitive to (data|model size): (?!not resolved)([\w-]+)", line)
        if m:
            top, kind, name = m.group(1) == "Most", "data" if m.group(2) == "data" else "size", m.group(3)
            rows = ranked[ranked[f"{kind}_slope"].notna()]
            lo, hi = f"{kind}_slope_lo", f"{kind}_slope_hi"
            others = rows.drop(index=name)
            ok = (rows.loc[name, lo] > others[hi]).all() if top else (rows.loc[name, hi] < others[lo]).all()
            if not ok:
                bad.append(f"finding names {name} but intervals overlap: {line}")
        m = re.search(r"\(e\.g\. ([\w-]+) vs ([\w-]+)\)", line)
        if m and line.startswith("Growth paces differ"):
            fast, slow = m.groups()
            if not ranked.loc[fast, "data_slope_lo"] > ranked.loc[slow, "data_slope_hi"]:
                bad.append(f"pair {fast} vs {slow} not separated: {line}")
    return bad


def target_violations(a: Analysis) -> list[str]:
    """Planner predictions (allocation and mix checks) inside [0, 100]."""
    bad = []
    if a.allocation is not None:
        cols = [c for c in a.allocation.comparison.columns if c.endswith("_predicted")]
        values = a.allocation.comparison[cols].to_numpy(float).ravel()
        bad += [f"allocation prediction {v}" for v in values if not 0 <= v <= 100]
    for frame in (a.plan_check.arms, a.plan_check.per_ability):
        bad += [f"mix prediction {v}" for v in frame["predicted"].dropna() if not 0 <= v <= 100]
    return bad


def must_show(a: Analysis) -> dict:
    """The figures issue 12's "Must show" asks of the demo report, computed from the analysis."""
    from hpc_instruct.analyze.answers import efficiency_summary
    from hpc_instruct.analyze.claims import resolved_sign, separated_pairs

    rep = a.aggregate.reported()
    curated = rep[(rep["source"] == "curated") & rep["ability"].isin(a.plan.abilities)]
    above = []
    if not curated.empty:
        top = curated[curated["num_parameters"] == curated["num_parameters"].max()]
        top = top[top["total_samples"] == top["total_samples"].max()]
        means = top.groupby("ability").agg(lo=("accuracy_lo", "mean"), chance=("chance", "mean"))
        above = sorted(means.index[means["lo"] > means["chance"]])
    table = a.sensitivity.table
    ranked = table[table["rank_data"].notna()]
    sized = [r for _, r in ranked.iterrows() if resolved_sign(r["size_slope_lo"], r["size_slope_hi"])]
    eff = efficiency_summary(a)
    eff = eff[eff["ability"].isin(a.plan.abilities)] if not eff.empty else eff
    finite = sorted(eff.loc[eff["synthetic_needed"].notna() & (eff["ratio_hi"] < float("inf")), "ability"]) \
        if not eff.empty else []
    head = a.plan_check.headline()
    return {
        "abilities_above_chance": above,
        "separated_pairs": len(separated_pairs(ranked)),
        "size_resolved": sorted(r["ability"] for r in sized),
        "finite_ratios": finite,
        "transfer_cells": len(a.transfer.cells),
        "held_out_spearman": None if head is None else float(head["spearman"]),
        "held_out_decision_accuracy": None if head is None else float(head["decision_accuracy"]),
    }
