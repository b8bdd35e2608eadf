"""What the report says, independent of its format: a few findings in words, the sections (title, explanation,
figure, tables with the columns worth showing) and the provenance facts. report.py renders these as HTML and
Markdown, so both always show the same numbers.
"""

from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from hpc_instruct import __version__
from hpc_instruct.analyze.analysis import Analysis
from hpc_instruct.analyze.selection import OVERALL
from hpc_instruct.study_dir import StudyDir

ANALYSIS_LIBRARIES = ("numpy", "pandas", "pyarrow", "scipy", "matplotlib", "duckdb")


@dataclass(frozen=True)
class Section:
    title: str
    intro: str
    figure: str  # name of a figure from plots.py shown at the top of the section ('' for none)
    tables: tuple[tuple[pd.DataFrame, tuple[str, ...]], ...]  # (table, columns to show)


def _cols(names: str) -> tuple[str, ...]:
    return tuple(names.split())


def separated_pairs(table) -> list[tuple[str, str]]:
    """Ability pairs (faster first) whose data-slope intervals do not overlap, the widest gap first."""
    rows = [r for _, r in table.iterrows() if math.isfinite(r["data_slope_lo"]) and math.isfinite(r["data_slope_hi"])]
    gaps = [(a["data_slope_lo"] - b["data_slope_hi"], a["ability"], b["ability"])
            for a in rows for b in rows if a["data_slope_lo"] > b["data_slope_hi"]]
    return [(fast, slow) for _, fast, slow in sorted(gaps, reverse=True)]


def findings(a: Analysis) -> list[str]:
    """One line per question the study answers, in words, from the tables below them."""
    out = []
    s = a.sensitivity.table
    ranked = s[s["rank_data"].notna()].sort_values("rank_data")
    if len(ranked) >= 2:
        top, low = ranked.iloc[0], ranked.iloc[-1]
        out.append(
            f"Most sensitive to data: {top['ability']} (+{top['data_slope']:.1f} points per 10x samples); "
            f"least: {low['ability']} ({low['data_slope']:+.1f})."
        )
        pairs = separated_pairs(ranked)
        out.append(
            f"Growth paces differ: {len(pairs)} of {len(ranked) * (len(ranked) - 1) // 2} ability pairs have "
            "data sensitivities whose 95% intervals do not overlap"
            + (f" (e.g. {pairs[0][0]} vs {pairs[0][1]})." if pairs else "; no pace is distinguishable from another.")
        )
    sized = s[s["rank_size"].notna() & s["size_slope"].notna()].sort_values("rank_size")
    if len(sized) >= 2:
        out.append(
            f"Most sensitive to model size: {sized.iloc[0]['ability']} "
            f"(+{sized.iloc[0]['size_slope']:.1f} points per 10x parameters); least: {sized.iloc[-1]['ability']}."
        )
    if math.isfinite(a.sensitivity.tau_data):
        out.append(
            f"Ranking stability across seeds (mean Kendall tau): data {a.sensitivity.tau_data:.2f}, "
            f"size {a.sensitivity.tau_size:.2f}."
        )
    eff = a.efficiency[a.efficiency["ability"].isin(a.plan.abilities)]
    if not eff.empty:
        top_n = eff["curated_per_ability"].max()
        never = sorted(eff.loc[(eff["curated_per_ability"] == top_n) & eff["never"], "ability"].unique())
        out.append(
            f"Synthetic data never reaches the score of {top_n:,} curated samples per ability for "
            f"{len(never)} of {eff['ability'].nunique()} abilities"
            + (f" ({', '.join(never)})." if never else ".")
        )
    cells = a.transfer.cells
    off = cells[cells["trained"] != cells["evaluated"]] if not cells.empty else cells
    if not off.empty:
        best, worst = off.loc[off["delta"].idxmax()], off.loc[off["delta"].idxmin()]
        out.append(
            f"Largest transfer: {best['trained']} -> {best['evaluated']} ({best['delta']:+.1f} points); "
            f"largest interference: {worst['trained']} -> {worst['evaluated']} ({worst['delta']:+.1f})."
        )
    if a.allocation is not None:
        al = a.allocation
        out.append(
            f"Allocating {al.budget:,} samples by the fitted curves predicts {al.score:.1f} vs {al.uniform_score:.1f} "
            f"for a uniform split ({al.gain_over_uniform:+.2f} points) on {al.model}."
        )
    return out


