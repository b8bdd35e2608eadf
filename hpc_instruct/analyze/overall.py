"""The mean over abilities ("overall") and the chance-normalised score, per (trial, checkpoint, split).

The overall accuracy is the plain mean of the abilities' accuracies: each ability weighs the same whatever its
item count, out-of-domain sets are left out, and it is defined only when every ability is complete. (The
original DoIT code divided the sum by twice the number of abilities, because it counted the chance entries too,
and so reported half the true mean.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hpc_instruct.analyze.bootstrap import interval
from hpc_instruct.analyze.expected import StudyPlan
from hpc_instruct.analyze.selection import OVERALL


def normalise(table: pd.DataFrame) -> None:
    """Chance-normalised score (acc - chance) / (100 - chance) and its interval (the accuracy interval mapped)."""
    chance = table["chance"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(chance < 100, 100 - chance, np.nan)
        for col, src in (
            ("normalized", "accuracy"),
            ("normalized_lo", "accuracy_lo"),
            ("normalized_hi", "accuracy_hi"),
        ):
            table[col] = (table[src].to_numpy() - chance) / scale


def overall_rows(
    table: pd.DataFrame, replicates: np.ndarray, plan: StudyPlan
) -> tuple[pd.DataFrame, np.ndarray]:
    """Mean over the study's abilities per (trial, checkpoint, split), complete only if every ability is.

    Accuracy, chance and the normalised score are plain means over abilities (each ability weighs the same,
    whatever its item count); intervals come from the mean of the abilities' paired replicates.
    """
    abilities = set(plan.abilities)
    inside = table[table["ability"].isin(abilities)]
    n_boot = replicates.shape[1]
    rows, acc_reps, norm_reps = [], [], []
    for (trial, planned, split), g in inside.groupby(["trial_id", "planned_checkpoint", "split"], sort=False):
        done = set(g.loc[g["complete"], "ability"])
        complete = done == abilities and len(g) == len(abilities)
        first = g.iloc[0]
        rows.append(
            {
                "trial_id": trial,
                "planned_checkpoint": planned,
                "checkpoint": first["checkpoint"],
                "epoch": first["epoch"],
                "selection_rule": first["selection_rule"],
                "split": split,
                "ability": OVERALL,
                "items": int(g["items"].sum()),
                "items_expected": int(g["items_expected"].sum()),
                "correct": int(g["correct"].sum()),
                "accuracy": float(g["accuracy"].mean()) if complete else np.nan,
                "chance": float(g["chance"].mean()) if complete else np.nan,
                "normalized": float(g["normalized"].mean()) if complete else np.nan,
                "complete": complete,
                "problem": "" if complete else "incomplete: " + ", ".join(sorted(abilities - done)),
            }
        )
        members = g.index.to_numpy()
        if complete and n_boot:
            chance = g["chance"].to_numpy()[:, None]
            acc_reps.append(replicates[members].mean(axis=0))
            norm_reps.append(((100 * replicates[members] - chance) / (100 - chance)).mean(axis=0))
        else:
            acc_reps.append(np.full(n_boot, np.nan))
            norm_reps.append(np.full(n_boot, np.nan))
    frame = pd.DataFrame(rows, columns=[c for c in table.columns if c in rows[0]] if rows else table.columns)
    acc = np.asarray(acc_reps, dtype=np.float64).reshape(len(rows), n_boot)
    norm = np.asarray(norm_reps, dtype=np.float64).reshape(len(rows), n_boot)
    lo, hi, se = interval(acc)
    frame["accuracy_se"], frame["accuracy_lo"], frame["accuracy_hi"] = 100 * se, 100 * lo, 100 * hi
    frame["normalized_lo"], frame["normalized_hi"], _ = interval(norm)
    return frame, acc
