"""Result shards: scoring an item from its stored evidence, and writing/reading one Parquet file per shard.

Torch-free, so `rescore` runs on a login node. The same `score_evidence` is used when a shard is first written
and when it is rescored, so the two can never disagree on a rule. Evidence is what the model produced and
what the rules need: the response text, the option letters' log-probs at the answer position (MC and
multi-select; their count is the item's number of options), and the candidate perplexities (rank3).

The scoring mode (`doit`, `doit-text` or `corrected`) is part of the scorer identity: `scorer_version` is
`<SCORER_VERSION>+<mode>` (e.g. `doit-scoring-2+doit`), and `parse_mode` holds the rule that decided
(`one_char`, `logits`, `boxed`, `lowest_perplexity`, ...), or `error: <why>` for an item that could not be
judged (a malformed reference, an item the official code crashes on); such a row is never correct and never
stops the shard.

A shard is written to a temporary name beginning with "." in its folder and renamed into place
(`hpc_instruct.atomic`), so a killed writer leaves only a dot-file that nobody reads and no marker.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hpc_instruct.atomic import atomic_path
from hpc_instruct.data.abilities import MATH, MC, MULTI_SELECT, RANK3
from hpc_instruct.evaluate.result_schema import COLUMNS, RESULT_SCHEMA
from hpc_instruct.evaluate.scoring import SCORER_VERSION, Score, score_or_error
from hpc_instruct.evaluate.scoring.modes import DOIT, LEGACY_ALIASES, MODES

OPTION_LETTERS = "ABCDEFGHIJ"
SHARD_GLOB = "part-*.parquet"


def scorer_version(mode: str) -> str:
    """The `scorer_version` recorded in rows scored with the current rules in `mode`."""
    return f"{SCORER_VERSION}+{mode}"


def recorded_mode(version: str | None) -> str:
    """The parse mode a row was scored in (from its `scorer_version`); `doit` for rows without one."""
    mode = (version or "").rpartition("+")[2]
    mode = LEGACY_ALIASES.get(mode, mode)
    return mode if mode in MODES else DOIT


def rule_of(s: Score) -> str:
    """What a result row's `parse_mode` records: the deciding rule, or `error: <why>`."""
    return f"error: {s.error}" if s.error else s.method


def score_evidence(
    fmt: str,
    response: str | None,
    reference: str,
    *,
    letter_logprobs: Sequence[float] | None = None,
    candidate_ppl: Sequence[float] | None = None,
    mode: str = DOIT,
    symbolic: bool = False,
) -> Score:
    """Score one item of any format from what the model produced (see the module docstring); an item that
    cannot be judged comes back with `error` set instead of raising."""
    if fmt == RANK3:
        return score_or_error(RANK3, None, None, mode=mode, perplexities=list(candidate_ppl or ()))
    response = response or ""
    logprobs = list(letter_logprobs or ())
    n = len(logprobs) if len(logprobs) >= 2 else 4
    if fmt == MC:
        return score_or_error(MC, response, reference, mode=mode, n_options=n, letter_logprobs=logprobs or None)
    if fmt == MULTI_SELECT:
        return score_or_error(MULTI_SELECT, response, reference, mode=mode, n_options=n)
    if fmt == MATH:
        return score_or_error(MATH, response, reference, mode=mode, symbolic=symbolic)
    return score_or_error(fmt, response, reference, mode=mode)


def build_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts with exactly the `RESULT_SCHEMA` columns) as an Arrow table of that schema.

    Raises:
        ValueError: a row lacks a column or has one the schema does not know (a typo would otherwise be
            dropped silently by Arrow).
    """
    expected = set(COLUMNS)
    for i, row in enumerate(rows):
        if set(row) != expected:
            missing, extra = sorted(expected - set(row)), sorted(set(row) - expected)
            raise ValueError(f"result row {i}: missing columns {missing}, unknown columns {extra}")
    columns = {name: [row[name] for row in rows] for name in COLUMNS}
    return pa.Table.from_pydict(columns, schema=RESULT_SCHEMA)


def write_shard(table: pa.Table, path: str | os.PathLike) -> str:
    """Write a result table to `path` atomically; returns the file's sha256 (recorded in the marker)."""
    if not table.schema.equals(RESULT_SCHEMA):
        raise ValueError(
            f"result table does not have exactly RESULT_SCHEMA's columns and types:\n{table.schema}"
        )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
        digest = _sha256(tmp)
    return digest


def read_shard(path: str | os.PathLike, columns: Sequence[str] | None = None) -> pa.Table:
    return pq.read_table(path, columns=list(columns) if columns else None, schema=RESULT_SCHEMA)


def shard_files(eval_root: str | os.PathLike) -> list[Path]:
    """Every finished-looking shard file under `eval_root` (temporary dot-files of killed writes excluded)."""
    root = Path(eval_root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob(SHARD_GLOB) if not p.name.startswith(".") and p.is_file())


def rescored_columns(table: pa.Table, mode: str | None = None) -> dict[str, list[Any]]:
    """New `parsed`, `correct`, `chance`, `parse_mode`, `scorer_version` for every row of `table`.

    `mode` None keeps each row's recorded parse mode; a mode given rescores every row in it.
    """
    data = table.select(
        ["format", "response", "reference", "letter_logprobs", "candidate_ppl", "scorer_version"]
    ).to_pylist()
    out: dict[str, list[Any]] = {
        k: [] for k in ("parsed", "correct", "chance", "parse_mode", "scorer_version")
    }
    for row in data:
        row_mode = mode or recorded_mode(row["scorer_version"])
        s = score_evidence(
            row["format"],
            row["response"],
            row["reference"],
            letter_logprobs=row["letter_logprobs"],
            candidate_ppl=row["candidate_ppl"],
            mode=row_mode,
        )
        out["parsed"].append(s.parsed)
        out["correct"].append(s.correct)
        out["chance"].append(s.chance)
        out["parse_mode"].append(rule_of(s))
        out["scorer_version"].append(scorer_version(row_mode))
    return out


def replace_columns(table: pa.Table, columns: Mapping[str, Iterable[Any]]) -> pa.Table:
    """`table` with some columns replaced (types from the schema), column order unchanged."""
    for name, values in columns.items():
        i = table.schema.get_field_index(name)
        table = table.set_column(
            i, RESULT_SCHEMA.field(name), pa.array(list(values), RESULT_SCHEMA.field(name).type)
        )
    return table


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
