"""Growth curves: each ability's reported score against training volume, per data source and model, and fits.

Volume ("n") is what the sweep varied: for curated trials the samples of each ability (the arm's N; an ability's
own count when a pool cap took less), for synthetic trials the synthetic samples in total. The plots put both on
one axis of total training samples. Every curve is fitted twice (fits.py): linear in log10(n), whose slope is
the ability's sensitivity to data (points per tenfold more data), and saturating, whose `n95` says where the
curve flattens. `preferred` is the form with the lower AICc; with too few points the log-linear form is kept.
With three or more volumes a broken line through them is fitted as well (`spline`); predictions away from the
measured volumes (the planner's) keep to `preferred`, while efficiency, which reads a curve inside its range (or
a stated factor beyond it), takes the spline where its AICc beats both (`reading`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from hpc_instruct.analyze.expected import StudyPlan
from hpc_instruct.analyze.fits import (
    LinearSpline,
    LogLinear,
    Saturating,
    aicc,
    fit_log_linear,
    fit_saturating,
    fit_spline,
)
from hpc_instruct.analyze.selection import OVERALL

GROWTH_SOURCES = ("curated", "synthetic")
_ARM_N = re.compile(r"^curated-(\d+)$")


@dataclass(frozen=True)
class Curve:
    ability: str
    source: str
    model: str
    num_parameters: int
    volumes: np.ndarray  # one point per trial (seeds are separate points)
    scores: np.ndarray  # accuracy, percent
    se: np.ndarray  # bootstrap standard errors of the points
    log_linear: LogLinear | None
    saturating: Saturating | None
    preferred: str  # "log-linear" | "saturating" | "none"
    spline: LinearSpline | None = None  # the broken line through the measured volumes (3+ volumes)

    def predict(self, n) -> np.ndarray:
        """The preferred fit's prediction (percent), NaN when the curve has no fit."""
        if self.preferred == "saturating" and self.saturating is not None:
            return self.saturating.predict(n)
        if self.log_linear is not None:
            return self.log_linear.predict(n)
        return np.full(np.shape(n), np.nan)

    def aicc_of(self, form: str) -> float:
        """AICc of one fitted form on the curve's points (inf when that form was not fitted)."""
        ll, sat, spline = self.log_linear, self.saturating, self.spline
        if form == "log-linear" and ll is not None:
            return aicc(ll.fit.rss, ll.fit.n_points, 2)
        if form == "saturating" and sat is not None:
            return aicc(sat.rss, sat.n_points, 3)
        if form == "spline" and spline is not None:
            return aicc(spline.fit.rss, spline.fit.n_points, len(spline.knots))
        return math.inf

    def reading(self, forms: tuple[str, ...] = ("log-linear", "saturating", "spline")) -> str:
        """The form among `forms` with the lowest AICc (the earlier one on ties); "none" when none was fitted."""
        fitted = [f for f in forms if getattr(self, f.replace("-", "_")) is not None]
        return min(fitted, key=self.aicc_of) if fitted else "none"

    def row(self) -> dict:
        ll, sat = self.log_linear, self.saturating
        lo, hi = ll.fit.interval(1) if ll else (math.nan, math.nan)
        return {
            "ability": self.ability,
            "source": self.source,
            "model": self.model,
            "num_parameters": self.num_parameters,
            "points": len(self.volumes),
            "volumes": len(np.unique(self.volumes)),
            "min_volume": float(self.volumes.min()),
            "max_volume": float(self.volumes.max()),
            "intercept": ll.a if ll else math.nan,
            "slope": ll.b if ll else math.nan,
            "slope_se": ll.fit.se(1) if ll else math.nan,
            "slope_lo": lo,
            "slope_hi": hi,
            "slope_error": ll.fit.source_of_error if ll else "",
            "ceiling": sat.ceiling if sat else math.nan,
            "start": sat.start if sat else math.nan,
            "rate": sat.rate if sat else math.nan,
            "n95": sat.n_at(0.95) if sat else math.nan,
            "saturates_in_range": bool(sat and sat.n_at(0.95) <= self.volumes.max()),
            "aicc_log_linear": self.aicc_of("log-linear") if ll else math.nan,
            "aicc_saturating": self.aicc_of("saturating") if sat else math.nan,
            "aicc_spline": self.aicc_of("spline") if self.spline else math.nan,
            "preferred": self.preferred,
        }


