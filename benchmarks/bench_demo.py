"""Benchmark: the embedded default (`recipes/demo.yaml`) end to end, stage by stage, in a scratch folder.

    .venv/bin/python benchmarks/bench_demo.py                                  # the whole demo
    .venv/bin/python benchmarks/bench_demo.py sweep.curated.samples_per_ability=[4] sweep.synthetic=null
    .venv/bin/python benchmarks/bench_demo.py --baseline studies/demo          # ratios vs a finished run

What `hpci run recipes/demo.yaml` does, with the clock on each part: loading and validating the recipe (data
generation included), then the local executor's stages one at a time (prepare, train, eval, aggregate with the
report). For each stage: wall seconds, the processes the executor started (one per unit of work: a trial, a
checkpoint's eval shards, ...), and for train the trained tokens per second across all trials (sum of trained
tokens / the stage's wall time: what the machine achieved, start-up included) next to the mean per-trial
throughput the trials log themselves (compute only). The machine's load average is printed before and after,
since the figures move with it on a shared machine.

`--baseline STUDY` reads a finished demo study (e.g. one from an earlier commit) and prints its per-trial train
seconds and tokens/s beside this run's, as ratios; without it only this run is shown.
Extra arguments are recipe overrides (`key.path=value`), to time a slice.

The last line is machine-readable:
    RESULT bench_demo wall_s=<s> trials=<n> eval_items=<n> train_tok_s=<aggregate trained tokens/s>
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
ROOT = Path(__file__).resolve().parents[1]


def _trial_summaries(study_dir: Path) -> list[dict]:
    from hpc_instruct.study_dir import StudyDir

    sdir = StudyDir(study_dir)
    out = []
    for folder in sorted((study_dir / "trials").glob("*")):
        path = sdir.trial_summary(folder.name)
        if path.is_file():
            out.append(json.loads(path.read_text()))
    return out


def _processes(study_dir: Path, stage: str) -> int:
    from hpc_instruct.study_dir import StudyDir

    folder = StudyDir(study_dir).logs / "local" / stage
    return len(list(folder.glob("*.log"))) if folder.is_dir() else 0


def _eval_items(study_dir: Path) -> int:
    import duckdb

    from hpc_instruct.study_dir import StudyDir

    files = list(StudyDir(study_dir).eval_root.rglob("*.parquet"))
    if not files:
        return 0
    return int(duckdb.sql(f"select count(*) from read_parquet({[str(f) for f in files]!r})").fetchone()[0])


def _train_figures(summaries: list[dict]) -> tuple[int, float, float]:
    """(trials, trained tokens, mean per-trial wall seconds)."""
    tokens = sum(float(s.get("tokens", 0)) for s in summaries)
    walls = [float(s.get("wall_seconds", 0.0)) for s in summaries]
    return len(summaries), tokens, (sum(walls) / len(walls) if walls else float("nan"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="recipe overrides, key.path=value")
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "demo.yaml"))
    parser.add_argument("--baseline", help="a finished demo study to compare per-trial figures with")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (printed)")
    args = parser.parse_args()

    from hpc_instruct.launch.local import run_local
    from hpc_instruct.launch.study_files import write_study
    from hpc_instruct.launch.tasks import STAGES
    from hpc_instruct.recipe.study import load_study

    scratch = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    print(f"scratch folder {scratch}; load average before: {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores)")
    start = time.perf_counter()
    t0 = time.perf_counter()
    study = load_study(args.recipe, (f"study.output_root={scratch}", *args.overrides), check_data=True)
    ex = study.expand()
    write_study(study, ex)
    walls = {"load+validate": time.perf_counter() - t0}
    procs = {"load+validate": 0}
    parallelism = study.recipe.execution.local_parallelism
    for stage in STAGES:
        t0 = time.perf_counter()
        report = run_local(study, ex, parallelism=parallelism, progress=False, stages=(stage,))
        walls[stage] = time.perf_counter() - t0
        procs[stage] = _processes(study.directory, stage)
        if report.failed or report.blocked:
            print("\n".join(report.failed + report.blocked), file=sys.stderr)
            return 1
    wall = time.perf_counter() - start
    summaries = _trial_summaries(study.directory)
    trials, tokens, per_trial = _train_figures(summaries)
    items = _eval_items(study.directory)
    train_tok_s = tokens / walls["train"] if walls.get("train") else 0.0
    logged = [float(s.get("tokens_per_s", 0.0)) for s in summaries]

    print(f"\n{'stage':<14}{'wall s':>9}{'share':>8}{'processes':>11}")
    for stage, seconds in walls.items():
        print(f"{stage:<14}{seconds:>9.1f}{seconds / wall:>8.0%}{procs[stage]:>11}")
    print(f"{'total':<14}{wall:>9.1f}{'':>8}{sum(procs.values()):>11}")
    print(f"\ntrials {trials}, trained tokens {tokens:,.0f}: {train_tok_s:,.0f} tokens/s across the train stage "
          f"(start-up included); per trial {per_trial:.1f} s wall, "
          f"{(sum(logged) / len(logged) if logged else 0):,.0f} tokens/s logged (compute only)")
    print(f"eval items scored: {items:,}; eval stage {walls.get('eval', 0) / max(items, 1) * 1000:.1f} ms per item")
    if args.baseline:
        base_trials, base_tokens, base_per_trial = _train_figures(_trial_summaries(Path(args.baseline)))
        print(f"\nbaseline {args.baseline}: {base_trials} trials, {base_per_trial:.1f} s per trial (logged wall), "
              f"{base_tokens / max(base_trials, 1):,.0f} tokens per trial")
        print(f"per-trial wall: this run {per_trial:.1f} s vs baseline {base_per_trial:.1f} s = "
              f"{base_per_trial / per_trial if per_trial else float('nan'):.2f}x faster")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if not args.keep:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    print(f"RESULT bench_demo wall_s={wall:.1f} trials={trials} eval_items={items} train_tok_s={train_tok_s:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
