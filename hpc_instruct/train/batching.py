"""Training rows and the deterministic order in which every backend and layout sees them.

Rows come from the prepare stage's packed mixture: packed rows (`training.packing: true`), or one sample per
row (`packing: false`, DoIT's padded batches), cut out of the packed rows at their sample boundaries and put
back in mixture order, so both modes train on exactly the same tokens and labels.

The order of epoch e is a permutation seeded by (trial seed, e), the same for every backend, layout and
resume: global step s takes positions [k*G, (k+1)*G) of its epoch's permutation (k = s mod steps per
epoch, G = global batch). Data-parallel rank r runs slots [r*A*m, (r+1)*A*m) of that global batch as A
micro-batches of m rows (A = accumulation); a short last step is padded with empty rows (no loss). Every
micro-batch of a step is padded to one width (the longest row of the global batch, rounded up to what the
backend needs), so pipeline stages exchange fixed shapes. Losses are per target token over the global batch
on every backend, so the split changes nothing but the floating-point summation order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpc_instruct.data.packing import collate_packed, load_packed
from hpc_instruct.data.template import IGNORE_INDEX
from hpc_instruct.train.schedule import BatchPlan

COLUMNS = ("input_ids", "labels", "position_ids", "segment_ids")
Row = dict[str, np.ndarray]


@dataclass(frozen=True)
class TrainRows:
    """The rows one epoch trains on, with the counts the loss normalisation and throughput need."""

    rows: tuple[Row, ...]
    packed: bool
    data_key: str  # the packed mixture's cache key: a resume refuses checkpoints made on other data
    lengths: np.ndarray  # real tokens per row
    targets: np.ndarray  # tokens with a loss per row (labels != -100 after the next-token shift)
    samples: int  # samples kept by packing (rows hold several when packed)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())


def _list_column(table: Any, name: str) -> list[np.ndarray]:
    """A list<int> Arrow column as one numpy array per row (views into one writable copy of the values)."""
    column = table.column(name).combine_chunks()
    offsets = np.asarray(column.offsets)
    values = np.array(column.flatten())  # Arrow buffers are read-only; torch.as_tensor wants writable arrays
    offsets = offsets - offsets[0]
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(column))]


def load_rows(packed_dir: str | Path, packing: bool = True) -> TrainRows:
    """Rows of the packed mixture at `packed_dir` (what `hpc_instruct.stages.prepare` wrote).

    With `packing=False` each sample becomes its own row (segment id 0), in mixture order.
    """
    data = load_packed(packed_dir)
    if data is None:
        raise FileNotFoundError(
            f"{packed_dir} is not a complete packed mixture (no valid packing.json): re-run the prepare task "
            f"(hpci run <recipe> re-runs what is missing)"
        )
    table = data.dataset.data.table
    columns = {name: _list_column(table, name) for name in COLUMNS}
    rows: list[Row] = [{name: columns[name][i] for name in COLUMNS} for i in range(table.num_rows)]
    if not packing:
        rows = _samples_of(rows, _list_column(table, "cu_seqlens"), _list_column(table, "sample_indices"))
    lengths = np.array([len(r["input_ids"]) for r in rows], dtype=np.int64)
    targets = np.array([int((r["labels"][1:] != IGNORE_INDEX).sum()) for r in rows], dtype=np.int64)
    stats = data.stats
    samples = stats.num_samples - stats.num_dropped_overlong - stats.num_dropped_untrained
    return TrainRows(tuple(rows), packing, data.key, lengths, targets, samples)


def _samples_of(rows: list[Row], cu_seqlens: list[np.ndarray], sample_indices: list[np.ndarray]) -> list[Row]:
    """Cut packed rows at their sample boundaries; return one row per sample, in mixture order."""
    samples: dict[int, Row] = {}
    for row, bounds, indices in zip(rows, cu_seqlens, sample_indices, strict=True):
        for start, stop, index in zip(bounds[:-1], bounds[1:], indices, strict=True):
            sample = {name: row[name][start:stop] for name in COLUMNS}
            sample["segment_ids"] = np.zeros(stop - start, dtype=row["segment_ids"].dtype)
            samples[int(index)] = sample
    return [samples[i] for i in sorted(samples)]


def epoch_order(seed: int, epoch: int, rows: int) -> np.ndarray:
    """The permutation of row indices for `epoch` (0-based): a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(rows)


@dataclass(frozen=True)
class StepBatch:
    """One optimizer step's data for this data-parallel rank, and counts for the whole global batch."""

    micro_batches: list[dict[str, Any]]  # torch tensors [micro_batch, width], as collate_packed makes them
    rows: int  # real rows in the global batch (fewer than G only at an epoch's end)
    tokens: int  # real (non-pad) tokens in the global batch
    target_tokens: int  # tokens with a loss in the global batch: what every backend divides the loss sum by
    width: int  # padded row width of this step


class StepData:
    """Global step -> the micro-batches a data-parallel rank trains on (pure: no iterator state to save)."""

    def __init__(
        self, rows: TrainRows, plan: BatchPlan, seed: int, pad_id: int, pad_multiple: int = 1
    ) -> None:
        if len(rows) == 0:
            raise ValueError("the packed mixture has no rows to train on")
        self.rows, self.plan, self.seed = rows, plan, seed
        self.pad_id, self.pad_multiple = pad_id, max(1, pad_multiple)
        self.steps_per_epoch = plan.steps_per_epoch(len(rows))
        self._orders: dict[int, np.ndarray] = {}

    def global_rows(self, step: int) -> np.ndarray:
        """Row indices of global step `step` (0-based), at most `global_batch` of them."""
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch not in self._orders:
            self._orders = {epoch: epoch_order(self.seed, epoch, len(self.rows))}
        g = self.plan.global_batch
        return self._orders[epoch][k * g : (k + 1) * g]

    def step(self, step: int, dp_rank: int) -> StepBatch:
        indices = self.global_rows(step)
        lengths = self.rows.lengths[indices]
        width = int(lengths.max())
        width = -(-width // self.pad_multiple) * self.pad_multiple
        m, a = self.plan.micro_batch, self.plan.accumulation
        first = dp_rank * a * m
        mine: Sequence[int | None] = [
            int(indices[slot]) if slot < len(indices) else None for slot in range(first, first + a * m)
        ]
        micro_batches = [
            collate_packed([self._row(i) for i in mine[j * m : (j + 1) * m]], self.pad_id, width)
            for j in range(a)
        ]
        return StepBatch(
            micro_batches, len(indices), int(lengths.sum()), int(self.rows.targets[indices].sum()), width
        )

    def _row(self, index: int | None) -> Row:
        if index is None:  # an empty slot of a short last step: all padding, no loss
            empty = np.zeros(0, dtype=np.int64)
            return {name: empty for name in COLUMNS}
        return self.rows.rows[index]