def growth_points(reported: pd.DataFrame, plan: StudyPlan) -> pd.DataFrame:
    """Reported curated and synthetic scores with their volume; one row per trial x ability (incl. overall)."""
    rows = reported[reported["source"].isin(GROWTH_SOURCES)].copy()
    in_domain = rows["ability"].isin(plan.abilities)
    nominal = rows["arm"].map(lambda arm: int(m.group(1)) if (m := _ARM_N.match(arm)) else 0)
    curated_n = np.where(in_domain & (rows["samples"] > 0), rows["samples"], nominal)
    rows["volume"] = np.where(rows["source"] == "curated", curated_n, rows["synthetic_samples"]).astype(float)
    rows = rows[rows["volume"] > 0]
    keep = [
        "row",
        "ability",
        "source",
        "model",
        "size",
        "num_parameters",
        "seed",
        "trial_id",
        "label",
        "volume",
        "total_samples",
        "accuracy",
        "accuracy_se",
        "accuracy_lo",
        "accuracy_hi",
        "chance",
        "normalized",
        "out_of_domain",
    ]
    return (
        rows[keep]
        .sort_values(["ability", "source", "num_parameters", "volume", "seed"])
        .reset_index(drop=True)
    )


def fit_curves(points: pd.DataFrame, replicates=None) -> dict[tuple[str, str, str], Curve]:
    """One `Curve` per (ability, source, model) with at least two distinct volumes.

    `replicates(rows) -> [len(rows), B]` gives the points' paired bootstrap replicates in percent (see
    `AggregateResult.replicates_of`); without it slope errors assume independent points.
    """
    curves: dict[tuple[str, str, str], Curve] = {}
    for (ability, source, model), g in points.groupby(["ability", "source", "model"], sort=True):
        n, y = g["volume"].to_numpy(float), g["accuracy"].to_numpy(float)
        se = g["accuracy_se"].to_numpy(float)
        rep = replicates(g["row"].to_numpy()) if replicates is not None else None
        item_se = se if np.isfinite(se).all() else None
        curve = Curve(ability, source, model, int(g["num_parameters"].iloc[0]), n, y, se,
                      fit_log_linear(n, y, item_se, rep), fit_saturating(n, y), "none", fit_spline(n, y, item_se, rep))
        curves[(ability, source, model)] = replace(curve, preferred=curve.reading(("log-linear", "saturating")))
    return curves


def curve_table(curves: Mapping[tuple[str, str, str], Curve]) -> pd.DataFrame:
    rows = [c.row() for c in curves.values()]
    return (
        pd.DataFrame(rows).sort_values(["ability", "source", "num_parameters"]).reset_index(drop=True)
        if rows
        else pd.DataFrame(columns=["ability", "source", "model"])
    )


def curve_means(points: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (ability, source, model, volume), with the mean bootstrap interval: what plots draw."""
    if points.empty:
        return points
    keys = ["ability", "source", "model", "size", "num_parameters", "volume", "total_samples"]
    out = points.groupby(keys, as_index=False).agg(
        accuracy=("accuracy", "mean"),
        accuracy_lo=("accuracy_lo", "mean"),
        accuracy_hi=("accuracy_hi", "mean"),
        chance=("chance", "mean"),
        seeds=("seed", "nunique"),
    )
    return out.sort_values(["ability", "source", "num_parameters", "volume"]).reset_index(drop=True)


def overall_first(abilities: tuple[str, ...]) -> list[str]:
    """Panel order: the overall mean, then the study's abilities in recipe order."""
    return [OVERALL, *abilities]
