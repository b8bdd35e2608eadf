"""Curated vs synthetic: how many synthetic samples buy the score of N curated ones, per ability and model.

For each curated volume N the sweep ran, the target is the curated curve at N (per ability), kept in [0, 100]
(a line through noisy points can leave the scale; a score cannot); the synthetic curve is inverted at that
target. Each curve is read by the form with the lowest AICc (`Curve.reading`): the target by the log-linear
line or the broken line through the curated volumes, the synthetic curve by the log-linear, saturating or
broken line. A straight line through a curve that jumps between two volumes misses every point, and that lack
of fit, not the data, widened the old intervals past any bound; the broken line misses only by seed noise.
The ratio divides by the curated samples in total (N x abilities): "synthetic samples per curated sample".

No answer is extrapolated further than `extrapolate` x the observed synthetic volumes (default 4: from the
smallest / 4 to the largest x 4). An answer beyond that bound is reported as "> bound" (or "< bound" below it),
never as a number: a fit through 40..640 samples says nothing about 10^95 of them. Interval ends beyond the
bound are widened to the conservative side (an upper end above it becomes inf, a lower end below it becomes 0),
so every finite number in the table lies inside the data's reach. `never` keeps the stronger statement "the
synthetic curve never reaches the target" (a saturating ceiling at or below it, a line or last segment that
falls), with `p_never` the share of parameter draws for which it holds.

Intervals propagate both fits' parameter uncertainty by simulation (seeded): parameters are drawn from each
fit's estimated normal distribution (coefficients and covariance), the inversion is repeated per draw, and the
2.5% / 97.5% quantiles are reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from hpc_instruct.analyze.curves import Curve
from hpc_instruct.analyze.fits import invert_broken_line, invert_saturating

EXTRAPOLATE = 4.0  # answers are reported between (smallest synthetic volume / 4) and (largest x 4)
COLUMNS = (
    "ability model num_parameters curated_per_ability curated_total target curated_form synthetic_form "
    "synthetic_needed "
    "synthetic_lo synthetic_hi ratio ratio_lo ratio_hi curated_grows never p_never beyond low_bound high_bound answer "
    "interval ratio_text"
).split()


def synthetic_efficiency(
    curves: Mapping[tuple[str, str, str], Curve],
    n_abilities: int,
    draws: int = 2000,
    seed: int = 0,
    extrapolate: float = EXTRAPOLATE,
) -> pd.DataFrame:
    """One row per (ability, model, curated N) where the model has both a curated and a synthetic curve.

    `synthetic_needed` / `ratio` are NaN when the answer lies beyond the bound (`beyond`: 'above' or 'below');
    `answer`, `interval` and `ratio_text` say it in words ("> 2,560"); `curated_grows`: the curated slope's 95%
    interval lies above 0 (without curated growth there is nothing for synthetic data to match)."""
    rng = np.random.default_rng(seed)
    rows = []
    for (ability, source, model), cur in sorted(curves.items()):
        syn = curves.get((ability, "synthetic", model))
        if source != "curated" or syn is None or cur.log_linear is None or syn.reading() == "none":
            continue
        syn_form, cur_form = syn.reading(), cur.reading(("log-linear", "spline"))
        grows = cur.log_linear.fit.interval(1)[0] > 0  # curated growth resolved: something to compare with
        low, high = float(syn.volumes.min()) / extrapolate, float(syn.volumes.max()) * extrapolate
        for n in np.unique(cur.volumes):
            target = float(np.clip(_target(cur, cur_form, n)[0], 0.0, 100.0))
            raw = float(_invert(syn, syn_form, np.array([target]))[0])
            target_draws = np.clip(_target(cur, cur_form, n, rng, draws), 0.0, 100.0)
            needed_draws = _invert(syn, syn_form, target_draws, rng, draws)
            lo = float(np.quantile(needed_draws, 0.025, method="lower"))
            hi = float(np.quantile(needed_draws, 0.975, method="higher"))
            total = float(n * n_abilities)
            needed, beyond = (raw, "") if low <= raw <= high else (math.nan, "above" if raw > high else "below")
            lo, hi = bounded_interval(lo, hi, low, high)
            rows.append(
                {
                    "ability": ability,
                    "model": model,
                    "num_parameters": cur.num_parameters,
                    "curated_per_ability": int(n),
                    "curated_total": int(total),
                    "target": target,
                    "curated_form": cur_form,
                    "synthetic_form": syn_form,
                    "synthetic_needed": needed,
                    "synthetic_lo": lo,
                    "synthetic_hi": hi,
                    "ratio": needed / total,
                    "ratio_lo": lo / total,
                    "ratio_hi": hi / total,
                    "curated_grows": bool(grows),
                    "never": math.isinf(raw),
                    "p_never": float(np.mean(np.isinf(needed_draws))),
                    "beyond": beyond,
                    "low_bound": low,
                    "high_bound": high,
                    "answer": _amount(needed, beyond, low, high),
                    "interval": f"[{_end(lo, low)}, {_end(hi, high)}]",
                    "ratio_text": _amount(needed / total, beyond, low / total, high / total),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def bounded_interval(lo: float, hi: float, low: float, high: float) -> tuple[float, float]:
    """Widen interval ends that leave [low, high] to the conservative side: lo -> 0 below low (or high above
    high: "more than high" is still a true lower end), hi -> inf above high (or low below low)."""
    lo = 0.0 if lo < low else min(lo, high)
    hi = math.inf if hi > high else max(hi, low)
    return lo, hi


def _amount(value: float, beyond: str, low: float, high: float) -> str:
    if beyond == "above":
        return f"> {_num(high)}"
    if beyond == "below":
        return f"< {_num(low)}"
    return _num(value)


def _end(value: float, bound: float) -> str:
    if math.isinf(value):
        return f"> {_num(bound)}"
    if value == 0.0:
        return "0"
    return _num(value)


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.2g}"


def _target(
    curve: Curve, form: str, n: float, rng: np.random.Generator | None = None, draws: int = 1
) -> np.ndarray:
    """The curated score at n by `form`; with `rng`, one value per parameter draw."""
    fit = curve.spline.fit if form == "spline" else curve.log_linear.fit
    coef = _mvn(rng, fit.coef, fit.cov, draws)
    if form == "spline":
        return coef @ curve.spline.design(np.array([math.log10(n)]))[0]
    return coef[:, 0] + coef[:, 1] * math.log10(n)


def _invert(
    curve: Curve, form: str, targets: np.ndarray, rng: np.random.Generator | None = None, draws: int = 1
) -> np.ndarray:
    """Synthetic samples reaching each target by `form`; with `rng`, one parameter draw per target."""
    if form == "saturating":
        sat = curve.saturating
        mean = np.array([sat.ceiling, sat.start, sat.rate])
        p = _mvn(rng, mean, sat.cov, draws)
        p[:, 2] = np.maximum(p[:, 2], 1e-12)
        return invert_saturating(targets, p[:, 0], p[:, 1], p[:, 2])
    if form == "spline":
        spline = curve.spline
        coef = _mvn(rng, spline.fit.coef, spline.fit.cov, draws)
        values = spline.knot_values(coef)
        return invert_broken_line(targets, spline.knots, np.broadcast_to(values, (len(targets), values.shape[1])))
    fit = curve.log_linear.fit
    coef = _mvn(rng, fit.coef, fit.cov, draws)
    a, b = coef[:, 0], coef[:, 1]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        out = np.where(
            b > 0, 10 ** ((targets - a) / np.where(b > 0, b, 1)), np.where(targets > a, np.inf, 1.0)
        )
    return out


def _mvn(rng: np.random.Generator | None, mean: np.ndarray, cov: np.ndarray, draws: int) -> np.ndarray:
    """Normal draws of fit parameters; the point estimate (repeated) without `rng` or a usable covariance."""
    if rng is None or not np.isfinite(cov).all():
        return np.repeat(mean[None, :], draws, axis=0)
    with np.errstate(invalid="ignore"):
        return rng.multivariate_normal(mean, (cov + cov.T) / 2, size=draws, method="eigh")
