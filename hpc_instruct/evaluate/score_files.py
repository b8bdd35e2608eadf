"""`hpci score`: score prediction files without a model, one Parquet table and one summary per file.

Inputs, told apart by their extension:
- `.json` / `.jsonl`: DoIT's own prediction files (one record per line with `generated_response`, and
  `generated_score` where present, or `generated_ppl`), scored by `doit_predictions.score_doit_record`;
- `.parquet`: the toolkit's result shards (`result_schema.RESULT_SCHEMA`), rescored from their stored evidence.

For each input `<name>.<ext>` the output folder gets `<name>.scores.parquet` (one row per record: where it came
from, `idx`, ability, format, reply, reference, the parsed answer, `correct`, chance, the `rule` that decided,
`error`, mode and scorer version) and `<name>.summary.json` (per ability: records, scored, errors, correct,
accuracy and chance in percent). A row that cannot be read (bad JSON, no `type`, no generated output) is
reported as `file:line: reason` and skipped; an item that cannot be judged (a malformed label, an official
crash) is kept with `correct` empty and its `error`. Neither stops the run. This is also how verdicts of two
tools are compared: score the same file in two modes and join the tables on `line`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hpc_instruct.atomic import atomic_path, write_json
from hpc_instruct.errors import UserError
from hpc_instruct.evaluate.doit_predictions import MalformedRow, score_doit_record
from hpc_instruct.evaluate.results import score_evidence, scorer_version
from hpc_instruct.evaluate.scoring import Score
from hpc_instruct.evaluate.scoring.modes import DOIT, check_mode
from hpc_instruct.evaluate.scoring.official import DOIT_LETTER_TOKEN_IDS

JSON_SUFFIXES = (".json", ".jsonl")
PARQUET_SUFFIXES = (".parquet",)
_RESULT_COLUMNS = (
    "format",
    "response",
    "reference",
    "letter_logprobs",
    "candidate_ppl",
    "ability",
    "item_index",
)

SCORE_TABLE_SCHEMA = pa.schema([
    pa.field("source", pa.string()),  # the input file
    pa.field("line", pa.int64()),  # 1-based line (JSON lines) or row number (Parquet)
    pa.field("idx", pa.int64()),  # the record's idx (DoIT) or item_index (ours); null when absent
    pa.field("ability", pa.string()),
    pa.field("format", pa.string()),
    pa.field("response", pa.string()),
    pa.field("reference", pa.string()),
    pa.field("parsed", pa.string()),
    pa.field("correct", pa.bool_()),  # null for an item that could not be judged
    pa.field("chance", pa.float64()),
    pa.field("rule", pa.string()),
    pa.field("error", pa.string()),
    pa.field("mode", pa.string()),
    pa.field("scorer_version", pa.string()),
])  # fmt: skip


@dataclass(frozen=True)
class ScoreFilesConfig:
    """How to score: the mode, the optional sympy check (corrected math), and the letter token ids used to
    read a full-vocabulary `generated_score` (default: the official eval tokenizer's "A".."D")."""

    mode: str = DOIT
    symbolic: bool = False
    letter_token_ids: tuple[int, ...] = DOIT_LETTER_TOKEN_IDS

    def __post_init__(self) -> None:
        check_mode(self.mode)
        if len(self.letter_token_ids) != 4 or any(i < 0 for i in self.letter_token_ids):
            raise ValueError(
                f"letter_token_ids: expected four non-negative ids (A, B, C, D), got {self.letter_token_ids}"
            )


@dataclass(frozen=True)
class AbilitySummary:
    ability: str
    records: int
    scored: int
    errors: int
    correct: int
    accuracy_pct: float  # correct / scored
    chance_pct: float  # mean chance over scored items


@dataclass(frozen=True)
class FileScores:
    """What scoring one file produced."""

    source: Path
    table: Path
    summary_file: Path
    abilities: tuple[AbilitySummary, ...]
    skipped: tuple[str, ...] = field(default=())  # "file:line: reason" for every unreadable row

    def describe(self) -> str:
        lines = [f"{self.source} -> {self.table}"]
        lines += [
            f"  {a.ability:<28} {a.correct:>6}/{a.scored:<6} {a.accuracy_pct:6.2f}%  chance {a.chance_pct:5.2f}%"
            + (f"  errors {a.errors}" if a.errors else "")
            for a in self.abilities
        ]
        if self.skipped:
            lines.append(f"  {len(self.skipped)} unreadable rows skipped")
        return "\n".join(lines)


def check_inputs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The inputs as paths; `UserError` (nothing written) for a missing file or an unknown extension."""
    if not paths:
        raise UserError("hpci score: give at least one prediction file (.json, .jsonl or .parquet)")
    out = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        if path.suffix.lower() not in JSON_SUFFIXES + PARQUET_SUFFIXES:
            raise UserError(
                f"{path}: unknown prediction file type {path.suffix!r}; expected .json/.jsonl (DoIT predictions) "
                "or .parquet (result shards)"
            )
        if path.suffix.lower() in PARQUET_SUFFIXES:
            missing = sorted(set(_RESULT_COLUMNS) - set(pq.read_schema(path).names))
            if missing:
                raise UserError(f"{path}: not a result shard: columns {missing} are missing")
        out.append(path)
    return out


def _row(
    source: Path, line: int, idx: int | None, ability: str, s: Score, mode: str, response: str, reference: str
) -> dict[str, Any]:
    return {
        "source": str(source), "line": line, "idx": idx, "ability": ability, "format": s.format,
        "response": response, "reference": reference, "parsed": s.parsed,
        "correct": None if s.error else s.correct, "chance": None if s.error else s.chance,
        "rule": s.method, "error": s.error, "mode": mode, "scorer_version": scorer_version(mode),
    }  # fmt: skip


def _json_rows(path: Path, config: ScoreFilesConfig) -> tuple[list[dict[str, Any]], list[str]]:
    rows, skipped = [], []
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
            rec = score_doit_record(
                obj,
                mode=config.mode,
                path=str(path),
                line=number,
                symbolic=config.symbolic,
                token_ids=config.letter_token_ids,
            )
        except UnicodeDecodeError as exc:
            skipped.append(f"{path}:{number}: not valid UTF-8 (byte {exc.start})")
            continue
        except json.JSONDecodeError as exc:
            skipped.append(f"{path}:{number}: invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        except MalformedRow as exc:
            skipped.append(f"{path}:{number}: {exc}")
            continue
        rows.append(
            _row(path, number, rec.idx, rec.ability, rec.score, config.mode, rec.response, rec.reference)
        )
    return rows, skipped


def _parquet_rows(path: Path, config: ScoreFilesConfig) -> tuple[list[dict[str, Any]], list[str]]:
    rows, skipped = [], []
    for number, row in enumerate(pq.read_table(path, columns=list(_RESULT_COLUMNS)).to_pylist(), start=1):
        if not isinstance(row["format"], str) or not row["format"]:
            skipped.append(f"{path}:{number}: format: missing")
            continue
        try:
            s = score_evidence(
                row["format"],
                row["response"],
                row["reference"] or "",
                letter_logprobs=row["letter_logprobs"],
                candidate_ppl=row["candidate_ppl"],
                mode=config.mode,
                symbolic=config.symbolic,
            )
        except (ValueError, TypeError) as exc:  # an unknown format: not an item this toolkit can score
            skipped.append(f"{path}:{number}: {exc}")
            continue
        rows.append(
            _row(
                path,
                number,
                row["item_index"],
                row["ability"] or "",
                s,
                config.mode,
                row["response"] or "",
                row["reference"] or "",
            )
        )
    return rows, skipped


def summarize(rows: Sequence[dict[str, Any]]) -> tuple[AbilitySummary, ...]:
    """Per-ability counts and accuracy (over the items that could be judged), abilities sorted."""
    out = []
    for ability in sorted({r["ability"] for r in rows}):
        mine = [r for r in rows if r["ability"] == ability]
        judged = [r for r in mine if not r["error"]]
        correct = sum(bool(r["correct"]) for r in judged)
        accuracy = 100.0 * correct / len(judged) if judged else 0.0
        chance = 100.0 * sum(r["chance"] for r in judged) / len(judged) if judged else 0.0
        out.append(
            AbilitySummary(
                ability,
                len(mine),
                len(judged),
                len(mine) - len(judged),
                correct,
                round(accuracy, 4),
                round(chance, 4),
            )
        )
    return tuple(out)


def _outputs(paths: Sequence[Path], out_dir: Path) -> list[tuple[Path, Path]]:
    """(table, summary) paths per input; a repeated file name gets a numbered suffix."""
    seen: dict[str, int] = {}
    out = []
    for path in paths:
        stem = path.name.rsplit(".", 1)[0]
        seen[stem] = seen.get(stem, 0) + 1
        name = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
        out.append((out_dir / f"{name}.scores.parquet", out_dir / f"{name}.summary.json"))
    return out


def score_files(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    config: ScoreFilesConfig = ScoreFilesConfig(),
) -> list[FileScores]:
    """Score every file (see the module docstring) into `out_dir`; returns what each produced.

    Raises:
        UserError: a missing input or an unknown file type, before anything is written.
    """
    inputs = check_inputs(paths)
    out = Path(out_dir)
    results = []
    for path, (table_path, summary_path) in zip(inputs, _outputs(inputs, out), strict=True):
        reader = _parquet_rows if path.suffix.lower() in PARQUET_SUFFIXES else _json_rows
        rows, skipped = reader(path, config)
        out.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(rows, schema=SCORE_TABLE_SCHEMA)
        with atomic_path(table_path) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        abilities = summarize(rows)
        write_json(summary_path, {
            "source": str(path), "mode": config.mode, "symbolic": config.symbolic,
            "scorer_version": scorer_version(config.mode), "rows": len(rows), "skipped": skipped,
            "abilities": [a.__dict__ for a in abilities],
        })  # fmt: skip
        results.append(FileScores(path, table_path, summary_path, abilities, tuple(skipped)))
    return results
