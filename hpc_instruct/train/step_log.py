"""Per-step training metrics: `trials/<id>/log.parquet`, optional TensorBoard, and a console progress line.

One row per optimizer step: step (1-based), epoch (fractional), loss, lr, grad_norm, tokens (real tokens of
the global batch), target_tokens, seconds, tokens_per_s, mfu, attempt, time. The file is rewritten atomically
whenever a checkpoint is saved and at the end; a resumed attempt reads it back, drops rows after its resume
step (they are recomputed identically) and appends.

MFU = model FLOPs per second / (peak FLOPs per GPU x GPUs). Model FLOPs are `ModelShape.training_flops`: 6 x
the weights that multiply (no input embedding) per token, plus causal attention from each sample's own length
(the step's sum of squared sample lengths, so a packed row of short samples is not charged as one long one).
Padding is not counted. The peak is looked up by GPU name (dense bf16 tensor-core TFLOP/s), else taken from
`execution.gpu_peak_tflops`; on CPU MFU is null.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpc_instruct.atomic import atomic_path
from hpc_instruct.train.presets import ModelShape

log = logging.getLogger("hpc_instruct.train")

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets. More specific names
# first: the first substring found in torch.cuda.get_device_name() wins.
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("GH200", 989.0),
    ("H100", 989.0),
    ("H800", 989.0),
    ("H200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A6000", 155.0),
    ("V100", 125.0),
    ("MI300X", 1307.0),
    ("MI250X", 383.0),
)
COLUMNS = (
    "step",
    "epoch",
    "loss",
    "lr",
    "grad_norm",
    "tokens",
    "target_tokens",
    "seconds",
    "tokens_per_s",
    "mfu",
    "attempt",
    "time",
)


def gpu_peak_tflops(fallback: float | None) -> float | None:
    """Peak TFLOP/s of this rank's GPU: by name from `PEAK_TFLOPS`, else `fallback`; None without a GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_TFLOPS if key in name), fallback)


@dataclass(frozen=True)
class Throughput:
    """Turns a step's token count and duration into tokens/s and MFU."""

    shape: ModelShape
    peak_tflops: float | None  # per GPU; None on CPU
    devices: int

    def mfu(self, tokens: int, squares: int, seconds: float) -> float | None:
        """MFU of a step over `tokens` real tokens whose samples' squared lengths sum to `squares`."""
        if self.peak_tflops is None or seconds <= 0:
            return None
        flops = self.shape.training_flops(tokens, squares)
        return flops / seconds / (self.peak_tflops * 1e12 * self.devices)


class StepLog:
    """The metrics rows of a trial (kept on global rank 0), written to `path` as Parquet."""

    def __init__(self, path: Path, rows: list[dict[str, Any]] | None = None) -> None:
        self.path, self.rows = Path(path), rows or []
        self._board = None

    @classmethod
    def resume(cls, path: Path, upto_step: int) -> StepLog:
        """The rows written by earlier attempts, up to `upto_step` (none when starting fresh)."""
        rows: list[dict[str, Any]] = []
        if upto_step > 0 and Path(path).is_file():
            import pyarrow.parquet as pq

            rows = [r for r in pq.read_table(path).to_pylist() if r["step"] <= upto_step]
        return cls(path, rows)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self._board is not None:
            for key in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu"):
                value = row.get(key)
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    self._board.add_scalar(f"train/{key}", value, row["step"])

    def open_tensorboard(self, folder: Path) -> bool:
        """Mirror rows to TensorBoard under `folder` when `tensorboard` is installed; returns whether it is."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: the Parquet log is the record
            return False
        self._board = SummaryWriter(str(folder))
        return True

    def write(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self.rows, schema=_schema()) if self.rows else _schema().empty_table()
        with atomic_path(self.path) as tmp:
            pq.write_table(table, tmp)
        if self._board is not None:
            self._board.flush()

    def close(self) -> None:
        if self._board is not None:
            self._board.close()
            self._board = None


def _schema():
    import pyarrow as pa

    i, f = pa.int64(), pa.float64()
    return pa.schema(
        [
            ("step", i),
            ("epoch", f),
            ("loss", f),
            ("lr", f),
            ("grad_norm", f),
            ("tokens", i),
            ("target_tokens", i),
            ("seconds", f),
            ("tokens_per_s", f),
            ("mfu", f),
            ("attempt", i),
            ("time", f),
        ]
    )


class Progress:
    """A progress line on the console (rank 0): about every 2% of the steps and at least every 30 s."""

    def __init__(self, total_steps: int, steps_per_epoch: int, label: str) -> None:
        self.total, self.steps_per_epoch, self.label = total_steps, steps_per_epoch, label
        self.every = max(1, total_steps // 50)
        self.last = 0.0
        self.start = time.monotonic()
        self.start_step: int | None = None

    def update(self, row: dict[str, Any]) -> None:
        step, now = row["step"], time.monotonic()
        if self.start_step is None:
            self.start_step = step - 1
        if step % self.every and step != self.total and now - self.last < 30:
            return
        self.last = now
        rate = (step - self.start_step) / max(1e-9, now - self.start)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        mfu = f" mfu {row['mfu']:.1%}" if row["mfu"] is not None else ""
        log.info(
            "%s step %d/%d epoch %.2f loss %.4f lr %.3g gnorm %.3g %s tok/s%s eta %s",
            self.label,
            step,
            self.total,
            row["epoch"],
            row["loss"],
            row["lr"],
            row["grad_norm"],
            f"{row['tokens_per_s']:,.0f}",
            mfu,
            _duration(eta),
        )


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"
