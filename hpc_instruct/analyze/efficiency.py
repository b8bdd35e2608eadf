"""Curated vs synthetic: how many synthetic samples buy the score of N curated ones, per ability and model.

For each curated volume N the sweep ran, the target is the curated log-linear fit at N (per ability); the
synthetic curve (its preferred fit, usually saturating) is inverted at that target. The ratio divides by the
curated samples in total (N x abilities), so it reads "synthetic samples per curated sample". "never" means the
synthetic curve's ceiling lies at or below the target: no amount of that synthetic data reaches it.

Intervals propagate both fits' parameter uncertainty by simulation (seeded): parameters are drawn from each
fit's estimated normal distribution (coefficients and covariance), the inversion is repeated per draw, and the
2.5% / 97.5% quantiles are reported; `p_never` is the share of draws that never reach the target (an upper
bound of inf means "possibly never").
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from hpc_instruct.analyze.curves import Curve
from hpc_instruct.analyze.fits import invert_saturating


def synthetic_efficiency(
    curves: Mapping[tuple[str, str, str], Curve], n_abilities: int, draws: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """One row per (ability, model, curated N) where the model has both a curated and a synthetic curve."""
    rng = np.random.default_rng(seed)
    rows = []
    for (ability, source, model), cur in sorted(curves.items()):
        syn = curves.get((ability, "synthetic", model))
        if source != "curated" or syn is None or cur.log_linear is None or syn.preferred == "none":
            continue
        for n in np.unique(cur.volumes):
            target = float(cur.log_linear.predict(n))
            needed = _invert(syn, np.array([target]))[0]
            target_draws = _draw_linear(cur, rng, draws, n)
            needed_draws = _invert(syn, target_draws, rng, draws)
            lo = float(np.quantile(needed_draws, 0.025, method="lower"))
            hi = float(np.quantile(needed_draws, 0.975, method="higher"))
            total = n * n_abilities
            rows.append(
                {
                    "ability": ability,
                    "model": model,
                    "num_parameters": cur.num_parameters,
                    "curated_per_ability": int(n),
                    "curated_total": int(total),
                    "target": target,
                    "synthetic_form": syn.preferred,
                    "synthetic_needed": needed,
                    "synthetic_lo": lo,
                    "synthetic_hi": hi,
                    "ratio": needed / total,
                    "ratio_lo": lo / total,
                    "ratio_hi": hi / total,
                    "never": math.isinf(needed),
                    "p_never": float(np.mean(np.isinf(needed_draws))),
                    "extrapolated": bool(np.isfinite(needed) and needed > syn.volumes.max()),
                    "answer": "never" if math.isinf(needed) else f"{needed:,.0f}",
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "ability",
            "model",
            "num_parameters",
            "curated_per_ability",
            "curated_total",
            "target",
            "synthetic_form",
            "synthetic_needed",
            "synthetic_lo",
            "synthetic_hi",
            "ratio",
            "ratio_lo",
            "ratio_hi",
            "never",
            "p_never",
            "extrapolated",
            "answer",
        ],
    )


def _draw_linear(curve: Curve, rng: np.random.Generator, draws: int, n: float) -> np.ndarray:
    fit = curve.log_linear.fit
    coef = _mvn(rng, fit.coef, fit.cov, draws)
    return coef[:, 0] + coef[:, 1] * math.log10(n)


def _invert(
    curve: Curve, targets: np.ndarray, rng: np.random.Generator | None = None, draws: int = 1
) -> np.ndarray:
    """Synthetic samples reaching each target; with `rng`, one parameter draw per target."""
    if curve.preferred == "saturating":
        sat = curve.saturating
        mean = np.array([sat.ceiling, sat.start, sat.rate])
        p = _mvn(rng, mean, sat.cov, draws) if rng is not None else mean[None, :]
        p[:, 2] = np.maximum(p[:, 2], 1e-12)
        return invert_saturating(targets, p[:, 0], p[:, 1], p[:, 2])
    fit = curve.log_linear.fit
    coef = _mvn(rng, fit.coef, fit.cov, draws) if rng is not None else fit.coef[None, :]
    a, b = coef[:, 0], coef[:, 1]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        out = np.where(
            b > 0, 10 ** ((targets - a) / np.where(b > 0, b, 1)), np.where(targets > a, np.inf, 1.0)
        )
    return out


def _mvn(rng: np.random.Generator, mean: np.ndarray, cov: np.ndarray, draws: int) -> np.ndarray:
    """Normal draws of fit parameters; the point estimate repeated when the covariance is not usable."""
    if not np.isfinite(cov).all():
        return np.repeat(mean[None, :], draws, axis=0)
    with np.errstate(invalid="ignore"):
        return rng.multivariate_normal(mean, (cov + cov.T) / 2, size=draws, method="eigh")
