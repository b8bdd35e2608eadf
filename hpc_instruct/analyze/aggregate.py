"""`hpci aggregate`: every trusted eval shard of a study -> `results/scores.parquet` (one row per trial x
checkpoint x split x ability, plus the mean over abilities), with completeness checked against the plan.

Per row: accuracy (percent), items, chance (mean of the items' chance values, percent), the chance-normalised
score (acc - chance) / (100 - chance), a seeded paired-bootstrap 95% interval for both, whether the row is
complete, and whether it is the trial's reported score (test split at the checkpoint selected on valid).
The `overall` rows are the mean over the study's abilities (out-of-domain sets excluded), defined only when
every ability is complete: the original code divided by twice the number of abilities, halving it.

Missing shards, stale or absent markers, unreadable or contradictory shards, duplicated items and files the plan
does not name are listed in `results/completeness.json` and in the result; rows they touch are flagged
`complete = False` and left out of every analysis downstream. `strict=True` refuses to write anything instead.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hpc_instruct.analyze.bootstrap import group_items, interval
from hpc_instruct.analyze.expected import StudyPlan, load_plan, plan_from_expansion
from hpc_instruct.analyze.overall import normalise, overall_rows
from hpc_instruct.analyze.result_rows import PROVENANCE_COLUMNS, read_rows
from hpc_instruct.analyze.selection import mark_reported, select_checkpoints
from hpc_instruct.analyze.shards import Completeness, ShardProblem, check_rows, find_trusted
from hpc_instruct.atomic import atomic_path, write_json, write_marker
from hpc_instruct.errors import UserError
from hpc_instruct.expansion import Expansion
from hpc_instruct.hashing import digest
from hpc_instruct.study_dir import BASE, SELECTED, StudyDir, parse_epoch

log = logging.getLogger(__name__)
AGGREGATE_VERSION = "aggregate-1"  # bump when scores.parquet changes meaning


class IncompleteStudyError(UserError):
    """`strict` aggregation found shards it cannot trust; the message lists them."""


@dataclass(frozen=True)
class AggregateResult:
    study_dir: Path
    plan: StudyPlan
    scores: pd.DataFrame  # see the module docstring; `reported` rows feed every analysis
    selection: pd.DataFrame  # one row per trained trial (selection.py)
    completeness: Completeness
    provenance: Mapping[str, tuple[str, ...]]  # provenance column -> distinct values in the trusted shards
    num_parameters: Mapping[str, int]  # model -> parameters, as recorded in the rows
    inputs_id: str  # content id of what was aggregated (plan, trusted shards, settings)
    path: Path | None  # results/scores.parquet when written
    replicates: np.ndarray  # float32 [len(scores), n_boot]: paired bootstrap accuracies (0..1) per scores row

    def reported(self) -> pd.DataFrame:
        """Complete reported rows: each trial's (and base model's) score per ability and the overall mean.
        Column `row` is the row's position in `scores` and `replicates`."""
        s = self.scores
        mask = (s["reported"] & s["complete"]).to_numpy()
        return s[mask].assign(row=np.flatnonzero(mask)).reset_index(drop=True)

    def replicates_of(self, rows) -> np.ndarray:
        """Bootstrap replicates in percent for positions `rows` ([len(rows), n_boot])."""
        return 100.0 * self.replicates[np.asarray(rows, dtype=np.int64)].astype(np.float64)


