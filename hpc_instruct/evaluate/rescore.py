"""Rescoring: recompute every shard's scores from its stored evidence with the current scorers, no model.

`rescore_study(study_dir)` reads each completed shard of `<study>/eval/` (a Parquet file whose `.done` marker
exists), recomputes `parsed`, `correct`, `chance`, `parse_mode` and `scorer_version` from the stored
`response`, `reference`, `letter_logprobs` and `candidate_ppl` (`results.score_evidence`, the function the
eval task scores with), and rewrites the shards whose scores changed, atomically, then their marker (same
EvalTask id, so the shard stays trusted; the marker's facts gain the new sha256 and scorer version). A shard
without a marker (a killed writer's, or a write in progress) is left alone. Torch is never imported: this runs
on a login node (`hpci rescore STUDY`).

Use it after a scorer rule changes (`SCORER_VERSION` bumps) or to switch the scoring mode (`mode="corrected"`).
Rows stored without letter log-probs are read by the official text rule in `doit` mode, and an item that cannot
be judged (e.g. a five-letter multi-select answer) becomes an `error: ...` row instead of stopping the rescore.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from hpc_instruct.atomic import read_marker, write_marker
from hpc_instruct.evaluate.results import (
    read_shard,
    replace_columns,
    rescored_columns,
    shard_files,
    write_shard,
)
from hpc_instruct.study_dir import StudyDir

log = logging.getLogger(__name__)

SCORE_COLUMNS = ("parsed", "correct", "chance", "parse_mode", "scorer_version")


@dataclass(frozen=True)
class RescoreReport:
    """What a rescoring pass did: shards read, rewritten, left alone (no marker), rows whose verdict changed."""

    shards: int
    rewritten: int
    rows: int
    changed_rows: int  # rows whose `correct` flipped
    changed_parse: int  # rows whose `parsed` or `parse_mode` changed
    skipped: tuple[str, ...] = field(default=())  # shard files without a marker (not trusted, not touched)

    def summary(self) -> str:
        return (
            f"{self.shards} shards, {self.rows} rows: {self.rewritten} shards rewritten, {self.changed_rows} "
            f"verdicts and {self.changed_parse} parses changed; {len(self.skipped)} unfinished shards skipped"
        )


def rescore_study(
    study_dir: str | os.PathLike, *, mode: str | None = None, dry_run: bool = False
) -> RescoreReport:
    """Rescore every completed shard of a study with the current scorers (see the module docstring).

    Args:
        study_dir: the study directory (holds `eval/`).
        mode: "doit", "doit-text" or "corrected" to rescore every row in that mode; None keeps each row's
            recorded mode.
        dry_run: compute and report, write nothing.
    """
    sdir = StudyDir(Path(study_dir))
    shards = rewritten = rows = changed_rows = changed_parse = 0
    skipped: list[str] = []
    for path in shard_files(sdir.eval_root):
        marker = read_marker(path)
        if marker is None or "id" not in marker:
            skipped.append(str(path.relative_to(sdir.root)))
            continue
        table = read_shard(path)
        new = rescored_columns(table, mode)
        shards += 1
        rows += table.num_rows
        old = {c: table.column(c).to_pylist() for c in SCORE_COLUMNS}
        changed_rows += sum(a != b for a, b in zip(old["correct"], new["correct"], strict=True))
        changed_parse += sum(
            a != b or c != d
            for a, b, c, d in zip(
                old["parsed"], new["parsed"], old["parse_mode"], new["parse_mode"], strict=True
            )
        )
        if all(_same(old[c], new[c]) for c in SCORE_COLUMNS):
            continue
        rewritten += 1
        if dry_run:
            continue
        digest = write_shard(replace_columns(table, new), path)
        facts = {k: v for k, v in marker.items() if k != "id"}
        facts.update(
            sha256=digest,
            scorer_version=sorted(set(new["scorer_version"]))[0] if table.num_rows else "",
            rescored=True,
        )
        write_marker(path, marker["id"], **facts)
    report = RescoreReport(shards, rewritten, rows, changed_rows, changed_parse, tuple(skipped))
    log.info("rescore %s: %s", study_dir, report.summary())
    return report


def _same(old: list, new: list) -> bool:
    """Equal lists, treating floats equal to 1e-12 relative (chance values recomputed as 1/3 etc.)."""
    if len(old) != len(new):
        return False
    for a, b in zip(old, new, strict=True):
        if isinstance(a, float) and isinstance(b, float):
            if abs(a - b) > 1e-12 * max(1.0, abs(a)):
                return False
        elif a != b:
            return False
    return True
