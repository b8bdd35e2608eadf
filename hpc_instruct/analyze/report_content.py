"""What the report says, independent of its format: a few findings in words, the sections (title, explanation,
figure, tables with the columns worth showing) and the provenance facts. report.py renders these as HTML and
Markdown, so both always show the same numbers.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from hpc_instruct import __version__
from hpc_instruct.analyze.analysis import Analysis
from hpc_instruct.analyze.answers import findings  # noqa: F401  (re-exported: what the report says first)
from hpc_instruct.analyze.claims import separated_pairs  # noqa: F401  (re-exported for callers of this module)
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
            "seeds (the answer above gives their mean with an interval over abilities).",
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
            "Synthetic samples (in total) that reach the curated score of N per ability (target: the "
            "curated curve at N, kept in [0, 100]), with a 95% interval; ratio = synthetic per curated sample. "
            "Each curve is read by the form with the lower AICc (curated_form, synthetic_form): a line in "
            "log10(n), a saturating curve, or a spline, the broken line through the measured volumes, which "
            "follows a curve that jumps between two volumes. "
            "Answers are bounded to the synthetic volumes studied / 4 .. x 4: beyond that the table says '> N' "
            "or '< N', never a number (p_never: share of parameter draws whose synthetic curve never reaches "
            "the target).",
            "",
            (
                (
                    a.efficiency,
                    _cols("ability model curated_per_ability target answer interval ratio_text p_never "
                          "curated_form synthetic_form"),
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
    pc = a.plan_check
    if not pc.empty:
        out.append(
            Section(
                "Planner predictions vs measurements",
                "Every mix trial, predicted from the curated curves of its model (fitted without it) and "
                "measured (mean over seeds, 95% interval). Held-out mixes: Spearman rho and pairwise decision "
                "accuracy between predicted and measured overall scores, next to the ceiling seed noise allows "
                "(a predictor of the true scores against the measured seed mean, from the agreement between "
                "single seeds); per-ability mean absolute error and bias. 'stated': "
                "the prediction the recipe carries (hpci plan-data --write).",
                "planner",
                (
                    (pc.held_out, tuple(pc.held_out.columns)),
                    (pc.contrasts, tuple(pc.contrasts.columns)),
                    (pc.arms, _cols("model arm source total_samples seeds measured measured_lo measured_hi "
                                    "predicted stated error")),
                    (pc.ability_error, tuple(pc.ability_error.columns)),
                ),
            )
        )
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
    if not a.parse_failures.empty:
        out.append(
            Section(
                "Parse failures",
                "Generated replies (question formats scored by parsing) from which the scorer extracted no answer, "
                "at the reported checkpoints: such an item is wrong whatever the model knew, so a high rate "
                "explains a score below chance. Ranking formats always yield an answer and are not counted.",
                "",
                ((a.parse_failures, _cols("ability model kind generated no_answer rate")),),
            )
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