def aggregate_study(
    study_dir: str | os.PathLike,
    *,
    plan: StudyPlan | Expansion | None = None,
    strict: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    engine: str = "auto",
    write: bool = True,
) -> AggregateResult:
    """Aggregate a study directory; see the module docstring.

    Args:
        plan: what to expect: `plan.json` of the study when None, a `StudyPlan`, or an in-memory `Expansion`.
        strict: raise `IncompleteStudyError` (and write nothing) when any shard cannot be trusted.
        n_boot, seed: bootstrap replicates and seed (intervals are reproducible for a given seed).
        engine: "auto" (DuckDB if installed, else pyarrow), "duckdb" or "pyarrow".
        write: write results/scores.parquet, selection.parquet and completeness.json.
    """
    study_dir = Path(study_dir)
    if plan is None:
        plan = load_plan(study_dir)
    elif not isinstance(plan, StudyPlan):  # an Expansion: same content as plan.json, without data facts
        plan = plan_from_expansion(plan, study_dir.name)
    sdir = StudyDir(study_dir)
    trusted, problems = find_trusted(study_dir, plan)
    shards = [plan.shards[i] for i in trusted]
    summary, rows = read_rows([sdir.eval_shard(s) for s in shards], engine)
    good, row_problems = check_rows(study_dir, shards, summary)
    problems += row_problems

    keys: dict[tuple[str, str, str, str], int] = {}
    shard_group = np.array(
        [keys.setdefault((p.owner, p.checkpoint, p.ability, p.split), len(keys)) for p in plan.shards],
        dtype=np.int64,
    )
    n_groups = len(keys)
    sizes = plan.set_sizes()
    set_names = sorted(sizes)
    set_index = {s: i for i, s in enumerate(set_names)}
    group_keys = list(keys)
    group_set = np.array([set_index[f"{k[2]}/{k[3]}"] for k in group_keys], dtype=np.int64)
    expected = np.bincount(shard_group, weights=[p.stop - p.start for p in plan.shards], minlength=n_groups)
    planned = np.bincount(shard_group, minlength=n_groups)

    file_group = shard_group[np.asarray(trusted, dtype=np.int64)] if trusted else np.zeros(0, np.int64)
    good_files = np.asarray(good, dtype=bool)
    keep = good_files[rows.file] if len(rows.file) else np.zeros(0, bool)
    counted = group_items(
        group_set,
        set_names,
        np.array([sizes[s] for s in set_names]),
        file_group[rows.file[keep]],
        rows.item[keep],
        rows.correct[keep],
        n_boot,
        seed,
    )
    g_good = np.bincount(file_group[good_files], minlength=n_groups)
    g_rows = np.bincount(file_group[good_files], weights=summary.rows[good_files], minlength=n_groups)
    g_chance = np.bincount(file_group[good_files], weights=summary.chance_sum[good_files], minlength=n_groups)

    effective = _effective_checkpoints(group_keys, file_group, good_files, summary)
    table = pd.DataFrame(
        {
            "trial_id": [k[0] for k in group_keys],
            "planned_checkpoint": [k[1] for k in group_keys],
            "checkpoint": [e[0] for e in effective],
            "epoch": [e[1] for e in effective],
            "selection_rule": [e[2] for e in effective],
            "split": [k[3] for k in group_keys],
            "ability": [k[2] for k in group_keys],
            "items": counted.items,
            "items_expected": expected.astype(np.int64),
            "correct": counted.correct,
        }
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        table["accuracy"] = 100.0 * counted.correct / np.where(counted.items > 0, counted.items, np.nan)
        table["chance"] = 100.0 * g_chance / np.where(g_rows > 0, g_rows, np.nan)
    lo, hi, se = interval(counted.replicates)
    table["accuracy_se"], table["accuracy_lo"], table["accuracy_hi"] = 100 * se, 100 * lo, 100 * hi
    reasons = _group_reasons(table, g_good, planned, counted.duplicates, effective)
    table["complete"] = [not r for r in reasons]
    table["problem"] = ["; ".join(r) for r in reasons]
    for g in np.flatnonzero(counted.duplicates):
        k = group_keys[g]
        problems.append(
            ShardProblem(
                "duplicate_items",
                f"eval/{k[0]}/{k[1]}/{k[2]}-{k[3]}",
                "",
                f"{int(counted.duplicates[g])} rows repeat an item already counted",
            )
        )
    normalise(table)
    overall, overall_reps = overall_rows(table, counted.replicates, plan)
    scores = pd.concat([table, overall], ignore_index=True)
    replicates = np.concatenate([counted.replicates, overall_reps]).astype(np.float32)
    params = _parameters(plan, good_files, summary)
    scores = _with_trials(scores, plan, params)
    selection = select_checkpoints(scores, plan)
    scores = mark_reported(scores, selection, plan)
    scores = scores.sort_values(["source", "model", "trial_id", "split", "epoch", "ability"], kind="stable")
    replicates = replicates[scores.index.to_numpy()]
    scores = scores.reset_index(drop=True)

    completeness = Completeness(
        len(plan.shards),
        int(good_files.sum()),
        int(expected.sum()),
        int(counted.items.sum()),
        tuple(problems),
    )
    provenance = _provenance(summary, good_files)
    inputs_id = digest(
        [
            AGGREGATE_VERSION,
            plan.study,
            plan.fingerprint,
            sorted(s.id for s, ok in zip(shards, good, strict=True) if ok),
            n_boot,
            seed,
        ]
    )
    if not completeness.ok:
        log.warning("%s", completeness.summary())
        if strict:
            raise IncompleteStudyError(
                f"{study_dir}: refusing to aggregate an incomplete study:\n" + completeness.summary(limit=50)
            )
    path = _write(sdir, scores, selection, completeness, inputs_id) if write else None
    return AggregateResult(
        study_dir, plan, scores, selection, completeness, provenance, params, inputs_id, path, replicates
    )


def _effective_checkpoints(group_keys, file_group, good_files, summary) -> list[tuple[str, int, str]]:
    """(checkpoint, epoch, selection rule) per group; 'selected' groups take the epoch their rows name."""
    found: dict[int, set] = {}
    for i in np.flatnonzero(good_files):
        g = int(file_group[i])
        found.setdefault(g, set()).add(
            (summary.low["checkpoint"][i], summary.low["epoch"][i], summary.low["selection_rule"][i] or "")
        )
    out = []
    for g, (_, ckpt, _, _) in enumerate(group_keys):
        seen = sorted(found.get(g, set()), key=str)
        if ckpt == SELECTED:
            name, epoch, rule = (
                seen[0] if len(seen) == 1 else ("selected?" if seen else SELECTED, -1, "")
            )
            out.append((str(name), int(epoch) if epoch is not None else -1, str(rule)))
        elif ckpt == BASE:
            out.append((ckpt, 0, ""))
        else:
            out.append((ckpt, parse_epoch(ckpt), seen[0][2] if len(seen) == 1 else ""))
    return out


def _group_reasons(table: pd.DataFrame, g_good, planned, duplicates, effective) -> list[list[str]]:
    reasons = []
    for g in range(len(table)):
        r = []
        if g_good[g] < planned[g]:
            r.append(f"{int(g_good[g])}/{int(planned[g])} shards trusted")
        elif table["items"].iat[g] < table["items_expected"].iat[g]:
            r.append(f"{int(table['items'].iat[g])}/{int(table['items_expected'].iat[g])} items")
        if duplicates[g]:
            r.append(f"{int(duplicates[g])} duplicate item rows")
        if effective[g][0] == "selected?":
            r.append("shards name different selected epochs")
        reasons.append(r)
    return reasons


def _parameters(plan: StudyPlan, good_files: np.ndarray, summary) -> dict[str, int]:
    """Parameters per model, as the rows record them (plan.json knows only the size preset name)."""
    model_of = {t.id: t.model for t in plan.trials}
    params: dict[str, int] = {}
    for i in np.flatnonzero(good_files):
        value, owner = summary.low["num_parameters"][i], summary.low["trial_id"][i]
        if value is not None and owner in model_of:
            params.setdefault(model_of[owner], int(value))
    return params


def _with_trials(scores: pd.DataFrame, plan: StudyPlan, params: Mapping[str, int]) -> pd.DataFrame:
    meta = pd.DataFrame(
        [
            {
                "trial_id": t.id,
                "study": plan.study,
                "label": t.label,
                "arm": t.arm,
                "model": t.model,
                "size": t.size,
                "num_parameters": params.get(t.model, -1),
                "source": t.source,
                "seed": t.seed,
                "total_samples": t.total_samples,
                "synthetic_samples": t.synthetic_samples,
                "samples_per_ability": json.dumps(dict(t.samples_per_ability), sort_keys=True),
            }
            for t in plan.trials
        ]
    )
    merged = scores.merge(meta, on="trial_id", how="left")
    spa = {t.id: t.samples_per_ability for t in plan.trials}
    merged["samples"] = [
        int(spa.get(t, {}).get(a, 0)) for t, a in zip(merged["trial_id"], merged["ability"], strict=True)
    ]
    merged["out_of_domain"] = merged["ability"].isin(plan.out_of_domain)
    front = [
        "study",
        "trial_id",
        "label",
        "arm",
        "model",
        "size",
        "num_parameters",
        "source",
        "seed",
        "samples",
        "total_samples",
        "synthetic_samples",
        "samples_per_ability",
    ]
    return merged[front + [c for c in merged.columns if c not in front]]


def _provenance(summary, good_files) -> dict[str, tuple[str, ...]]:
    out = {}
    for column in PROVENANCE_COLUMNS:
        values = {
            v
            for side in (summary.low, summary.high)
            for v, ok in zip(side[column], good_files, strict=True)
            if ok and v is not None
        }
        out[column] = tuple(sorted(str(v) for v in values))
    return out


def _write(
    sdir: StudyDir,
    scores: pd.DataFrame,
    selection: pd.DataFrame,
    completeness: Completeness,
    inputs_id: str,
) -> Path:
    """results/scores.parquet (+ .done marker naming the inputs), selection.parquet, completeness.json."""
    path = sdir.scores
    for target, frame in ((sdir.selection, selection), (path, scores)):
        with atomic_path(target) as tmp:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
    write_json(
        sdir.completeness,
        {
            "inputs_id": inputs_id,
            "planned_shards": completeness.planned_shards,
            "trusted_shards": completeness.trusted_shards,
            "planned_items": completeness.planned_items,
            "trusted_items": completeness.trusted_items,
            "counts": completeness.counts(),
            "problems": [vars(p) for p in completeness.problems],
        },
    )
    write_marker(path, inputs_id, rows=len(scores))
    log.info("wrote %s (%d rows)", path, len(scores))
    return path
