"""Which statements the intervals support: rankings, separations and signs, decided before anything is worded.

The report never names a ranking its intervals do not support. An ability is "most sensitive" only when its
95% interval lies entirely above every other ability's (its lower end above their upper ends); otherwise the
claim is "not resolved" and the report lists the abilities that overlap at the top. Likewise for "least", for
pairs of abilities (`separated_pairs`) and for the sign of an effect (`resolved_sign`: the interval excludes 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Extreme:
    """The top (or bottom) of a ranking: `name` when resolved, else '' and the overlapping `contenders`."""

    name: str
    contenders: tuple[str, ...]  # the leader first, then every ability whose interval overlaps the leader's
    value: float
    lo: float
    hi: float

    @property
    def resolved(self) -> bool:
        return bool(self.name)


def _finite_rows(table: pd.DataFrame, kind: str) -> list:
    cols = (f"{kind}_slope", f"{kind}_slope_lo", f"{kind}_slope_hi")
    return [r for _, r in table.iterrows() if all(math.isfinite(float(r[c])) for c in cols)]


def extreme(table: pd.DataFrame, kind: str, top: bool = True) -> Extreme | None:
    """The most (top) or least sensitive ability for `kind` ('data' or 'size'); None with fewer than 2 rows.

    Resolved iff the leader's interval does not overlap any other ability's interval."""
    rows = _finite_rows(table, kind)
    if len(rows) < 2:
        return None
    value, lo, hi = f"{kind}_slope", f"{kind}_slope_lo", f"{kind}_slope_hi"
    lead = max(rows, key=lambda r: r[value]) if top else min(rows, key=lambda r: r[value])
    others = [r for r in rows if r["ability"] != lead["ability"]]
    overlap = [r for r in others if (r[hi] >= lead[lo] if top else r[lo] <= lead[hi])]
    overlap.sort(key=lambda r: -r[value] if top else r[value])
    contenders = (lead["ability"],) + tuple(r["ability"] for r in overlap)
    return Extreme(
        "" if overlap else lead["ability"], contenders, float(lead[value]), float(lead[lo]), float(lead[hi])
    )


def separated_pairs(table: pd.DataFrame, kind: str = "data") -> list[tuple[str, str]]:
    """Ability pairs (higher first) whose `kind` slope intervals do not overlap, the widest gap first."""
    rows = _finite_rows(table, kind)
    lo, hi = f"{kind}_slope_lo", f"{kind}_slope_hi"
    gaps = [(a[lo] - b[hi], a["ability"], b["ability"]) for a in rows for b in rows if a[lo] > b[hi]]
    return [(fast, slow) for _, fast, slow in sorted(gaps, reverse=True)]


def resolved_sign(lo: float, hi: float) -> int:
    """+1 when a 95% interval lies above 0, -1 below, 0 when it contains 0 (or is not finite)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def interval_text(value: float, lo: float, hi: float, signed: bool = True, digits: int = 1) -> str:
    """'+12.3 [8.1, 16.5]': a value with its 95% interval, as every answer of the report prints it."""
    head = _fixed(value, digits, "+" if signed else "")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return head + " [interval not estimable]"
    return f"{head} [{_fixed(lo, digits)}, {_fixed(hi, digits)}]"


def _fixed(value: float, digits: int, sign: str = "") -> str:
    """Fixed-point text without a negative zero: -0.04 rounds to '0.0', not '-0.0'."""
    text = f"{value:{sign}.{digits}f}"
    return text.replace("-", sign, 1) if text.startswith("-") and float(text) == 0 else text
