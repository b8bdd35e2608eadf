"""Resume checkpoints of a trial: where they live, when one is complete, which is newest, which to delete.

    trials/<id>/checkpoints/step-00000120/          one resume point (after 120 optimizer steps)
        trainer.json                                 `TrainerState`: step, data identity, batch plan, layout, ...
        backend/                                     the backend's model + optimizer state (megatron: a
                                                     dist_checkpointing folder; hf: one file; deepspeed: its own)
    trials/<id>/checkpoints/step-00000120.done       completion marker carrying the trial id

A checkpoint is written under a hidden temporary name by all ranks, renamed into place by rank 0 once every
rank is done, and only then marked; a job killed mid-save leaves a temporary folder that the next save
removes, never a checkpoint that looks complete. The newest `keep_last` complete checkpoints are kept.

Data position and RNG need no state of their own: the data order is a function of (seed, epoch) and every RNG
is reseeded from (seed, step) before each step (`hpc_instruct.train.loop`), so the step number alone puts a
resumed run, under any layout, exactly where an uninterrupted run would be.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hpc_instruct.atomic import is_done, marker_path, write_json, write_marker

log = logging.getLogger(__name__)
NAME = re.compile(r"^step-(\d{8})$")
STATE_FILE = "trainer.json"
BACKEND_DIR = "backend"


@dataclass(frozen=True)
class TrainerState:
    """Everything besides model and optimizer that a resume restores or checks."""

    trial_id: str
    step: int  # optimizer steps completed
    total_steps: int
    steps_per_epoch: int
    global_batch: int
    data_key: str  # packed mixture identity
    packing: bool
    backend: str
    layout: dict[str, Any]
    seconds: float  # wall time of all attempts up to this save
    tokens: int  # real tokens trained so far
    attempt: int  # 1 for the first run of the trial, +1 per resume
    reason: str  # epoch | time | preemption
    versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResumePoint:
    path: Path
    state: TrainerState

    @property
    def backend_dir(self) -> Path:
        return self.path / BACKEND_DIR


class ResumeStore:
    """The resume checkpoints of one trial. Writing methods are for global rank 0 unless noted."""

    def __init__(self, root: Path, trial_id: str, keep_last: int) -> None:
        self.root, self.trial_id, self.keep_last = Path(root), trial_id, max(1, keep_last)

    def path(self, step: int) -> Path:
        return self.root / f"step-{step:08d}"

    def partial(self, step: int) -> Path:
        """The temporary folder all ranks write a checkpoint into (a deterministic name every rank knows)."""
        return self.root / f".step-{step:08d}.partial"

    def complete(self) -> list[ResumePoint]:
        """Complete checkpoints of this trial, oldest first."""
        points = []
        if not self.root.is_dir():
            return points
        for path in sorted(self.root.iterdir()):
            if NAME.match(path.name) and is_done(path, self.trial_id) and (path / STATE_FILE).is_file():
                state = TrainerState(**json.loads((path / STATE_FILE).read_text()))
                points.append(ResumePoint(path, state))
        return sorted(points, key=lambda p: p.state.step)

    def newest(self) -> ResumePoint | None:
        points = self.complete()
        return points[-1] if points else None

    def begin(self, step: int) -> Path:
        """Rank 0, before the collective save: a fresh empty temporary folder (a killed save's is removed)."""
        for stale in self.root.glob(".step-*.partial"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.partial(step)
        (tmp / BACKEND_DIR).mkdir(parents=True)
        return tmp

    def commit(self, state: TrainerState) -> Path:
        """Rank 0, after every rank saved: state file, rename into place, marker, then prune old ones."""
        tmp, target = self.partial(state.step), self.path(state.step)
        write_json(tmp / STATE_FILE, asdict(state))
        self._remove(target)  # a same-step leftover (e.g. saved, then the run failed before its marker)
        tmp.rename(target)
        write_marker(target, self.trial_id, step=state.step, reason=state.reason)
        for old in self.complete()[: -self.keep_last]:
            self._remove(old.path)
        return target

    def clear(self) -> None:
        """Remove every resume checkpoint (the trial is finished: its exports are what evaluation reads)."""
        if self.root.is_dir():
            for path in list(self.root.iterdir()):
                if NAME.match(path.name):
                    self._remove(path)
            shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _remove(path: Path) -> None:
        """Marker first, then the folder: an interrupted removal never leaves a 'complete' partial folder."""
        marker_path(path).unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)


def check_compatible(state: TrainerState, expected: TrainerState) -> None:
    """Refuse a resume whose data position would mean something else in this run (actionable message)."""
    problems = []
    for name, hint in (
        ("data_key", "the packed mixture changed"),
        ("packing", "training.packing changed"),
        ("global_batch", "model.global_batch changed"),
        ("steps_per_epoch", "the data or global batch changed"),
        ("total_steps", "epochs or the data changed"),
    ):
        if getattr(state, name) != getattr(expected, name):
            problems.append(f"{name} {getattr(state, name)!r} != {getattr(expected, name)!r} ({hint})")
    if state.backend != expected.backend:
        problems.append(
            f"backend {state.backend!r} != {expected.backend!r} (checkpoints are backend-specific)"
        )
    if state.backend == "deepspeed" and state.layout.get("dp") != expected.layout.get("dp"):
        problems.append(
            f"deepspeed checkpoint for dp={state.layout.get('dp')} cannot resume at "
            f"dp={expected.layout.get('dp')} (ZeRO-2 partitions are per rank)"
        )
    if problems:
        raise RuntimeError(
            f"cannot resume trial {state.trial_id} from its checkpoint at step {state.step}: "
            + "; ".join(problems)
            + ". Delete trials/<id>/checkpoints to start the trial over."
        )
