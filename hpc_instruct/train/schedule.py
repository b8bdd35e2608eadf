"""The optimisation schedule: how a global batch splits into micro-batches, and the learning rate per step.

Both are pure functions of the recipe and the step number (no state), so a resumed run, under any layout and
any backend, uses exactly the numbers an uninterrupted run would.

    global batch = micro batch x gradient accumulation x data-parallel ranks
    e.g. DoIT: 64 = 8 x 1 x 8 (one node of 8 GPUs) or 64 = 1 x 8 x 8; the accumulation is derived, never set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from hpc_instruct.train.config import TrainingConfig


@dataclass(frozen=True)
class BatchPlan:
    """Sequences per optimizer step and how they are spread over micro-batches and data-parallel ranks."""

    global_batch: int
    micro_batch: int
    data_parallel: int

    def __post_init__(self) -> None:
        per_pass = self.micro_batch * self.data_parallel
        if min(self.global_batch, self.micro_batch, self.data_parallel) < 1 or self.global_batch % per_pass:
            fit = per_pass * max(1, round(self.global_batch / per_pass))
            raise ValueError(
                f"global_batch={self.global_batch} is not a multiple of micro_batch x dp = {self.micro_batch} x "
                f"{self.data_parallel} = {per_pass}: the gradient accumulation would not be a whole number. "
                f"Set global_batch to {fit}, or change micro_batch/dp so their product divides {self.global_batch}"
            )

    @property
    def accumulation(self) -> int:
        """Micro-batches each data-parallel rank runs per optimizer step."""
        return self.global_batch // (self.micro_batch * self.data_parallel)

    def steps_per_epoch(self, rows: int) -> int:
        """ceil(rows / global batch): the last step of an epoch may be short (padded with empty rows)."""
        return max(1, math.ceil(rows / self.global_batch))

    def describe(self) -> str:
        return (
            f"global batch {self.global_batch} = micro batch {self.micro_batch} x accumulation "
            f"{self.accumulation} x dp {self.data_parallel}"
        )


@dataclass(frozen=True)
class LRSchedule:
    """Learning rate of optimizer step i (0-based): warmup, then linear/cosine decay to min_lr, or constant.

    Warmup ramps as lr * (i + 1) / warmup (no step at lr 0). The decay phase runs from lr at the first step
    after warmup towards min_lr at step `total` (not reached: the last step uses lr/T above min_lr for linear),
    which is HF's `get_linear_schedule_with_warmup`, the DoIT paper's schedule (no warmup, decay to 0).
    """

    lr: float
    total_steps: int
    kind: Literal["linear", "cosine", "constant"] = "linear"
    warmup_steps: int = 0
    min_lr: float = 0.0

    @classmethod
    def from_config(cls, training: TrainingConfig, total_steps: int) -> LRSchedule:
        """warmup_steps wins over warmup_ratio when both are set (as in HF's Trainer)."""
        warmup = training.warmup_steps or math.ceil(training.warmup_ratio * total_steps)
        return cls(training.lr, total_steps, training.schedule, min(warmup, total_steps), training.min_lr)

    def at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.lr
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        if self.kind == "linear":
            factor = 1.0 - progress
        elif self.kind == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            raise ValueError(f"unknown learning-rate schedule {self.kind!r} (linear, cosine or constant)")
        return self.min_lr + (self.lr - self.min_lr) * max(0.0, factor)
