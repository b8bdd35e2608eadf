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
- `aicc` compares the two on the same points (small-sample corrected AIC).
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
