"""Figures of the answers that plots.py does not draw: curated-vs-synthetic ratios, and the planner's predicted
against measured scores of every mix (held-out mixes, plan, uniform, reconstruct), PNG and SVG, headless.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from hpc_instruct.analyze.plots import Figure, _display, _save


def efficiency_figure(summary: pd.DataFrame, out: Path) -> Figure | None:
    """Per ability: synthetic samples per curated sample, with its 95% interval, on a log axis; answers beyond
    the extrapolation bound are drawn as arrows from the bound (no number is invented past it)."""
    from matplotlib.figure import Figure as MplFigure

    if summary.empty:
        return None
    rows = summary.sort_values("ability").reset_index(drop=True)
    fig = MplFigure(figsize=(6.2, 0.9 + 0.32 * len(rows)), layout="constrained")
    ax = fig.subplots()
    floor = float(np.nanmin(rows["low_bound"] / rows["curated_total"])) / 2
    for i, r in rows.iterrows():
        lo = r["ratio_lo"] if r["ratio_lo"] > 0 else floor
        hi = r["ratio_hi"] if math.isfinite(r["ratio_hi"]) else r["high_bound"] / r["curated_total"]
        ax.plot([lo, hi], [i, i], color="#4c72b0", lw=1.4)
        if not math.isfinite(r["ratio_hi"]):
            ax.annotate("", xy=(hi * 2.2, i), xytext=(hi, i), arrowprops={"arrowstyle": "->", "color": "#4c72b0"})
        if math.isfinite(r["ratio"]):
            ax.plot([r["ratio"]], [i], "o", color="#1d3f73", ms=5)
        else:
            edge = r["high_bound"] if r["beyond"] == "above" else r["low_bound"]
            ax.plot([edge / r["curated_total"]], [i], ">" if r["beyond"] == "above" else "<", color="#c44e52", ms=6)
    ax.axvline(1.0, color="0.3", lw=0.7, ls="--")
    ax.set_xscale("log")
    one_model = rows["model"].nunique() == 1
    ax.set_yticks(range(len(rows)), [f"{_display(r['ability'], short=True)} ("
                                     f"{'' if one_model else r['model'] + ', '}N={r['curated_per_ability']:,})"
                                     for _, r in rows.iterrows()], fontsize=8)
    ax.set_xlabel("synthetic samples per curated sample (right of 1: curated is more efficient)", fontsize=8)
    ax.set_title("Curated vs synthetic" + (f" on {rows['model'].iloc[0]}" if one_model else ""), fontsize=10)
    ax.grid(axis="x", alpha=0.25, lw=0.5)
    return _save(fig, out, "efficiency", "Synthetic samples that buy the score of one curated sample, with 95% "
                 "intervals; red arrows: beyond 4x the synthetic data studied.")


def planner_figure(arms: pd.DataFrame, out: Path) -> Figure | None:
    """Predicted (x; the recipe's stated prediction where this study has no curves) vs measured (y) overall
    score of every mix trial arm, with measured 95% intervals."""
    from matplotlib.figure import Figure as MplFigure

    arms = arms.assign(predicted=arms["predicted"].fillna(arms["stated"])).dropna(subset=["predicted"])
    if arms.empty:
        return None
    fig = MplFigure(figsize=(5.0, 4.4), layout="constrained")
    ax = fig.subplots()
    style = {"held_out": ("o", "#4c72b0", "held-out mix"), "mix": ("s", "#dd8452", "named mix")}
    for source, g in arms.groupby("source"):
        marker, colour, label = style.get(source, ("^", "0.4", source))
        err = np.vstack([g["measured"] - g["measured_lo"], g["measured_hi"] - g["measured"]])
        ax.errorbar(g["predicted"], g["measured"], yerr=np.nan_to_num(err), fmt=marker, color=colour,
                    ms=5, capsize=2, lw=0.8, label=label)
        for _, r in g[g["source"] == "mix"].iterrows():
            ax.annotate(r["arm"].removeprefix("mix-"), (r["predicted"], r["measured"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
    lo = float(min(arms["predicted"].min(), arms["measured_lo"].min())) - 1
    hi = float(max(arms["predicted"].max(), arms["measured_hi"].max())) + 1
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.7, ls="--")
    ax.set_xlabel("predicted overall accuracy (%)", fontsize=9)
    ax.set_ylabel("measured overall accuracy (%)", fontsize=9)
    ax.set_title("The planner's predictions, tested", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.25, lw=0.5)
    return _save(fig, out, "planner", "Predicted vs measured overall accuracy of every mix (fits used curated "
                 "arms only), measured 95% intervals; dashed: prediction = measurement.")
