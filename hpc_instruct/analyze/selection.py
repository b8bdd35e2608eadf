"""Checkpoint selection: choose each trial's checkpoint on the valid split, report it on test, record the choice.

The rule is `hpc_instruct.evaluate.selection`'s (the one the eval writer uses for `selected` shards). Only epochs whose valid scores are complete for every ability compete. Two ways the test rows arrive:
- `test_on: all`: every checkpoint was tested; the rows of the chosen epoch are the reported ones.
- `test_on: selected`: the eval writer already chose (its rows carry the chosen epoch in `checkpoint`/`epoch`
  and the rule in `selection_rule`); we recompute the choice from valid rows and flag any disagreement.
"""

from __future__ import annotations

import math

import pandas as pd

from hpc_instruct.analyze.expected import StudyPlan
from hpc_instruct.evaluate.selection import SELECTION_RULE, best_epoch
from hpc_instruct.expansion import BASE_SOURCE
from hpc_instruct.study_dir import BASE, SELECTED, epoch_name

LAST_RULE = "last checkpoint (no valid split evaluated)"
OVERALL = "overall"  # the ability name of the mean-over-abilities rows


def select_checkpoints(scores: pd.DataFrame, plan: StudyPlan) -> pd.DataFrame:
    """One row per trained trial: the rule, the chosen checkpoint, the valid mean it won with, the writer's
    choice when test rows were selected at evaluation time, and whether the two agree."""
    valid = scores[
        (scores["split"] == "valid")
        & (scores["ability"] == OVERALL)
        & scores["complete"]
        & (scores["planned_checkpoint"] != SELECTED)
    ]
    by_trial = {k: g for k, g in valid.groupby("trial_id")}
    writer = scores[scores["planned_checkpoint"] == SELECTED]
    writer_epochs = writer.groupby("trial_id")["epoch"].agg(lambda s: sorted({int(e) for e in s if e >= 0}))
    has_valid = "valid" in plan.splits
    out = []
    for trial in plan.trials:
        if trial.source == BASE_SOURCE:
            continue
        row = {
            "trial_id": trial.id,
            "label": trial.label,
            "rule": SELECTION_RULE if has_valid else LAST_RULE,
            "chosen_checkpoint": None,
            "chosen_epoch": -1,
            "valid_mean": math.nan,
            "epochs_compared": 0,
            "writer_checkpoint": None,
            "agrees": True,
            "note": "",
        }
        candidates = by_trial.get(trial.id)
        if not has_valid and trial.checkpoints:
            row["chosen_epoch"] = trial.checkpoints[-1]
        elif candidates is not None and len(candidates):
            pairs = list(zip(candidates["epoch"].astype(int), candidates["accuracy"], strict=True))
            chosen, acc = best_epoch(pairs)
            row.update(chosen_epoch=chosen, valid_mean=float(acc), epochs_compared=len(pairs))
            missing = len(trial.checkpoints) - len(pairs)
            if missing > 0:
                row["note"] = f"{missing} epoch(s) without complete valid scores did not compete"
        else:
            row["note"] = "no epoch has complete valid scores for every ability"
        if row["chosen_epoch"] >= 0:
            row["chosen_checkpoint"] = epoch_name(row["chosen_epoch"])
        epochs = writer_epochs.get(trial.id, [])
        if epochs:
            row["writer_checkpoint"] = ", ".join(epoch_name(e) for e in epochs)
            row["agrees"] = epochs == [row["chosen_epoch"]]
            if not row["agrees"]:
                row["note"] = (row["note"] + "; " if row["note"] else "") + (
                    f"the eval writer tested {row['writer_checkpoint']}, valid scores choose {row['chosen_checkpoint']}"
                )
        out.append(row)
    return pd.DataFrame(
        out,
        columns=[
            "trial_id",
            "label",
            "rule",
            "chosen_checkpoint",
            "chosen_epoch",
            "valid_mean",
            "epochs_compared",
            "writer_checkpoint",
            "agrees",
            "note",
        ],
    )


def mark_reported(scores: pd.DataFrame, selection: pd.DataFrame, plan: StudyPlan) -> pd.DataFrame:
    """Add `selected` (the row is at its trial's chosen checkpoint) and `reported` (the row is the trial's
    score for the report: test split, or valid when a study has no test split; base models as they are)."""
    chosen = dict(zip(selection["trial_id"], selection["chosen_checkpoint"], strict=True))
    report_split = "test" if "test" in plan.splits else "valid"
    is_base = scores["planned_checkpoint"] == BASE
    at_choice = scores["checkpoint"] == scores["trial_id"].map(chosen)
    writer_chose = scores["planned_checkpoint"] == SELECTED
    scores = scores.copy()
    scores["selected"] = is_base | at_choice | writer_chose
    tested_by_writer = set(scores.loc[writer_chose, "trial_id"])
    own_choice = at_choice & ~scores["trial_id"].isin(tested_by_writer) & ~writer_chose
    scores["reported"] = (scores["split"] == report_split) & (is_base | writer_chose | own_choice)
    rule = dict(zip(selection["trial_id"], selection["rule"], strict=True))
    ours = own_choice & (scores["selection_rule"] == "")  # rows we chose: record the rule that chose them
    scores.loc[ours, "selection_rule"] = scores.loc[ours, "trial_id"].map(rule)
    return scores
