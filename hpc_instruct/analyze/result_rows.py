"""Reading result rows from many Parquet shards fast: only the columns aggregation needs (column projection).

Two products, both indexed by the position of a file in the list given:
- `FileSummary`: per file, its row count, sum of chance, item-index range, and min/max of every column that must
  be constant within a shard (eval task id, checkpoint, epoch, selection rule, trial, parameters, provenance);
  min != max means the shard is not what its path says.
- `ItemRows`: per row, the file it came from, its item index and whether it was correct (what the bootstrap
  and duplicate detection need); nothing else is decoded per row.

Engine: DuckDB when it is installed (a parallel Parquet scan with per-file `file_index`; on this project's
benchmark about 3x faster than per-file pyarrow reads), otherwise pyarrow, one file per thread. Both return the
same arrays; the pyarrow path also isolates an unreadable file instead of failing the whole scan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

# Columns that hold one value per shard. The first four are checked against the plan; the rest is provenance.
CONSTANT_COLUMNS = ("eval_task_id", "checkpoint", "epoch", "selection_rule", "trial_id", "num_parameters")
PROVENANCE_COLUMNS = (
    "data_fingerprint",
    "template_hash",
    "tokenizer_hash",
    "scorer_version",
    "code_version",
    "library_versions",
)
PER_FILE = CONSTANT_COLUMNS + PROVENANCE_COLUMNS


@dataclass(frozen=True)
class FileSummary:
    """Per-file facts, arrays aligned with the file list (files without rows have rows == 0)."""

    rows: np.ndarray  # int64
    chance_sum: np.ndarray  # float64
    item_min: np.ndarray  # int64 (-1 when no rows)
    item_max: np.ndarray
    low: dict[str, list]  # column -> per-file minimum (None when no rows)
    high: dict[str, list]  # column -> per-file maximum
    unreadable: dict[int, str]  # file index -> error message


@dataclass(frozen=True)
class ItemRows:
    file: np.ndarray  # int32 index into the file list
    item: np.ndarray  # int64 item_index
    correct: np.ndarray  # bool


def read_rows(
    paths: Sequence[Path], engine: str = "auto", threads: int | None = None
) -> tuple[FileSummary, ItemRows]:
    """Read per-file summaries and per-row (file, item, correct) of `paths` with the chosen engine."""
    if not paths:
        empty = np.zeros(0, np.int64)
        return (
            FileSummary(
                empty, np.zeros(0), empty, empty, {c: [] for c in PER_FILE}, {c: [] for c in PER_FILE}, {}
            ),
            ItemRows(np.zeros(0, np.int32), empty, np.zeros(0, bool)),
        )
    if engine in ("auto", "duckdb"):
        try:
            return _read_duckdb(paths, threads)
        except ImportError:
            if engine == "duckdb":
                raise
            log.info("duckdb not installed: reading shards with pyarrow")
        except Exception as err:  # a shard DuckDB cannot read: find it file by file
            log.warning("duckdb scan failed (%s); reading shard by shard with pyarrow", err)
    return _read_pyarrow(paths, threads)


def _read_duckdb(paths: Sequence[Path], threads: int | None) -> tuple[FileSummary, ItemRows]:
    """One parallel scan: per file (DuckDB's `file_index`), its constants and its rows' items as two lists
    aggregated over the same rows in the same order (so element i of both belongs to one row)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        if threads:
            con.execute(f"SET threads TO {int(threads)}")
        per_file = ", ".join(f"min({c}) AS lo_{c}, max({c}) AS hi_{c}" for c in PER_FILE)
        table = con.sql(
            "SELECT file_index::BIGINT AS f, count(*) AS n, sum(chance) AS chance_sum, min(item_index) AS item_min, "
            f"max(item_index) AS item_max, {per_file}, list(item_index::BIGINT) AS items, list(correct) AS correct "
            "FROM read_parquet($files) GROUP BY file_index",
            params={"files": [str(p) for p in paths]},
        ).to_arrow_table()
    finally:
        con.close()
    at = table["f"].to_numpy()
    out = _blank(len(paths))
    out["rows"][at] = table["n"].to_numpy()
    out["chance_sum"][at] = table["chance_sum"].fill_null(0.0).to_numpy()
    out["item_min"][at] = table["item_min"].to_numpy()
    out["item_max"][at] = table["item_max"].to_numpy()
    for c in PER_FILE:
        for side, key in (("low", f"lo_{c}"), ("high", f"hi_{c}")):
            for i, v in zip(at.tolist(), table[key].to_pylist(), strict=True):
                out[side][c][i] = v
    items = table["items"].combine_chunks()
    correct = table["correct"].combine_chunks().flatten().fill_null(False)  # undecided counts as wrong
    lengths = np.diff(items.offsets.to_numpy())
    rows = ItemRows(
        np.repeat(at.astype(np.int32), lengths),
        items.flatten().to_numpy(),
        correct.to_numpy(zero_copy_only=False).astype(bool),
    )
    return FileSummary(**out, unreadable={}), rows


def _read_pyarrow(paths: Sequence[Path], threads: int | None) -> tuple[FileSummary, ItemRows]:
    columns = ["item_index", "correct", "chance", *PER_FILE]

    def read(path: Path) -> pa.Table | str:
        try:
            return pq.read_table(
                path,
                columns=columns,
                read_dictionary=[c for c in PER_FILE if c not in ("epoch", "num_parameters")],
            )
        except Exception as err:  # reported per file, never fatal for the study
            return f"{type(err).__name__}: {err}"

    with ThreadPoolExecutor(max_workers=threads or 4) as pool:
        tables = list(pool.map(read, paths))
    out = _blank(len(paths))
    unreadable: dict[int, str] = {}
    files, items, correct = [], [], []
    for i, table in enumerate(tables):
        if isinstance(table, str):
            unreadable[i] = table
            continue
        n = table.num_rows
        out["rows"][i] = n
        if n == 0:
            continue
        out["chance_sum"][i] = pc.sum(table["chance"]).as_py() or 0.0
        index = table["item_index"].to_numpy()
        out["item_min"][i], out["item_max"][i] = int(index.min()), int(index.max())
        for c in PER_FILE:
            column = table[c]
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            mm = pc.min_max(column)
            out["low"][c][i], out["high"][c][i] = mm["min"].as_py(), mm["max"].as_py()
        files.append(np.full(n, i, np.int32))
        items.append(index.astype(np.int64))
        correct.append(table["correct"].fill_null(False).to_numpy(zero_copy_only=False).astype(bool))
    rows = ItemRows(
        np.concatenate(files) if files else np.zeros(0, np.int32),
        np.concatenate(items) if items else np.zeros(0, np.int64),
        np.concatenate(correct) if correct else np.zeros(0, bool),
    )
    return FileSummary(**out, unreadable=unreadable), rows


def _blank(n: int) -> dict:
    return {
        "rows": np.zeros(n, np.int64),
        "chance_sum": np.zeros(n),
        "item_min": np.full(n, -1, np.int64),
        "item_max": np.full(n, -1, np.int64),
        "low": {c: [None] * n for c in PER_FILE},
        "high": {c: [None] * n for c in PER_FILE},
    }