def sections(a: Analysis) -> list[Section]:
    rep = a.aggregate.reported()
    overall = rep[rep["ability"] == OVERALL].sort_values(
        ["source", "num_parameters", "total_samples", "seed"]
    )
    s, t = a.sensitivity, a.transfer
    out = [
        Section(
            "Growth curves",
            "Per ability, source and model: log-linear slope (points per 10x samples) with its "
            "95% interval, the saturating fit's ceiling and n95 (samples at 95% of its rise), and the form AICc "
            "prefers.",
            "growth",
            (
                (
                    a.curve_table,
                    _cols("ability source model points slope slope_lo slope_hi ceiling n95 preferred"),
                ),
            ),
        ),
        Section(
            "Overall score per trial",
            "Reported checkpoint (test split); the mean over the study's abilities, "
            "each weighing the same, out-of-domain sets excluded. Normalised = (acc - chance) / (100 - chance).",
            "",
            (
                (
                    overall,
                    _cols(
                        "label size source total_samples checkpoint accuracy accuracy_lo accuracy_hi "
                        "chance normalized"
                    ),
                ),
            ),
        ),
        Section(
            "Sensitivity to data and model size",
            "Additive fit per ability over all curated trials: accuracy = "
            "a + b log10(samples) + c log10(parameters); intervals from the paired item bootstrap or the "
            "residuals, whichever is wider ('error'). Below: Kendall tau between the rankings of each pair of "
            "seeds.",
            "sensitivity",
            (
                (
                    s.table,
                    _cols(
                        "ability rank_data data_slope data_slope_lo data_slope_hi rank_size size_slope "
                        "size_slope_lo size_slope_hi error"
                    ),
                ),
                (s.stability, _cols("seed_a seed_b tau_data tau_size")),
            ),
        ),
        Section(
            "Curated vs synthetic",
            "Synthetic samples (in total) that reach the curated score of N per ability, "
            "with a 95% interval; ratio = synthetic per curated sample; 'never' = the synthetic curve's ceiling is "
            "below the target (p_never: share of parameter draws that never reach it).",
            "",
            (
                (
                    a.efficiency,
                    _cols(
                        "ability model curated_per_ability target answer synthetic_lo synthetic_hi "
                        "ratio p_never synthetic_form"
                    ),
                ),
            ),
        ),
        Section(
            "Transfer",
            f"Single-ability trials ({t.model or 'none'}, {t.samples:,} samples): accuracy change in "
            "points vs the untrained model, mean over seeds, with 95% intervals.",
            "transfer",
            ((t.cells, _cols("model trained samples evaluated delta delta_lo delta_hi seeds")),),
        ),
    ]
    if a.allocation is not None:
        al = a.allocation
        note = (
            f"Budget {al.budget:,} samples on {al.model}: predicted weighted mean {al.score:.2f} vs "
            f"{al.uniform_score:.2f} for a uniform split ({al.gain_over_uniform:+.2f} points), and the paper's "
            "reconstruct mix on the same curves."
        )
        if al.extrapolated:
            note += f" Beyond the observed volumes for: {', '.join(al.extrapolated)}."
        out.append(
            Section("Data allocation plan", note, "", ((al.comparison, tuple(al.comparison.columns)),))
        )
    rules = "; ".join(sorted(set(a.aggregate.selection["rule"]))) or "no trained trials"
    out.append(
        Section(
            "Checkpoint selection",
            f"Rule: {rules}.",
            "",
            (
                (
                    a.aggregate.selection,
                    _cols("label chosen_checkpoint valid_mean epochs_compared writer_checkpoint agrees note"),
                ),
            ),
        )
    )
    return out


def provenance(a: Analysis, study_dir: Path) -> tuple[str, list[tuple[str, str]]]:
    """The resolved recipe text and (name, value) facts: data, hashes and versions found in the rows."""
    sdir = StudyDir(study_dir)
    recipe = sdir.recipe.read_text(encoding="utf-8") if sdir.recipe.is_file() else "(no study.yaml)"
    facts = [
        ("study", a.plan.study),
        ("plan data fingerprint", a.plan.fingerprint),
        ("aggregated inputs id", a.aggregate.inputs_id),
    ]
    facts += [(k.replace("_", " "), "; ".join(v) or "-") for k, v in a.aggregate.provenance.items()]
    libraries = ", ".join(f"{lib} {_version(lib)}" for lib in ANALYSIS_LIBRARIES)
    facts.append(("analysis", f"hpc_instruct {__version__}; {libraries}"))
    facts.append(("generated", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")))
    return recipe, facts


def _version(lib: str) -> str:
    try:
        return importlib.metadata.version(lib)
    except importlib.metadata.PackageNotFoundError:
        return "absent"
