"""Benchmark: the embedded default (`recipes/demo.yaml`) end to end, stage by stage, in a scratch folder.

    .venv/bin/python benchmarks/bench_demo.py                                  # the whole demo
    .venv/bin/python benchmarks/bench_demo.py sweep.curated.samples_per_ability=[4] sweep.synthetic=null
    .venv/bin/python benchmarks/bench_demo.py --baseline studies/demo          # ratios vs a finished run
    .venv/bin/python benchmarks/bench_demo.py --compare-unpacked sweep.seeds=[0]  # packed vs one process per task

What `hpci run recipes/demo.yaml` does, with the clock on each part: loading and validating the recipe (data
generation included), then the local executor's stages one at a time (prepare, train, eval, aggregate with the
report). For each stage: wall seconds, the processes the executor started (one per unit of work: a trial, a
checkpoint's eval shards, ...), and for train the trained tokens per second across all trials (sum of trained
tokens / the stage's wall time: what the machine achieved, start-up included) next to the mean per-trial
throughput the trials log themselves (compute only). The machine's load average is printed before and after,
since the figures move with it on a shared machine.

`--compare-unpacked` first runs the same study with one process per task (the local executor before packing)
and prints both side by side with their ratio, and whether the trials' final losses agree (they must: packing
changes where a trial runs, not what it computes). `--baseline STUDY` reads a finished demo study (e.g. one from an earlier commit) and prints its per-trial train
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
    """Result rows written by the eval stage (Parquet footers only)."""
    import pyarrow.parquet as pq

    from hpc_instruct.study_dir import StudyDir

    return sum(pq.ParquetFile(f).metadata.num_rows for f in StudyDir(study_dir).eval_root.rglob("*.parquet"))


def _train_figures(summaries: list[dict]) -> tuple[int, float, float]:
    """(trials, trained tokens, mean per-trial wall seconds)."""
    tokens = sum(float(s.get("tokens", 0)) for s in summaries)
    walls = [float(s.get("wall_seconds", 0.0)) for s in summaries]
    return len(summaries), tokens, (sum(walls) / len(walls) if walls else float("nan"))


def run_once(recipe: str, overrides: list[str], pack: bool, keep: bool) -> dict:
    """One demo run in a fresh scratch folder; per-stage walls and processes, train and eval figures."""
    from hpc_instruct.launch.local import run_local
    from hpc_instruct.launch.study_files import write_study
    from hpc_instruct.launch.tasks import STAGES
    from hpc_instruct.recipe.study import load_study

    scratch = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    print(f"{'packed' if pack else 'one process per task'}: scratch folder {scratch}; load average "
          f"{os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)", flush=True)
    start = t0 = time.perf_counter()
    study = load_study(recipe, (f"study.output_root={scratch}", *overrides), check_data=True)
    ex = study.expand()
    write_study(study, ex)
    walls, procs = {"load+validate": time.perf_counter() - t0}, {"load+validate": 0}
    for stage in STAGES:
        t0 = time.perf_counter()
        report = run_local(study, ex, parallelism=study.recipe.execution.local_parallelism, progress=False,
                           stages=(stage,), pack=pack)
        walls[stage], procs[stage] = time.perf_counter() - t0, _processes(study.directory, stage)
        if report.failed or report.blocked:
            raise SystemExit("\n".join(report.failed + report.blocked))
    summaries = _trial_summaries(study.directory)
    trials, tokens, per_trial = _train_figures(summaries)
    out = {"wall": time.perf_counter() - start, "walls": walls, "procs": procs, "trials": trials, "tokens": tokens,
           "per_trial": per_trial, "items": _eval_items(study.directory),
           "logged_tok_s": [float(s.get("tokens_per_s", 0.0)) for s in summaries], "load": os.getloadavg()[0],
           "losses": {s["label"]: s["final_loss"] for s in summaries}}
    out["train_tok_s"] = tokens / walls["train"] if walls.get("train") else 0.0
    if not keep:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    return out


def show(run: dict, title: str) -> None:
    wall = run["wall"]
    print(f"\n{title}\n{'stage':<14}{'wall s':>9}{'share':>8}{'processes':>11}")
    for stage, seconds in run["walls"].items():
        print(f"{stage:<14}{seconds:>9.1f}{seconds / wall:>8.0%}{run['procs'][stage]:>11}")
    print(f"{'total':<14}{wall:>9.1f}{'':>8}{sum(run['procs'].values()):>11}")
    logged = run["logged_tok_s"]
    print(f"trials {run['trials']}, trained tokens {run['tokens']:,.0f}: {run['train_tok_s']:,.0f} tokens/s across "
          f"the train stage (start-up included); per trial {run['per_trial']:.1f} s in train(), "
          f"{(sum(logged) / len(logged) if logged else 0):,.0f} tokens/s logged (compute only)")
    print(f"eval items scored: {run['items']:,} ({run['walls'].get('eval', 0) / max(run['items'], 1) * 1000:.1f} "
          f"ms per item); load average at the end {run['load']:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="recipe overrides, key.path=value")
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "demo.yaml"))
    parser.add_argument("--compare-unpacked", action="store_true",
                        help="first run the same study with one process per task (the executor before packing)")
    parser.add_argument("--baseline", help="a finished demo study to compare per-trial figures with")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders (printed)")
    args = parser.parse_args()

    before = run_once(args.recipe, args.overrides, False, args.keep) if args.compare_unpacked else None
    run = run_once(args.recipe, args.overrides, True, args.keep)
    if before is not None:
        show(before, "one process per task")
    show(run, "packed: one process per slot")
    if before is not None:
        print(f"\npacked vs one process per task: wall {before['wall']:.1f} s -> {run['wall']:.1f} s "
              f"({before['wall'] / run['wall']:.2f}x); train stage {before['walls']['train']:.1f} s -> "
              f"{run['walls']['train']:.1f} s ({before['walls']['train'] / run['walls']['train']:.2f}x); "
              f"processes {sum(before['procs'].values())} -> {sum(run['procs'].values())}")
        same = all(abs(before["losses"][k] - v) < 1e-4 for k, v in run["losses"].items() if k in before["losses"])
        print(f"final losses identical in both ways (1e-4): {same}")
    if args.baseline:
        base_trials, base_tokens, base_per_trial = _train_figures(_trial_summaries(Path(args.baseline)))
        print(f"\nbaseline {args.baseline}: {base_trials} trials, {base_per_trial:.1f} s per trial in train(), "
              f"{base_tokens / max(base_trials, 1):,.0f} tokens per trial; this run {run['per_trial']:.1f} s "
              f"({base_per_trial / run['per_trial'] if run['per_trial'] else float('nan'):.2f}x)")
    print(f"RESULT bench_demo wall_s={run['wall']:.1f} trials={run['trials']} eval_items={run['items']} "
          f"train_tok_s={run['train_tok_s']:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
