"""Each ability's sensitivity to data and to model size, its ranking, and how stable the ranking is across seeds.

Per ability, one additive fit over every curated trial (all sizes and seeds):
    score = alpha + b * log10(samples per ability) + c * log10(parameters)
b is the sensitivity to data (points per tenfold more data), c the sensitivity to model size (points per tenfold
more parameters), each with the interval of `fits.fit_linear` (residual or item error, whichever is larger).
With one model size c is not estimable (NaN) and the fit is b alone; with one volume, b is NaN.
Stability: the same fit per training seed gives one ranking per seed; Kendall's tau between every pair of seeds
(1: identical order, 0: unrelated) says whether the ranking is a property of the abilities or of the noise.
Its 95% interval resamples the abilities (a seeded bootstrap over the ranked abilities, the same resample for
every seed pair): how much the mean tau depends on which abilities happened to be studied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from hpc_instruct.analyze.fits import fit_linear


@dataclass(frozen=True)
class Sensitivity:
    table: pd.DataFrame  # per ability: data_slope(+_se/_lo/_hi), size_slope(+...), ranks
    per_seed: pd.DataFrame  # per ability and seed: data_slope, size_slope
    stability: pd.DataFrame  # per pair of seeds: tau_data, tau_size
    tau_data: float  # mean Kendall tau over seed pairs (NaN with one seed)
    tau_size: float
    tau_data_interval: tuple[float, float] = (math.nan, math.nan)  # 95%, abilities resampled
    tau_size_interval: tuple[float, float] = (math.nan, math.nan)


def sensitivity(points: pd.DataFrame, abilities: tuple[str, ...], replicates=None) -> Sensitivity:
    """Sensitivities from curated growth points (`curves.growth_points`); rankings over `abilities`.
    `replicates` as in `curves.fit_curves` (paired bootstrap replicates per point, percent)."""
    curated = points[points["source"] == "curated"]
    rows = []
    for ability, g in curated.groupby("ability", sort=False):
        rows.append({"ability": ability, **_fit(g, replicates)})
    table = pd.DataFrame(
        rows,
        columns=[
            "ability",
            "points",
            "sizes",
            "volumes",
            "data_slope",
            "data_slope_se",
            "data_slope_lo",
            "data_slope_hi",
            "size_slope",
            "size_slope_se",
            "size_slope_lo",
            "size_slope_hi",
            "error",
        ],
    )
    ranked = table["ability"].isin(abilities)
    for kind in ("data", "size"):
        table[f"rank_{kind}"] = np.nan
        table.loc[ranked, f"rank_{kind}"] = table.loc[ranked, f"{kind}_slope"].rank(
            ascending=False, method="min"
        )
    per_seed = pd.DataFrame(
        [
            {"ability": a, "seed": s, **{k: v for k, v in _fit(g).items() if k.endswith("_slope")}}
            for (a, s), g in curated.groupby(["ability", "seed"], sort=True)
        ],
        columns=["ability", "seed", "data_slope", "size_slope"],
    )
    stability, tau_data, tau_size = _stability(per_seed, abilities)
    intervals = [tau_interval(per_seed, abilities, kind) for kind in ("data", "size")]
    order = table.sort_values(["rank_data", "ability"], na_position="last").reset_index(drop=True)
    return Sensitivity(order, per_seed, stability, tau_data, tau_size, *intervals)


def _fit(g: pd.DataFrame, replicates=None) -> dict:
    volume = np.log10(g["volume"].to_numpy(float))
    params = np.log10(g["num_parameters"].clip(lower=1).to_numpy(float))
    y, se = g["accuracy"].to_numpy(float), g["accuracy_se"].to_numpy(float)
    se = se if np.isfinite(se).all() else None
    sizes, volumes = len(np.unique(params)), len(np.unique(volume))
    out = {"points": len(g), "sizes": sizes, "volumes": volumes}
    columns = [x for x, distinct in (("data", volumes), ("size", sizes)) if distinct > 1]
    design = np.column_stack([volume if c == "data" else params for c in columns]) if columns else None
    rep = replicates(g["row"].to_numpy()) if replicates is not None else None
    fit = fit_linear(design, y, se, rep) if design is not None else None
    for kind in ("data", "size"):
        out.update(
            {
                f"{kind}_slope": math.nan,
                f"{kind}_slope_se": math.nan,
                f"{kind}_slope_lo": math.nan,
                f"{kind}_slope_hi": math.nan,
            }
        )
    out["error"] = fit.source_of_error if fit else ""
    if fit is not None:
        for j, kind in enumerate(columns, start=1):
            lo, hi = fit.interval(j)
            out.update(
                {
                    f"{kind}_slope": float(fit.coef[j]),
                    f"{kind}_slope_se": fit.se(j),
                    f"{kind}_slope_lo": lo,
                    f"{kind}_slope_hi": hi,
                }
            )
    return out


def _stability(per_seed: pd.DataFrame, abilities: tuple[str, ...]) -> tuple[pd.DataFrame, float, float]:
    seeds = sorted(per_seed["seed"].unique())
    rows = []
    for s1, s2 in combinations(seeds, 2):
        row = {"seed_a": s1, "seed_b": s2}
        for kind in ("data", "size"):
            wide = per_seed[per_seed["ability"].isin(abilities)].pivot(
                index="ability", columns="seed", values=f"{kind}_slope"
            )
            pair = wide[[s1, s2]].dropna()
            row[f"tau_{kind}"] = (
                float(stats.kendalltau(pair[s1], pair[s2]).statistic) if len(pair) >= 3 else math.nan
            )
        rows.append(row)
    table = pd.DataFrame(rows, columns=["seed_a", "seed_b", "tau_data", "tau_size"])
    taus = [float(table[c].mean()) if table[c].notna().any() else math.nan for c in ("tau_data", "tau_size")]
    return table, taus[0], taus[1]


def tau_interval(
    per_seed: pd.DataFrame, abilities: tuple[str, ...], kind: str, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of the mean Kendall tau over seed pairs, resampling abilities (NaN: < 2 seeds)."""
    wide = per_seed[per_seed["ability"].isin(abilities)].pivot(
        index="ability", columns="seed", values=f"{kind}_slope"
    ).dropna()
    if wide.shape[1] < 2 or len(wide) < 3:
        return math.nan, math.nan
    values = wide.to_numpy(float)
    rng = np.random.default_rng(seed)
    pick = values[rng.integers(0, len(values), (n_boot, len(values)))]  # [B, abilities, seeds]
    sign = np.sign(pick[:, :, None, :] - pick[:, None, :, :])  # [B, n, n, seeds]
    taus = []
    for i, j in combinations(range(values.shape[1]), 2):  # Kendall's tau-b (ties from repeated abilities)
        a, b = sign[..., i], sign[..., j]
        with np.errstate(invalid="ignore", divide="ignore"):
            taus.append((a * b).sum(axis=(1, 2)) / np.sqrt((a * a).sum(axis=(1, 2)) * (b * b).sum(axis=(1, 2))))
    means = np.nanmean(np.array(taus), axis=0) if taus else np.array([])
    means = means[np.isfinite(means)]
    if len(means) < n_boot // 2:
        return math.nan, math.nan
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))
