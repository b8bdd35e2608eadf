"""Aggregation speed: 10 million result rows in 2,000 shard files, ours vs a pandas JSON-lines baseline.

    .venv/bin/python benchmarks/bench_aggregate.py              # the full size (about 5 minutes, ~6 GB in /tmp)
    .venv/bin/python benchmarks/bench_aggregate.py --items 50   # a quick smoke run (100,000 rows)

Data: a simulated study (tests/analyze/simulated_study.py, planted truth) with 25 trials x 4 checkpoints x 20 eval
sets (10 abilities x valid/test) = 2,000 eval shards of 5,000 items each, written once into a temporary
directory exactly as the eval stage writes them: full RESULT_SCHEMA Parquet rows, the layout's paths, atomic
renames, `.done` markers. The same rows are then written once more as one JSON-lines file per shard with the
per-item fields the original DoIT code and OpenCompass keep (ids, checkpoint, split, ability, item, prediction,
reference, correct, chance).

Measured side by side in this run, on the same files in the page cache:
- ours: `aggregate_study(study)`, the whole `hpci aggregate`: plan and marker checks, a projected DuckDB scan,
  duplicate detection, 1,000-replicate paired bootstrap intervals, the overall mean, checkpoint selection and
  the atomic write of results/scores.parquet (median of 3 runs);
- pandas: `pd.read_json(lines=True)` per shard, concat, group by trial x checkpoint x split x ability for
  accuracy / items / chance and the overall mean (one run: it takes minutes). It computes a subset of ours.
Both tables are compared (accuracy, item counts) before the figures are printed. The last line is the result.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import polars as pl

from hpc_instruct.analyze.aggregate import aggregate_study
from hpc_instruct.analyze.selection import OVERALL
from hpc_instruct.data.abilities import ABILITY_KEYS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "analyze"))  # the study simulator
from simulated_study import create_study  # noqa: E402

SEEDS, VOLUMES, EPOCHS = 5, (1, 2, 4, 8, 16), 4  # 25 trials x 4 checkpoints x 20 sets = 2,000 shards
JSONL_FIELDS = [
    "trial_id",
    "eval_task_id",
    "label",
    "model",
    "source",
    "seed",
    "checkpoint",
    "epoch",
    "split",
    "eval_set",
    "ability",
    "item_id",
    "item_index",
    "format",
    "response",
    "parsed",
    "reference",
    "correct",
    "chance",
]

RECIPE = """\
study: {{name: bench, output_root: {out}}}
models:
  - {{name: tiny, size: tiny, device: cpu, micro_batch: 4, global_batch: 8}}
data: {{root: {data}}}
sweep:
  seeds: {seeds}
  curated: {{samples_per_ability: {volumes}}}
