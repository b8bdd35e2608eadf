"""Transfer between abilities: train on one ability alone, measure every eval set against the untrained model.

Rows are single-ability trials (source "single", labels `single-<ability>-<n>/<model>/seed<s>`), columns every
eval set (the study's abilities, then out-of-domain sets); a cell is the reported accuracy minus the base
model's (checkpoint "base") on the same set, in points, averaged over seeds. The diagonal is the ability's gain
from its own data; off the diagonal is transfer (positive) or interference (negative).

Interval of a cell (normal, 95%): se^2 = the variance of the paired bootstrap replicates of the difference
(trial and base resampled with the same items, so their shared item difficulty cancels) + the seed variance /
seeds. The seed variance (training noise) is pooled over all cells of a model, since two or three seeds per
cell say little on their own; it also holds some item noise, so the sum errs wide, never narrow. Without
replicates the item term is the trial's and the base's bootstrap se^2 added as if independent.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpc_instruct.analyze.expected import StudyPlan
from hpc_instruct.analyze.selection import OVERALL
from hpc_instruct.expansion import BASE_SOURCE

_SINGLE = re.compile(r"^single-(?P<ability>.+)-(?P<n>\d+)$")
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Transfer:
    cells: pd.DataFrame  # long: model, trained, samples, evaluated, delta, delta_lo, delta_hi, seeds
    matrix: pd.DataFrame  # wide, for one model and volume: index trained ability, columns eval sets (delta)
    model: str
    samples: int

    @property
    def empty(self) -> bool:
        return self.cells.empty


def transfer(reported: pd.DataFrame, plan: StudyPlan, replicates=None) -> Transfer:
    """Transfer cells for every model and volume; `matrix` shows the largest volume of the model with most cells.
    `replicates(rows)` as in `curves.fit_curves`."""
    base = reported[(reported["source"] == BASE_SOURCE) & (reported["ability"] != OVERALL)]
    base = base.set_index(["model", "ability"])[["accuracy", "accuracy_se", "row"]]
    single = reported[(reported["source"] == "single") & (reported["ability"] != OVERALL)].copy()
    columns = [
        "model",
        "trained",
        "samples",
        "evaluated",
        "out_of_domain",
        "accuracy",
        "base",
        "delta",
        "delta_se",
        "delta_lo",
        "delta_hi",
        "seeds",
    ]
    if single.empty or base.empty:
        return Transfer(pd.DataFrame(columns=columns), pd.DataFrame(), "", 0)
    parsed = single["arm"].str.extract(_SINGLE)
    single["trained"], single["n"] = parsed["ability"], parsed["n"].astype(float)
    keys = ["model", "trained", "n", "ability"]
    within = single.groupby(keys)["accuracy"].var(ddof=1).dropna()  # one estimate per cell with 2+ seeds
    pooled = within.groupby(level="model").mean().to_dict()  # seed variance per model, points^2
    rows = []
    for (model, trained, n, evaluated), g in single.groupby(keys, sort=False):
        if (model, evaluated) not in base.index:
            continue
        b = base.loc[(model, evaluated)]
        k = len(g)
        seed_var = pooled.get(model, 0.0) / k
        if replicates is not None:
            diff = replicates(g["row"].to_numpy()).mean(axis=0) - replicates([int(b["row"])])[0]
            item_var = float(np.var(diff, ddof=1)) if diff.size > 1 else 0.0
        else:
            item_var = float(np.mean(np.square(g["accuracy_se"]))) + float(b["accuracy_se"]) ** 2
        se = math.sqrt(item_var + seed_var)
        delta = float(g["accuracy"].mean() - b["accuracy"])
        rows.append(
            {
                "model": model,
                "trained": trained,
                "samples": int(n),
                "evaluated": evaluated,
                "out_of_domain": evaluated in plan.out_of_domain,
                "accuracy": float(g["accuracy"].mean()),
                "base": float(b["accuracy"]),
                "delta": delta,
                "delta_se": se,
                "delta_lo": delta - Z95 * se,
                "delta_hi": delta + Z95 * se,
                "seeds": k,
            }
        )
    cells = pd.DataFrame(rows, columns=columns)
    if cells.empty:
        return Transfer(cells, pd.DataFrame(), "", 0)
    model = cells.groupby("model").size().idxmax()
    samples = int(cells.loc[cells["model"] == model, "samples"].max())
    return Transfer(cells, matrix(cells, plan, model, samples), model, samples)


def matrix(cells: pd.DataFrame, plan: StudyPlan, model: str, samples: int) -> pd.DataFrame:
    """Wide matrix of deltas: trained abilities (recipe order) x eval sets (abilities, then out-of-domain)."""
    pick = cells[(cells["model"] == model) & (cells["samples"] == samples)]
    wide = pick.pivot(index="trained", columns="evaluated", values="delta")
    rows = [a for a in plan.abilities if a in wide.index] + sorted(set(wide.index) - set(plan.abilities))
    cols = [a for a in plan.abilities + plan.out_of_domain if a in wide.columns]
    return wide.loc[rows, cols]
