"""Training rows and the deterministic order in which every backend and layout sees them.

Rows come from the prepare stage's packed mixture: packed rows (`training.packing: true`), or one sample per
row (`packing: false`, DoIT's padded batches), cut out of the packed rows at their sample boundaries and put
back in mixture order, so both modes train on exactly the same tokens and labels.

The order of epoch e is a permutation seeded by (trial seed, e), the same for every backend, layout and
resume: global step s takes positions [k*G, (k+1)*G) of its epoch's permutation (k = s mod steps per
epoch, G = global batch). Data-parallel rank r runs slots [r*A*m, (r+1)*A*m) of that global batch as A
micro-batches of m rows (A = accumulation); a short last step is padded with empty rows (no loss). Each
micro-batch is padded to its own longest row (rounded up to what the backend needs), not the global batch's:
with one sample per row (`packing: false`) the rows' lengths vary widely and the widest of 64 rows is often
several times a typical one. Under pipeline parallelism (`uniform_width`) every micro-batch of a step gets one
width, the step's longest row, because the stages exchange activations of a fixed shape. Losses are per
target token over the global batch on every backend, so the split changes nothing but the summation order.

Each micro-batch also carries `cu_seqlens`: the sample boundaries of its rows laid end to end (int32, from the
boundaries the packing stage stored), each row's padding tail counted as one more sequence, so that
`cu_seqlens[-1]` = rows x width. This is the THD layout of fused variable-length attention (Transformer
Engine); backends without it use `segment_ids`.
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
BOUNDS = "cu_seqlens"  # per row: [0, l0, l0+l1, ..., row length], as the packing stage stores it
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
    squares: np.ndarray  # per row, the sum of its samples' squared lengths: what causal attention costs


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
    bounds = _list_column(table, BOUNDS)
    rows: list[Row] = [
        {**{name: columns[name][i] for name in COLUMNS}, BOUNDS: bounds[i]} for i in range(table.num_rows)
    ]
    if not packing:
        rows = _samples_of(rows, bounds, _list_column(table, "sample_indices"))
    lengths = np.array([len(r["input_ids"]) for r in rows], dtype=np.int64)
    targets = np.array([int((r["labels"][1:] != IGNORE_INDEX).sum()) for r in rows], dtype=np.int64)
    squares = np.array([int((np.diff(r[BOUNDS].astype(np.int64)) ** 2).sum()) for r in rows], dtype=np.int64)
    stats = data.stats
    samples = stats.num_samples - stats.num_dropped_overlong - stats.num_dropped_untrained
    return TrainRows(tuple(rows), packing, data.key, lengths, targets, samples, squares)


def _samples_of(rows: list[Row], cu_seqlens: list[np.ndarray], sample_indices: list[np.ndarray]) -> list[Row]:
    """Cut packed rows at their sample boundaries; return one row per sample, in mixture order."""
    samples: dict[int, Row] = {}
    for row, bounds, indices in zip(rows, cu_seqlens, sample_indices, strict=True):
        for start, stop, index in zip(bounds[:-1], bounds[1:], indices, strict=True):
            sample = {name: row[name][start:stop] for name in COLUMNS}
            sample["segment_ids"] = np.zeros(stop - start, dtype=row["segment_ids"].dtype)
            sample[BOUNDS] = np.array([0, stop - start], dtype=bounds.dtype)
            samples[int(index)] = sample
    return [samples[i] for i in sorted(samples)]


def epoch_order(seed: int, epoch: int, rows: int) -> np.ndarray:
    """The permutation of row indices for `epoch` (0-based): a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(rows)


@dataclass(frozen=True)
class StepBatch:
    """One optimizer step's data for this data-parallel rank, and counts for the whole global batch."""

    micro_batches: list[dict[str, Any]]  # tensors [micro_batch, width] as collate_packed makes them + cu_seqlens
    rows: int  # real rows in the global batch (fewer than G only at an epoch's end)
    tokens: int  # real (non-pad) tokens in the global batch
    target_tokens: int  # tokens with a loss in the global batch: what every backend divides the loss sum by
    width: int  # padded width of this rank's widest micro-batch
    squares: int = 0  # sum of squared sample lengths in the global batch (attention FLOPs, see step_log)


class StepData:
    """Global step -> the micro-batches a data-parallel rank trains on (pure: no iterator state to save)."""

    def __init__(
        self,
        rows: TrainRows,
        plan: BatchPlan,
        seed: int,
        pad_id: int,
        pad_multiple: int = 1,
        uniform_width: bool = False,
    ) -> None:
        if len(rows) == 0:
            raise ValueError("the packed mixture has no rows to train on")
        self.rows, self.plan, self.seed = rows, plan, seed
        self.pad_id, self.pad_multiple = pad_id, max(1, pad_multiple)
        self.uniform_width = uniform_width
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
        m, a = self.plan.micro_batch, self.plan.accumulation
        first = dp_rank * a * m
        mine: Sequence[int | None] = [
            int(indices[slot]) if slot < len(indices) else None for slot in range(first, first + a * m)
        ]
        groups = [[self._row(i) for i in mine[j * m : (j + 1) * m]] for j in range(a)]
        step_width = self._padded(int(lengths.max()))
        micro_batches = []
        for group in groups:
            width = step_width if self.uniform_width else self._padded(max(len(r["input_ids"]) for r in group))
            batch = collate_packed(group, self.pad_id, width)
            batch[BOUNDS] = flat_cu_seqlens([r[BOUNDS] for r in group], width)
            micro_batches.append(batch)
        return StepBatch(
            micro_batches,
            len(indices),
            int(lengths.sum()),
            int(self.rows.targets[indices].sum()),
            max(b["input_ids"].shape[1] for b in micro_batches),
            int(self.rows.squares[indices].sum()),
        )

    def _padded(self, width: int) -> int:
        return max(self.pad_multiple, -(-width // self.pad_multiple) * self.pad_multiple)

    def _row(self, index: int | None) -> Row:
        if index is None:  # an empty slot of a short last step: all padding, no loss
            empty = np.zeros(0, dtype=np.int64)
            return {**{name: empty for name in COLUMNS}, BOUNDS: np.zeros(1, dtype=np.int64)}
        return self.rows.rows[index]


def flat_cu_seqlens(bounds: Sequence[np.ndarray], width: int) -> Any:
    """The sequence boundaries of rows padded to `width` and laid end to end (THD), as an int32 tensor.

    Row r's samples start at r x width; the padding after a row's last sample is one more sequence (it
    carries no loss), so every token belongs to exactly one sequence and the total is rows x width.
    """
    import torch

    flat = [0]
    for r, row in enumerate(bounds):
        offset = r * width
        flat.extend(offset + int(b) for b in row[1:] if int(b) > 0)
        if flat[-1] < offset + width:
            flat.append(offset + width)
    return torch.tensor(flat, dtype=torch.int32)
