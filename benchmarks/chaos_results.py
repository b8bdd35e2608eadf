"""What a chaos injection is judged by: the value columns of results/scores.parquet and every trial's final loss,
compared with an uninterrupted run (`benchmarks/bench_chaos.py`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

VALUES = ["trial_id", "label", "arm", "checkpoint", "split", "ability", "items", "items_expected", "correct",
          "accuracy", "complete", "problem", "normalized", "selected", "reported"]
LOSS_TOLERANCE = 1e-6


def results(study: Path) -> tuple[pd.DataFrame | None, dict[str, float]]:
    """(value columns of results/scores.parquet sorted, {trial id: final loss})."""
    scores = study / "results" / "scores.parquet"
    frame = None
    if scores.is_file():
        frame = pd.read_parquet(scores)[VALUES].sort_values(["trial_id", "checkpoint", "split", "ability"])
        frame = frame.reset_index(drop=True)
    losses = {}
    for log in sorted((study / "trials").glob("*/log.parquet")):
        steps = pd.read_parquet(log, columns=["step", "loss"])
        losses[log.parent.name] = float(steps.loc[steps["step"] == steps["step"].max(), "loss"].iloc[-1])
    return frame, losses


def same(study: Path, baseline) -> tuple[bool, str]:
    frame, losses = results(study)
    base_frame, base_losses = baseline
    if frame is None:
        return False, "no scores.parquet"
    if not frame.equals(base_frame):
        diff = frame.compare(base_frame) if frame.shape == base_frame.shape else f"shape {frame.shape}"
        return False, f"scores differ: {str(diff)[:300]}"
    if losses.keys() != base_losses.keys():
        return False, f"trials differ: {sorted(losses)} vs {sorted(base_losses)}"
    worst = max(abs(losses[t] - base_losses[t]) for t in losses)
    return worst <= LOSS_TOLERANCE, f"max |dloss| {worst:.2g}"
