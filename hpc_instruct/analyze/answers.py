"""The study's four questions, answered first: (i) sensitivity to data and model size, (ii) curated vs synthetic,
(iii) transfer, (iv) the data plan. Each answer is a one-line verdict, a few lines of numbers with their 95%
intervals, and the name of its figure; the report shows them before any detailed table.

Every ranking or sign is decided by claims.py from intervals: "most sensitive: X" appears only when X's interval
lies above every other's, otherwise the line says "not resolved" and names the abilities that overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpc_instruct.analyze.analysis import Analysis
from hpc_instruct.analyze.claims import extreme, interval_text, resolved_sign, separated_pairs
from hpc_instruct.analyze.selection import OVERALL


@dataclass(frozen=True)
class Answer:
    key: str  # "sensitivity" | "synthetic" | "transfer" | "plan"
    title: str
    verdict: str
    lines: tuple[str, ...]
    figure: str  # plots name ('' for none)


def answers(a: Analysis) -> list[Answer]:
    return [sensitivity_answer(a), synthetic_answer(a), transfer_answer(a), plan_answer(a)]


def _ranked(a: Analysis) -> pd.DataFrame:
    s = a.sensitivity.table
    return s[s["rank_data"].notna()].sort_values("rank_data")


def _extreme_line(table: pd.DataFrame, kind: str, top: bool) -> str | None:
    e = extreme(table, kind, top)
    if e is None:
        return None
    word = "Most" if top else "Least"
    what = "data" if kind == "data" else "model size"
    unit = "samples" if kind == "data" else "parameters"
    if e.resolved:
        return (f"{word} sensitive to {what}: {e.name} ({interval_text(e.value, e.lo, e.hi)} points per 10x "
                f"{unit}; its interval lies {'above' if top else 'below'} every other ability's).")
    return (f"{word} sensitive to {what}: not resolved ({', '.join(e.contenders)} overlap at the "
            f"{'top' if top else 'bottom'}).")


def sensitivity_answer(a: Analysis) -> Answer:
    ranked = _ranked(a)
    k = len(ranked)
    lines: list[str] = []
    pairs = separated_pairs(ranked)
    total = k * (k - 1) // 2
    if k >= 2:
        lines.append(
            f"Growth paces differ: {len(pairs)} of {total} ability pairs have data sensitivities whose 95% "
            f"intervals do not overlap (e.g. {pairs[0][0]} vs {pairs[0][1]})." if pairs else
            f"Growth paces not told apart: none of {total} ability pairs has data sensitivities whose 95% "
            "intervals do not overlap."
        )
        lines += [x for x in (_extreme_line(ranked, "data", True), _extreme_line(ranked, "data", False)) if x]
    sized = ranked[ranked["size_slope"].notna()]
    size_resolved = [r for _, r in sized.iterrows() if resolved_sign(r["size_slope_lo"], r["size_slope_hi"])]
    if len(sized) >= 2:
        examples = ", ".join(
            f"{r['ability']} {interval_text(r['size_slope'], r['size_slope_lo'], r['size_slope_hi'])}"
            for r in sorted(size_resolved, key=lambda r: -r["size_slope"])[:3]
        )
        lines.append(
            f"Sensitivity to model size resolved (95% interval excludes 0) for {len(size_resolved)} of "
            f"{len(sized)} abilities" + (f": {examples}." if examples else ".")
        )
        lines.append(_extreme_line(sized, "size", True) or "")
    else:
        lines.append("Sensitivity to model size: not estimable (one model size).")
    failing = a.parse_failures[(a.parse_failures["kind"] == "trained") & (a.parse_failures["rate"] > 0)]
    if not failing.empty:
        worst = failing.sort_values("rate", ascending=False).drop_duplicates("ability").head(4)
        lines.append("Replies with no parsable answer (trained models, reported checkpoints; wrong whatever the "
                     "model knew): " + ", ".join(f"{r['ability']} {r['rate']:.0f}% ({r['model']})"
                                                for _, r in worst.iterrows()) + ".")
    s = a.sensitivity
    if math.isfinite(s.tau_data):
        lines.append(
            "Ranking stability across seeds (mean Kendall tau, 95% interval over abilities): data "
            f"{interval_text(s.tau_data, *s.tau_data_interval, signed=False, digits=2)}, size "
            f"{interval_text(s.tau_size, *s.tau_size_interval, signed=False, digits=2)}."
        )
    else:
        lines.append("Ranking stability across seeds: not measured (one seed).")
    if k < 2:
        verdict = "Not answered: fewer than two abilities with curated growth curves."
    else:
        verdict = (
            ("Shown: abilities differ in their sensitivity to data" if pairs else
             "Not shown: no two abilities' data sensitivities are told apart")
            + (f" ({len(pairs)} of {total} pairs separated)" if pairs else "")
            + (f"; model size matters for {len(size_resolved)} of {len(sized)}." if len(sized) >= 2 else
               "; model size not studied.")
        )
    return Answer("sensitivity", "(i) Sensitivity to data volume and model size", verdict,
                  tuple(x for x in lines if x), "sensitivity")


def efficiency_summary(a: Analysis) -> pd.DataFrame:
    """Per ability, the efficiency row worth quoting. Preferred in turn: a row whose answer and both interval
    ends lie within the data and whose curated growth is resolved, one within the data, one whose answer is,
    any row; within a tier the largest model with a synthetic curve, then the largest curated N. Every row stays
    in the full table; the summary quotes the most informative one and names its model."""
    eff = a.efficiency[a.efficiency["ability"].isin(a.plan.abilities + (OVERALL,))]
    if eff.empty:
        return eff
    inside = eff["synthetic_needed"].notna()
    bounded = inside & eff["ratio_hi"].map(math.isfinite)
    tier = np.select([bounded & eff["curated_grows"], bounded, inside], [3, 2, 1], default=0)
    ranked = eff.assign(_tier=tier).sort_values(["_tier", "num_parameters", "curated_per_ability"])
    best = ranked.groupby("ability", sort=False).tail(1).drop(columns="_tier")
    order = {ability: i for i, ability in enumerate(dict.fromkeys(eff["ability"]))}
    return best.sort_values("ability", key=lambda col: col.map(order)).reset_index(drop=True)


def synthetic_answer(a: Analysis) -> Answer:
    summary = efficiency_summary(a)
    title = "(ii) Curated vs synthetic data"
    if summary.empty:
        return Answer("synthetic", title, "Not answered: no model has both curated and synthetic curves.", (), "")
    every = summary[summary["ability"] != OVERALL]
    per = every[every["curated_grows"]]
    flat = every[~every["curated_grows"]]
    finite = per[per["synthetic_needed"].notna() & per["ratio_hi"].map(math.isfinite)]
    curated_better = per[per["ratio_lo"] > 1]
    synthetic_better = per[per["ratio_hi"] < 1]
    beyond = per[per["beyond"] == "above"]
    models = list(dict.fromkeys(a.efficiency.sort_values("num_parameters")["model"]))
    where = f"On {models[0]}" if len(models) == 1 else f"Per ability on {' or '.join(models)} (where bounded)"
    lines = [
        f"{where}: finite synthetic-per-curated ratios with finite intervals for {len(finite)} of {len(per)} "
        "abilities whose curated growth is resolved (answers are bounded to 4x the synthetic volumes studied)."
    ]
    if not flat.empty:
        lines.append("No resolved curated growth to match (curated slope interval includes 0): "
                     + ", ".join(flat["ability"]) + ".")
    for _, r in finite.sort_values("ratio").iterrows():
        lines.append(
            f"{r['ability']} on {r['model']}: {r['curated_per_ability']:,} curated per ability = {r['answer']} synthetic "
            f"{r['interval']} (ratio {r['ratio']:.2g} [{r['ratio_lo']:.2g}, {r['ratio_hi']:.2g}])."
        )
    loose = per[per["synthetic_needed"].notna() & ~per["ratio_hi"].map(math.isfinite)]
    if not loose.empty:
        lines.append(
            "An answer within the data, but its interval runs past the bound: "
            + ", ".join(f"{r['ability']} ({r['model']}: {r['answer']} {r['interval']})" for _, r in loose.iterrows())
            + "."
        )
    if not beyond.empty:
        lines.append(
            "Beyond the data (synthetic would need more than 4x its largest volume): "
            + ", ".join(f"{r['ability']} ({r['model']}: {r['answer']})" for _, r in beyond.iterrows()) + "."
        )
    overall = summary[summary["ability"] == OVERALL]
    if not overall.empty:
        r = overall.iloc[0]
        lines.append(f"Overall on {r['model']}: {r['curated_per_ability']:,} curated per ability = {r['answer']} synthetic "
                     f"{r['interval']}.")
    verdict = (
        f"Curated data is more efficient per sample (ratio interval above 1) for {len(curated_better)} of "
        f"{len(per)} abilities with resolved curated growth; synthetic for {len(synthetic_better)}; not resolved "
        f"for {len(per) - len(curated_better) - len(synthetic_better)}."
    )
    return Answer("synthetic", title, verdict, tuple(lines), "efficiency")


def transfer_answer(a: Analysis) -> Answer:
    cells = a.transfer.cells
    title = "(iii) Transfer between abilities"
    if cells.empty:
        return Answer("transfer", title, "Not answered: the study has no single-ability arm.", (), "")
    off = cells[cells["trained"] != cells["evaluated"]]
    sign = off.apply(lambda r: resolved_sign(r["delta_lo"], r["delta_hi"]), axis=1) if not off.empty else off
    pos, neg = off[sign > 0], off[sign < 0]
    ood = off[off["out_of_domain"]]
    ood_pos = ood[ood.apply(lambda r: resolved_sign(r["delta_lo"], r["delta_hi"]) > 0, axis=1)] if len(ood) else ood
    lines = [
        f"{len(pos)} of {len(off)} off-diagonal cells show transfer (95% interval above 0), {len(neg)} "
        f"interference (below 0); the rest are not resolved.",
    ]
    for label, frame in (("transfer", pos), ("interference", neg)):
        if not frame.empty:
            r = frame.loc[frame["delta"].abs().idxmax()]
            lines.append(f"Example of {label}: {r['trained']} -> {r['evaluated']} "
                         f"{interval_text(r['delta'], r['delta_lo'], r['delta_hi'])} points ({r['model']}, "
                         f"{r['samples']:,} samples).")
    if len(ood):
        lines.append(f"Out-of-domain sets: {len(ood_pos)} of {len(ood)} cells improve (interval above 0).")
    verdict = (
        f"Shown: instruction data transfers across abilities in {len(pos)} of {len(off)} cells."
        if len(pos) else "Not shown: no off-diagonal cell's interval lies above 0."
    )
    return Answer("transfer", title, verdict, tuple(lines), "transfer")


def plan_answer(a: Analysis) -> Answer:
    title = "(iv) A data plan from these findings"
    lines: list[str] = []
    al = a.allocation
    if al is not None:
        lines.append(
            f"Predicted on {al.model}'s curves for {al.budget:,} samples: plan {al.score:.1f}, uniform "
            f"{al.uniform_score:.1f} ({al.gain_over_uniform:+.2f} points)."
        )
    pc = a.plan_check
    head = pc.headline()
    if head is not None:
        lines.append(
            f"Held-out mixes ({int(head['mixes'])}, {head['model']}; no fit used them): Spearman rho "
            f"{interval_text(head['spearman'], head['spearman_lo'], head['spearman_hi'], signed=False, digits=2)}"
            f" (seed ceiling {_f(head['ceiling_spearman'])}), decision accuracy {_f(head['decision_accuracy'])} "
            f"(seed ceiling {_f(head['ceiling_decision_accuracy'])}), mean absolute error "
            f"{head['mae']:.1f} points (seed sd {_f(head['seed_sd'], 1)})."
            + (f" That is at the seed ceiling (above it only by chance, with {int(head['mixes'])} mixes): no "
               "predictor could rank them better." if head["spearman"] >= head["ceiling_spearman"] else "")
        )
        errors = pc.ability_error[pc.ability_error["model"] == head["model"]].sort_values("mae")
        if not errors.empty:
            lines.append("Per-ability error (points): " + ", ".join(
                f"{r['ability']} {r['mae']:.1f}" for _, r in errors.iterrows()) + ".")
    named = pc.arms[(pc.arms["source"] == "mix") & (pc.arms["predicted"].notna() | pc.arms["stated"].notna())]
    if not named.empty:
        lines.append("Named mixes, predicted -> measured: " + "; ".join(
            f"{r['arm']} {_prediction(r):.1f} -> {interval_text(r['measured'], r['measured_lo'], r['measured_hi'], signed=False)}"
            for _, r in named.iterrows()) + ".")
    for _, r in pc.contrasts.iterrows():
        lines.append(
            f"Measured {r['contrast']} on {r['model']}: "
            f"{interval_text(r['measured'], r['measured_lo'], r['measured_hi'])} points "
            f"(predicted {_prediction(r):+.1f})."
        )
    measured = pc.contrasts[pc.contrasts["contrast"] == "plan - uniform"]
    if not measured.empty:
        r = measured.iloc[0]
        s = resolved_sign(r["measured_lo"], r["measured_hi"])
        verdict = {1: "Shown: the plan beats the uniform split, measured.",
                   -1: "Not shown: the plan scores below the uniform split, measured.",
                   0: "Not resolved: plan and uniform split measure the same within their interval."}[s]
    elif head is not None:
        rho = head["spearman_lo"]
        verdict = ("Predictions rank held-out mixes reliably (rho interval above 0); the plan itself is not "
                   "measured yet: `hpci plan-data STUDY --budget N --write`." if math.isfinite(rho) and rho > 0
                   else "Not shown: predictions do not rank held-out mixes better than chance; the plan itself is "
                   "not measured.")
    else:
        verdict = ("Predicted only: nothing tests the plan yet (add sweep.held_out, or run the recipe `hpci "
                   "plan-data STUDY --budget N --write` writes).")
    return Answer("plan", title, verdict, tuple(lines), "planner")


def _prediction(row) -> float:
    """The fitted prediction where this study has curves, else the one the recipe states."""
    return row["predicted"] if math.isfinite(row["predicted"]) else row["stated"]


def _f(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def findings(a: Analysis) -> list[str]:
    """The answers as a flat list of lines (verdicts first within each question): the Findings."""
    out = []
    for ans in answers(a):
        out += [ans.verdict, *ans.lines]
    return out
