"""Curve models for score vs training samples, with uncertainty: linear in log10(n), and saturating.

- `fit_linear` / `fit_log_linear`: ordinary least squares, score = a + b * log10(n) (+ more regressors). The
  coefficient covariance is the larger of two estimates (compared on the slopes): the residual one,
  s^2 (X'X)^-1, which contains training-seed noise and lack of fit, and the item one. The item one refits the
  line on every paired bootstrap replicate of the points (all points resampled with the same items, as the
  aggregation draws them) and takes the covariance of the replicate coefficients, a matrix product; without
  replicates it propagates each point's standard error as if independent. So an interval is never narrower
  than item sampling implies, and a fit through two points (no residual degrees of freedom) still has one.
  Intervals use Student's t with the residual degrees of freedom when the residual estimate wins, else normal.
- `fit_saturating`: score = c - (c - s0) * exp(-k * n), the exponential approach to a ceiling c from s0 at
  n = 0 (3 parameters; scipy `curve_fit` with bounds, several starting rates, so 3+ distinct volumes suffice).
  `n_at(0.95)` = ln(20) / k is where the curve has covered 95% of its rise from s0 to c: "where it saturates".
- `fit_spline`: a broken line in log10(n) with a knot at every measured volume, i.e. straight between the
  per-volume means and continued by its end segments outside them (as many parameters as volumes; the same
  `fit_linear` errors, so seed noise and item sampling set its intervals). It reads a curve that jumps between
  two volumes (a tiny model learning a format between 240 and 640 samples) without the lack of fit that widens
  a straight line's intervals; `invert_broken_line` reads it backwards, one parameter draw per row.
- `aicc` compares them on the same points (small-sample corrected AIC).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats


@dataclass(frozen=True)
class LinearFit:
    coef: np.ndarray  # [p]
    cov: np.ndarray  # [p, p]
    dof: int  # residual degrees of freedom
    rss: float
    n_points: int
    source_of_error: str  # "residual" | "items"

    def interval(self, j: int, level: float = 0.95) -> tuple[float, float]:
        se = math.sqrt(max(self.cov[j, j], 0.0))
        q = (
            stats.t.ppf(0.5 + level / 2, self.dof)
            if self.source_of_error == "residual"
            else stats.norm.ppf(0.5 + level / 2)
        )
        return float(self.coef[j] - q * se), float(self.coef[j] + q * se)

    def se(self, j: int) -> float:
        return math.sqrt(max(self.cov[j, j], 0.0))


@dataclass(frozen=True)
class LogLinear:
    """score = a + b * log10(n)."""

    fit: LinearFit

    @property
    def a(self) -> float:
        return float(self.fit.coef[0])

    @property
    def b(self) -> float:
        return float(self.fit.coef[1])

    def predict(self, n) -> np.ndarray:
        return self.a + self.b * np.log10(np.maximum(np.asarray(n, dtype=float), 1e-12))

    def invert(self, score: float) -> float:
        """Samples at which the line reaches `score` (inf if it never rises to it)."""
        if self.b <= 0:
            return math.inf if score > self.a else 1.0
        return float(10 ** ((score - self.a) / self.b))


@dataclass(frozen=True)
class Saturating:
    """score = ceiling - (ceiling - start) * exp(-rate * n)."""

    ceiling: float
    start: float
    rate: float
    cov: np.ndarray  # [3, 3] over (ceiling, start, rate); NaN when not estimable
    rss: float
    n_points: int

    def predict(self, n) -> np.ndarray:
        return saturating(np.asarray(n, dtype=float), self.ceiling, self.start, self.rate)

    def invert(self, score: float) -> float:
        """Samples at which the curve reaches `score`: inf ("never") at or above the ceiling."""
        return float(invert_saturating(np.array([score]), self.ceiling, self.start, self.rate)[0])

    def n_at(self, fraction: float = 0.95) -> float:
        return -math.log(1 - fraction) / self.rate if self.rate > 0 else math.inf


def saturating(n: np.ndarray, ceiling, start, rate) -> np.ndarray:
    return ceiling - (ceiling - start) * np.exp(-rate * n)


def invert_saturating(score: np.ndarray, ceiling, start, rate) -> np.ndarray:
    """Vectorised inverse (broadcasts over parameter draws); inf where the score is not reachable."""
    score, ceiling, start, rate = np.broadcast_arrays(
        *(np.asarray(v, dtype=float) for v in (score, ceiling, start, rate))
    )
    out = np.full(score.shape, np.inf)
    below = score <= start
    out[below] = 0.0
    ok = ~below & (score < ceiling) & (rate > 0)
    out[ok] = np.log((ceiling[ok] - start[ok]) / (ceiling[ok] - score[ok])) / rate[ok]
    return out


@dataclass(frozen=True)
class LinearSpline:
    """score = a + b * x + sum_j c_j * max(x - k_j, 0), x = log10(n), knots k_j at the interior volumes."""

    knots: np.ndarray  # log10 of every distinct measured volume, ascending (end points included)
    fit: LinearFit

    def design(self, x: np.ndarray) -> np.ndarray:
        return spline_design(np.asarray(x, dtype=float), self.knots)

    def knot_values(self, coef: np.ndarray) -> np.ndarray:
        """[draws, p] coefficients -> [draws, knots] scores at the knots."""
        return np.atleast_2d(coef) @ self.design(self.knots).T

    def predict(self, n) -> np.ndarray:
        x = np.log10(np.maximum(np.asarray(n, dtype=float), 1e-12))
        return (self.design(np.atleast_1d(x)) @ self.fit.coef).reshape(np.shape(x))


def spline_design(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Columns [1, x, (x - k)+ for each interior knot]."""
    x = np.atleast_1d(x)
    hinges = [np.maximum(x - k, 0.0) for k in knots[1:-1]]
    return np.column_stack([np.ones(len(x)), x, *hinges])