training: {{epochs: {epochs}, precision: fp32, lr: 1.0e-3, max_length: 256}}
evaluation: {{splits: [valid, test], checkpoints: all, test_on: all, include_base: false, items_per_shard: {items}}}
"""


def make_study(root: Path, items: int):
    """Data root (line counts only), recipe, plan.json and every Parquet shard; then the JSON-lines twins."""
    data = root / "data"
    for ability in ABILITY_KEYS:
        for folder, n in (("full", max(VOLUMES)), ("valid", items), ("test", items)):
            path = data / "curated" / folder / f"{ability}_{folder}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n" * n)
    recipe = root / "bench.yaml"
    recipe.write_text(
        RECIPE.format(
            out=root / "studies",
            data=data,
            seeds=list(range(SEEDS)),
            volumes=list(VOLUMES),
            epochs=EPOCHS,
            items=items,
        )
    )
    study = create_study(recipe, root / "studies")
    jsonl = []
    for i, path in enumerate(sorted((study.directory / "eval").rglob("*.parquet"))):
        target = root / "jsonl" / f"shard-{i:05d}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        pl.read_parquet(path, columns=JSONL_FIELDS).write_ndjson(target)
        jsonl.append(target)
    return study, jsonl


def pandas_baseline(files: list[Path]) -> pd.DataFrame:
    """What per-item JSON results get: read every file, concatenate, group, average (overall: mean of abilities)."""
    rows = pd.concat([pd.read_json(f, lines=True) for f in files], ignore_index=True)
    keys = ["trial_id", "checkpoint", "split", "ability"]
    scores = rows.groupby(keys, as_index=False).agg(
        correct=("correct", "mean"), items=("correct", "size"), chance=("chance", "mean")
    )
    scores["accuracy"] = 100 * scores["correct"]
    scores["chance"] = 100 * scores["chance"]
    overall = scores.groupby(keys[:3], as_index=False)[["accuracy", "chance"]].mean().assign(ability=OVERALL)
    return pd.concat([scores, overall], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000, help="items per shard (5000: 10 million rows)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tmp = tempfile.mkdtemp(prefix="bench-aggregate-")
    try:
        started = time.perf_counter()
        study, jsonl = make_study(Path(tmp), args.items)
        print(
            f"generated {study.rows:,} rows in {study.shards:,} Parquet shards and {len(jsonl):,} JSON-lines files "
            f"in {time.perf_counter() - started:.0f} s ({_size(study.directory / 'eval', '*.parquet')} Parquet, "
            f"{_size(Path(tmp) / 'jsonl', '*.jsonl')} JSON lines); {os.cpu_count()} CPUs",
            flush=True,
        )
        ours_runs = []
        for _ in range(3):
            t = time.perf_counter()
            result = aggregate_study(study.directory)
            ours_runs.append(time.perf_counter() - t)
        ours = statistics.median(ours_runs)
        print(
            f"ours: {', '.join(f'{s:.2f}' for s in ours_runs)} s (median {ours:.2f} s); "
            f"{result.completeness.summary(limit=0)}",
            flush=True,
        )
        t = time.perf_counter()
        baseline = pandas_baseline(jsonl)
        theirs = time.perf_counter() - t
        print(f"pandas JSON lines: {theirs:.2f} s", flush=True)
        _check_same(result.scores, baseline)
        rows = study.rows
        speedup = theirs / ours
        verdict = "ok" if speedup >= 10 and ours < 30 else "BELOW TARGET (>= 10x faster, ours < 30 s)"
        print(f"rows/s: ours {rows / ours:,.0f}, pandas {rows / theirs:,.0f}; target: {verdict}")
        print(
            f"RESULT bench_aggregate rows={rows} ours_s={ours:.2f} pandas_s={theirs:.2f} speedup={speedup:.1f}"
        )
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def _check_same(ours: pd.DataFrame, baseline: pd.DataFrame) -> None:
    """Both pipelines must produce the same accuracies and item counts for every group."""
    keys = ["trial_id", "checkpoint", "split", "ability"]
    merged = ours[keys + ["accuracy", "items"]].merge(
        baseline[keys + ["accuracy", "items"]], on=keys, suffixes=("", "_pandas"), validate="one_to_one"
    )
    if len(merged) != len(ours) or len(merged) != len(baseline):
        raise SystemExit(
            f"tables differ in groups: ours {len(ours)}, pandas {len(baseline)}, joined {len(merged)}"
        )
    worst = (merged["accuracy"] - merged["accuracy_pandas"]).abs().max()
    inside = merged["ability"] != OVERALL
    if worst > 1e-9 or (merged.loc[inside, "items"] != merged.loc[inside, "items_pandas"]).any():
        raise SystemExit(f"tables differ: max accuracy difference {worst}")
    print(f"tables agree: {len(merged):,} groups, max |accuracy difference| {worst:.1e}")


def _size(folder: Path, pattern: str) -> str:
    total = sum(p.stat().st_size for p in folder.rglob(pattern))
    return f"{total / 1e6:,.0f} MB"


if __name__ == "__main__":
    main()
