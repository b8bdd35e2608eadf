"""Figures as in the paper, PNG and SVG: growth panels per ability, the transfer heatmap, sensitivity bars.

Growth panels: x = training samples in total (log scale; curated N per ability x abilities, synthetic N), one
colour per model size, curated solid, synthetic dashed, chance dotted, the mean 95% bootstrap interval as a
band, every trial (seed) as a point. `smooth` applies the paper's Gaussian smoothing (sigma 0.8, in steps of the
volume grid) to lines and bands for display only; points and every table stay raw.
Matplotlib runs headless (`Figure` objects with the Agg canvas, no pyplot state), so this works on a login
node or in CI without a display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hpc_instruct.analyze.selection import OVERALL
from hpc_instruct.atomic import atomic_path
from hpc_instruct.data.abilities import REGISTRY

SMOOTH_SIGMA = 0.8  # the paper's display smoothing


@dataclass(frozen=True)
class Figure:
    name: str
    png: Path
    svg: Path
    caption: str


def growth_figure(
    means: pd.DataFrame,
    points: pd.DataFrame,
    panels: list[str],
    out: Path,
    smooth: bool = True,
    title: str = "",
) -> Figure | None:
    """One panel per ability (and the overall mean): score vs samples per model size and data source."""
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.lines import Line2D

    panels = [p for p in panels if p in set(means["ability"])]
    if not panels:
        return None
    models = means.drop_duplicates("model").sort_values("num_parameters")["model"].tolist()
    colour = {m: _palette(i, len(models)) for i, m in enumerate(models)}
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = MplFigure(figsize=(3.4 * cols, 2.7 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, ability in zip(axes, panels, strict=False):
        _growth_panel(
            ax, means[means["ability"] == ability], points[points["ability"] == ability], colour, smooth
        )
        ax.set_title(_display(ability), fontsize=9)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colour[m], lw=2, label=_size_label(means, m)) for m in models]
    handles += [
        Line2D([], [], color="0.3", ls="-", label="curated"),
        Line2D([], [], color="0.3", ls="--", label="synthetic"),
        Line2D([], [], color="0.5", ls=":", label="chance"),
    ]
    fig.legend(
        handles=handles, loc="outside lower center", ncols=min(len(handles), 7), fontsize=8, frameon=False
    )
    fig.suptitle(
        title
        or "Accuracy vs training samples (95% bootstrap bands" + (", smoothed σ=0.8)" if smooth else ")"),
        fontsize=10,
    )
    return _save(
        fig, out, "growth", "Growth per ability: accuracy (%) against training samples in total, log scale."
    )


def _growth_panel(ax, means: pd.DataFrame, points: pd.DataFrame, colour: dict, smooth: bool) -> None:
    from scipy.ndimage import gaussian_filter1d

    for (source, model), g in means.groupby(["source", "model"], sort=False):
        g = g.sort_values("total_samples")
        x = g["total_samples"].to_numpy(float)
        y, lo, hi = (g[c].to_numpy(float) for c in ("accuracy", "accuracy_lo", "accuracy_hi"))
        if smooth and len(x) >= 3:
            y, lo, hi = (gaussian_filter1d(v, SMOOTH_SIGMA, mode="nearest") for v in (y, lo, hi))
        style = "--" if source == "synthetic" else "-"
        ax.plot(x, y, style, color=colour[model], lw=1.6)
        ax.fill_between(x, lo, hi, color=colour[model], alpha=0.12, lw=0)
        raw = points[(points["source"] == source) & (points["model"] == model)]
        ax.scatter(
            raw["total_samples"],
            raw["accuracy"],
            s=7,
            color=colour[model],
            alpha=0.45,
            lw=0,
            marker="o" if source == "curated" else "^",
        )
    chance = means["chance"].mean()
    if np.isfinite(chance):
        ax.axhline(chance, ls=":", color="0.5", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("training samples", fontsize=8)
    ax.set_ylabel("accuracy (%)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.25, lw=0.5)


def transfer_figure(matrix: pd.DataFrame, out: Path, model: str, samples: int) -> Figure | None:
    """Heatmap of score change vs the base model: trained ability (rows) x evaluated set (columns)."""
    from matplotlib.figure import Figure as MplFigure

    if matrix.empty:
        return None
    values = matrix.to_numpy(float)
    limit = max(1.0, float(np.nanmax(np.abs(values))))
    fig = MplFigure(figsize=(1.0 + 0.62 * values.shape[1], 1.2 + 0.5 * values.shape[0]), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(
        range(values.shape[1]),
        [_display(c, short=True) for c in matrix.columns],
        rotation=45,
        ha="right",
        fontsize=8,
    )
    ax.set_yticks(range(values.shape[0]), [_display(r, short=True) for r in matrix.index], fontsize=8)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                ax.text(
                    j,
                    i,
                    f"{values[i, j]:+.1f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if abs(values[i, j]) > 0.6 * limit else "black",
                )
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on (alone)")
    fig.colorbar(image, ax=ax, label="points vs base model", shrink=0.8)
    ax.set_title(f"Transfer: {model}, {samples:,} samples of one ability", fontsize=10)
    return _save(
        fig, out, "transfer", "Transfer matrix: accuracy change (points) relative to the untrained model."
    )


def sensitivity_figure(table: pd.DataFrame, out: Path) -> Figure | None:
    """Bars of each ability's sensitivity to data and to model size, with 95% intervals."""
    from matplotlib.figure import Figure as MplFigure

    rows = table[table["ability"] != OVERALL].sort_values("data_slope")
    if rows.empty:
        return None
    kinds = [k for k in ("data", "size") if rows[f"{k}_slope"].notna().any()]
    if not kinds:  # one volume and one model size: nothing is estimable, so there is nothing to draw
        return None
    fig = MplFigure(figsize=(4.2 * len(kinds), 0.8 + 0.32 * len(rows)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(kinds), squeeze=False)).ravel()
    labels = [_display(a, short=True) for a in rows["ability"]]
    for ax, kind in zip(axes, kinds, strict=True):
        v = rows[f"{kind}_slope"].to_numpy(float)
        err = np.vstack(
            [v - rows[f"{kind}_slope_lo"].to_numpy(float), rows[f"{kind}_slope_hi"].to_numpy(float) - v]
        )
        ax.barh(
            range(len(v)),
            v,
            xerr=np.nan_to_num(err),
            color="#4c72b0" if kind == "data" else "#dd8452",
            alpha=0.85,
            capsize=2,
            error_kw={"lw": 0.8},
        )
        ax.set_yticks(range(len(v)), labels, fontsize=8)
        ax.axvline(0, color="0.3", lw=0.6)
        ax.set_xlabel("points per 10x more " + ("samples" if kind == "data" else "parameters"), fontsize=8)
        ax.set_title(f"Sensitivity to {'data' if kind == 'data' else 'model size'}", fontsize=10)
        ax.grid(axis="x", alpha=0.25, lw=0.5)
    return _save(
        fig, out, "sensitivity", "Sensitivity per ability with 95% intervals (slope of accuracy vs log10)."
    )


def _save(fig, out: Path, name: str, caption: str) -> Figure:
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    with atomic_path(svg) as tmp:
        fig.savefig(tmp, format="svg")
    return Figure(name, png, svg, caption)


def _palette(i: int, n: int) -> str:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    r, g, b, _ = cmap(0.1 + 0.75 * (i / max(1, n - 1)))
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _size_label(means: pd.DataFrame, model: str) -> str:
    params = int(means.loc[means["model"] == model, "num_parameters"].iloc[0])
    return f"{model} ({_si(params)})" if params > 0 else model


def _si(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(int(n))


def _display(key: str, short: bool = False) -> str:
    if key == OVERALL:
        return "Overall (mean of abilities)" if not short else "overall"
    if key in REGISTRY and not short:
        return REGISTRY[key].display_name
    return key.replace("_", " ")