def fit_spline(
    n: np.ndarray, y: np.ndarray, y_se: np.ndarray | None = None, y_rep: np.ndarray | None = None
) -> LinearSpline | None:
    """The broken line through the measured volumes; None with fewer than 3 distinct volumes (a line then)."""
    x = np.log10(np.asarray(n, dtype=float))
    knots = np.unique(x)
    if len(knots) < 3:
        return None
    fit = fit_linear(spline_design(x, knots)[:, 1:], y, y_se, y_rep)
    return LinearSpline(knots, fit) if fit is not None else None


def invert_broken_line(targets: np.ndarray, knots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Samples at which each broken line first reaches its target (one row of `values` [draws, knots] per
    target); 0 when it is already there however few samples (a flat or falling start), inf when it never is."""
    t = np.asarray(targets, dtype=float)
    v = np.asarray(values, dtype=float)
    out = np.full(len(t), np.nan)
    left = (v[:, 1] - v[:, 0]) / (knots[1] - knots[0])
    start = t <= v[:, 0]  # reached at the first volume: the crossing lies on the left extension (or nowhere)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[start] = np.where(left[start] > 0, knots[0] - (v[start, 0] - t[start]) / left[start], -np.inf)
        for j in range(len(knots) - 1):  # the first segment that rises through the target
            hit = np.isnan(out) & (v[:, j] < t) & (v[:, j + 1] >= t)
            step = (t[hit] - v[hit, j]) / (v[hit, j + 1] - v[hit, j])
            out[hit] = knots[j] + step * (knots[j + 1] - knots[j])
        right = (v[:, -1] - v[:, -2]) / (knots[-1] - knots[-2])
        rest = np.isnan(out)
        out[rest] = np.where(right[rest] > 0, knots[-1] + (t[rest] - v[rest, -1]) / right[rest], np.inf)
    with np.errstate(over="ignore"):
        return np.where(np.isneginf(out), 0.0, 10.0**out)


def fit_linear(
    x: np.ndarray, y: np.ndarray, y_se: np.ndarray | None = None, y_rep: np.ndarray | None = None
) -> LinearFit | None:
    """OLS of y on [1, x...] (x: [n] or [n, p-1]); None when the design is rank-deficient.

    `y_rep` ([n, B]): paired bootstrap replicates of y (preferred); `y_se` ([n]): standard errors otherwise.
    """
    x = np.asarray(x, dtype=float).reshape(len(y), -1)
    y = np.asarray(y, dtype=float)
    design = np.column_stack([np.ones(len(y)), x])
    if len(y) < design.shape[1] or np.linalg.matrix_rank(design) < design.shape[1]:
        return None
    xtx_inv = np.linalg.inv(design.T @ design)
    coef = xtx_inv @ design.T @ y
    resid = y - design @ coef
    dof = len(y) - design.shape[1]
    rss = float(resid @ resid)
    cov_resid = xtx_inv * (rss / dof) if dof > 0 else np.full_like(xtx_inv, np.nan)
    cov_items = None
    if y_rep is not None and y_rep.shape[1] > 1 and np.isfinite(y_rep).all():
        coef_reps = xtx_inv @ design.T @ y_rep  # [p, B]: the same fit on every replicate
        cov_items = np.atleast_2d(np.cov(coef_reps))
    elif y_se is not None and np.isfinite(y_se).all():
        sandwich = design.T @ (design * np.square(np.asarray(y_se, dtype=float))[:, None])
        cov_items = xtx_inv @ sandwich @ xtx_inv
    slopes = slice(1, None)  # compare the estimates on the slopes (the intercept is rarely the question)
    resid_var = float(np.trace(cov_resid[slopes, slopes]))
    if cov_items is not None and not (
        np.isfinite(resid_var) and resid_var >= float(np.trace(cov_items[slopes, slopes]))
    ):
        return LinearFit(coef, cov_items, dof, rss, len(y), "items")
    return LinearFit(coef, cov_resid, dof, rss, len(y), "residual")


def fit_log_linear(
    n: np.ndarray, y: np.ndarray, y_se: np.ndarray | None = None, y_rep: np.ndarray | None = None
) -> LogLinear | None:
    """score = a + b * log10(n); needs two distinct volumes."""
    n = np.asarray(n, dtype=float)
    if len(np.unique(n)) < 2:
        return None
    fit = fit_linear(np.log10(n), y, y_se, y_rep)
    return LogLinear(fit) if fit is not None else None


def fit_saturating(n: np.ndarray, y: np.ndarray, y_max: float = 100.0) -> Saturating | None:
    """Least-squares saturating fit; None with fewer than 3 distinct volumes or when no start converges."""
    n = np.asarray(n, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(np.unique(n)) < 3:
        return None
    lo_y, hi_y = float(np.min(y)), float(np.max(y))
    bounds = ([lo_y - 1e-6, -100.0, 1e-9], [y_max + 1e-6, y_max, 10.0])
    best = None
    for scale in np.unique(n[n > 0]):  # starting rates spread over the observed volumes
        p0 = [min(hi_y + 1.0, y_max), max(min(lo_y - 1.0, y_max - 1e-3), -99.0), 1.0 / scale]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                popt, pcov = optimize.curve_fit(saturating, n, y, p0=p0, bounds=bounds, maxfev=4000)
        except (RuntimeError, ValueError):
            continue
        rss = float(np.sum((y - saturating(n, *popt)) ** 2))
        if best is None or rss < best[2] - 1e-12:
            best = (popt, pcov, rss)
    if best is None:
        return None
    popt, pcov, rss = best
    cov = pcov if np.isfinite(pcov).all() else np.full((3, 3), np.nan)
    return Saturating(float(popt[0]), float(popt[1]), float(popt[2]), cov, rss, len(y))


def aicc(rss: float, n_points: int, n_params: int) -> float:
    """Small-sample corrected Akaike criterion for a least-squares fit (lower is better)."""
    if n_points - n_params - 1 <= 0:
        return math.inf
    rss = max(rss, 1e-12)
    return (
        n_points * math.log(rss / n_points)
        + 2 * n_params
        + 2 * n_params * (n_params + 1) / (n_points - n_params - 1)
    )
