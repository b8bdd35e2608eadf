"""`hpci`: the command line. Thin: parse, call the library, print. User mistakes end in clear lines and exit 2.

Imports are deferred into each command so `hpci plan` starts fast on a login node (no torch).
"""

from __future__ import annotations

import argparse
import json
import sys

from hpc_instruct import __version__
from hpc_instruct.errors import UserError
from hpc_instruct.study_dir import StudyDir

EPILOG = """examples:
  hpci validate recipes/doit.yaml
  hpci plan recipes/doit.yaml training.lr=2e-5          # key.path=value overrides
  hpci plan recipes/demo.yaml --format json | jq '.trials[0]'
  hpci run recipes/demo.yaml                            # the whole study on this machine
  hpci submit recipes/doit.yaml execution.partition=gpu # Slurm: submits arrays and returns
  hpci status studies/doit                              # done / running / pending / failed (why) per stage
  hpci resubmit studies/doit --time-factor 2            # only what failed or is missing
"""


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("overrides", nargs="*", metavar="key.path=value",
                   help="override recipe values, e.g. training.lr=2e-5 models.llama-7b.tp=2 sweep.seeds=[0,1]")


def cmd_validate(args: argparse.Namespace) -> int:
    from hpc_instruct.recipe.study import load_study

    study = load_study(args.recipe, tuple(args.overrides), check_data=True)
    ex = study.expand(with_eval=True)
    for w in study.warnings:
        print(f"warning: {w}", file=sys.stderr)
    records = f"; data: {study.records}" if study.records else ""
    print(f"ok: {args.recipe}: study {study.recipe.study.name!r}, {len(ex.trials)} trials, "
          f"{len(ex.eval_tasks)} eval tasks{records}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from hpc_instruct.launch.plan import plan_dict, plan_table
    from hpc_instruct.recipe.study import load_study

    study = load_study(args.recipe, tuple(args.overrides), check_data=True)
    ex = study.expand(with_eval=True)
    if args.write:
        from hpc_instruct.launch.study_files import write_study

        print(f"wrote {study.directory}/study.yaml and plan.json: {write_study(study, ex).describe()}", file=sys.stderr)
    if args.format == "json":
        json.dump(plan_dict(study, ex), sys.stdout, indent=1 if args.pretty else None, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(plan_table(study, ex, every_eval_task=args.eval_tasks))
    return 0


def _load_for_launch(args: argparse.Namespace):
    from hpc_instruct.launch.study_files import write_study
    from hpc_instruct.recipe.study import load_study

    study = load_study(args.recipe, tuple(args.overrides), check_data=True)
    for w in study.warnings:
        print(f"warning: {w}", file=sys.stderr)
    ex = study.expand()
    drift = write_study(study, ex)
    print(f"study {study.recipe.study.name} -> {study.directory}: {drift.describe()}")
    return study, ex


def cmd_run(args: argparse.Namespace) -> int:
    from hpc_instruct.launch.local import run_local

    study, ex = _load_for_launch(args)
    executor = args.executor or study.recipe.execution.executor
    if executor == "slurm":
        raise UserError("this recipe runs on Slurm: use `hpci submit`, or `hpci run --executor local` to run it here")
    parallelism = args.parallelism or study.recipe.execution.local_parallelism
    report = run_local(study, ex, parallelism=parallelism, debug=executor == "debug", progress=not args.quiet)
    print(f"ran {report.ran} tasks ({report.skipped_done} already done) in {report.seconds:.0f} s")
    for line in report.failed:
        print(f"failed: {line}", file=sys.stderr)
    for line in report.blocked:
        print(f"not run: {line}", file=sys.stderr)
    if not report.failed and not report.blocked:
        report_html = StudyDir(study.directory).report_html
        if report_html.is_file():
            print(f"report: {report_html}")
    return 1 if report.failed or report.blocked else 0


def cmd_submit(args: argparse.Namespace) -> int:
    from hpc_instruct.launch.slurm import SubmitOptions, submit_study

    study, ex = _load_for_launch(args)
    report = submit_study(study, ex, SubmitOptions(slots_per_trial=args.slots))
    _print_submission(report)
    return 0


def _print_submission(report) -> None:
    for s in report.submissions:
        dep = f" after {s.depends_on}" if s.depends_on else ""
        print(f"submitted {s.stage}-{s.group}: job {s.job_id}, {len(s.elements)} elements{dep}")
    print(f"{report.sbatch_calls} array jobs submitted; {report.skipped_done} tasks already done, "
          f"{report.skipped_active} pending or running (not resubmitted)")


def cmd_resubmit(args: argparse.Namespace) -> int:
    from hpc_instruct.launch.slurm import SubmitOptions, submit_study
    from hpc_instruct.launch.study_files import load_written

    study = load_written(args.study)
    report = submit_study(study, study.expand(), SubmitOptions(args.time_factor, args.mem_factor, args.slots))
    _print_submission(report)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from hpc_instruct.launch.state import status_table, statuses, summary
    from hpc_instruct.launch.study_files import load_written
    from hpc_instruct.launch.tasks import build_tasks
    from hpc_instruct.study_dir import StudyDir

    study = load_written(args.study)
    rows = statuses(StudyDir(study.directory), build_tasks(study, study.expand()))
    if args.format == "json":
        out = {"summary": {k: dict(v) for k, v in summary(rows).items()},
               "tasks": [asdict(r.task) | {k: v for k, v in asdict(r).items() if k != "task"} for r in rows]}
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(status_table(rows, show_failed=10**9 if args.all else 20))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from hpc_instruct.launch import slurm_query
    from hpc_instruct.launch.slurm import cancel_study

    jobs = cancel_study(args.study, wait_s=args.wait)
    if not jobs:
        print("nothing pending or running")
        return 0
    left = slurm_query.wait_gone(jobs, 0)
    print(f"cancelled {len(jobs)} array jobs: {' '.join(jobs)}")
    if left:  # said plainly: their processes may still write to the study for a while
        print(f"still ending after {args.wait:g} s (they may still write to the study): {' '.join(left)}")
    else:
        print("all of them have ended")
    return 0


def cmd_task(args: argparse.Namespace) -> int:
    import logging
    import os

    from hpc_instruct.launch.entry import _load, run_tasks

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ids = list(args.task_ids)
    if args.index is not None or not ids:
        index = args.index if args.index is not None else int(os.environ.get("SLURM_ARRAY_TASK_ID", "-1"))
        if index < 0:
            raise UserError("give task ids, --index N, or run inside a Slurm array (SLURM_ARRAY_TASK_ID)")
        _, _, tasks = _load(str(args.study))
        stage_tasks = [t.id for t in tasks.values() if t.stage == args.stage]
        if index >= len(stage_tasks):
            raise UserError(f"--index {index}: stage {args.stage} has {len(stage_tasks)} tasks (0..{len(stage_tasks) - 1})")
        ids = [stage_tasks[index]]
    run_tasks(str(args.study), args.stage, ids)
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    from hpc_instruct.analyze import aggregate_study

    result = aggregate_study(args.study, strict=args.strict)
    print(result.completeness.summary())
    print(f"scores: {result.path}")
    return 0 if result.completeness.ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    from hpc_instruct.analyze import write_report

    print(f"report: {write_report(args.study, budget=args.budget)}")
    return 0


def cmd_plan_data(args: argparse.Namespace) -> int:
    from hpc_instruct.analyze import plan_allocation

    weights = {}
    for item in args.weight:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--weight {item!r}: expected ability=weight, e.g. --weight math=2")
        weights[key] = float(value)
    alloc = plan_allocation(args.study, args.budget, weights=weights or None, model=args.model)
    print(alloc.comparison.to_string(index=False))
    print(f"predicted mean {alloc.score:.1f} vs uniform {alloc.uniform_score:.1f} "
          f"(+{alloc.gain_over_uniform:.1f} points) for model {alloc.model}, budget {alloc.budget}")
    if alloc.extrapolated:
        print(f"note: extrapolated beyond observed volumes for {', '.join(alloc.extrapolated)}")
    print("\nrecipe mix to test the plan (also in results/):\n" + alloc.recipe_snippet)
    if args.write:
        from hpc_instruct.analyze.plan_recipe import same_splits, write_plan_recipe

        path = write_plan_recipe(args.study, alloc)
        print(f"wrote {path}: the plan, uniform and reconstruct arms at {alloc.budget:,} samples, with predictions; "
              f"measure them with\n  hpci run {path}")
        for note in same_splits(alloc):
            print(f"note: {note} (one trial, written once)")
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    from hpc_instruct.evaluate.rescore import rescore_study

    print(rescore_study(args.study))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from hpc_instruct.evaluate.score_files import ScoreFilesConfig, score_files

    try:
        ids = tuple(int(i) for i in args.letter_ids.split(",")) if args.letter_ids else None
        config = ScoreFilesConfig(args.mode, args.symbolic, *((ids,) if ids else ()))
    except ValueError as exc:
        raise UserError(f"--letter-ids {args.letter_ids!r}: expected four token ids for A,B,C,D, e.g. 319,350,315,360") from exc
    for result in score_files(args.files, args.out, config):
        for line in result.skipped:
            print(f"skipped {line}", file=sys.stderr)
        print(result.describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpci", description="hpc_instruct: instruction-tuning dynamics studies on HPC clusters. "
        "One recipe -> Slurm arrays of Megatron-core training and sharded evaluation -> the study's answers.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"hpc_instruct {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("validate", help="check a recipe; every problem with file:line and a suggestion (exit 2)",
                       description="Load a recipe (includes, ${ENV} values, overrides), check every key, type, range "
                       "and consistency rule, read every record of the data files the study uses (as the stages would; "
                       "cached by content hash), and report all problems at once. Writes nothing.")
    _recipe_args(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="dry run: every job of every stage, resources, outputs, GPU-hours",
                       description="Expand the study into trials and eval tasks and show what would be submitted: "
                       "one array job per stage and resource shape, each trial's sdir, steps, tokens and "
                       "estimated GPU-hours (assumptions printed). Writes nothing; does not import torch.")
    _recipe_args(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--pretty", action="store_true", help="indent JSON")
    p.add_argument("--eval-tasks", action="store_true", help="list every eval task in the table (long)")
    p.add_argument("--write", action="store_true",
                   help="also write <study>/study.yaml and plan.json (for the plain sbatch templates in slurm/)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("run", help="run the whole study on this machine (local or debug executor), with progress",
                       description="Write the study directory, then run prepare, base, train, eval and aggregate here. "
                       "Done tasks are skipped, so re-running after an interruption finishes the rest.")
    _recipe_args(p)
    p.add_argument("--executor", choices=("local", "debug"), help="default: the recipe's execution.executor")
    p.add_argument("--parallelism", type=int, help="ranks at once (default: execution.local_parallelism)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("submit", help="submit the study to Slurm as dependent array jobs and return",
                       description="One array job per stage and resource shape, chained with Slurm dependencies; "
                       "the login node need not stay up. Tasks done, pending or running are not submitted again; "
                       "a changed recipe runs only the affected tasks and the drift is reported.")
    _recipe_args(p)
    p.add_argument("--slots", type=int, default=4, help="eval arrays per train array (eval parallelism per trial)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="per stage: done / running / pending / failed (with reason) / never submitted",
                       description="Reads sacct (squeue without accounting) and the study's completion markers. "
                       "Failed tasks show the reason (preempted, timeout, out of memory, node failure, error), "
                       "attempts, the log path and its last lines.")
    p.add_argument("study", help="study directory")
    p.add_argument("--all", action="store_true", help="list every failed task")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("resubmit", help="submit only what failed or is missing, optionally with more time/memory")
    p.add_argument("study", help="study directory")
    p.add_argument("--time-factor", type=float, default=1.0, help="multiply time limits (e.g. 2 after timeouts)")
    p.add_argument("--mem-factor", type=float, default=1.0, help="multiply memory (e.g. 1.5 after out-of-memory)")
    p.add_argument("--slots", type=int, default=4)
    p.set_defaults(func=cmd_resubmit)

    p = sub.add_parser("cancel", help="scancel every pending or running job of the study and wait until they end")
    p.add_argument("study", help="study directory")
    p.add_argument("--wait", type=float, default=120.0, metavar="S",
                   help="seconds to wait for the cancelled jobs to end (0: return at once; default 120)")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("aggregate", help="read every shard, check completeness, write results/scores.parquet",
                       description="Missing, stale or duplicate shards are reported, never averaged over; exit 1 "
                       "when the study is incomplete. No model, no GPU.")
    p.add_argument("study", help="study directory")
    p.add_argument("--strict", action="store_true", help="fail instead of writing partial scores")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("report", help="growth curves, sensitivity, curated vs synthetic, transfer, plots -> HTML",
                       description="Writes results/report.html (self-contained) and report.md, PNG/SVG plots and "
                       "CSV/Parquet tables, with provenance (recipe, data and tokenizer hashes, code version).")
    p.add_argument("study", help="study directory")
    p.add_argument("--budget", type=int, help="also plan this many samples in the report")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("plan-data", help="allocate a sample budget over abilities from the fitted curves",
                       description="Maximises the (weighted) mean predicted score, compares with uniform and the "
                       "paper's 'reconstruct' mix, and writes a ready-to-run recipe mix to results/.")
    p.add_argument("study", help="study directory")
    p.add_argument("--budget", type=int, required=True, help="total training samples")
    p.add_argument("--weight", action="append", default=[], metavar="ABILITY=W", help="e.g. --weight math=2")
    p.add_argument("--model", help="whose curves to use (default: the largest curated model)")
    p.add_argument("--write", action="store_true",
                   help="also write results/plan-N.yaml: a recipe running the plan, uniform and reconstruct arms")
    p.set_defaults(func=cmd_plan_data)

    p = sub.add_parser("rescore", help="recompute scores from stored responses with the current scorers (no model)")
    p.add_argument("study", help="study directory")
    p.set_defaults(func=cmd_rescore)

    p = sub.add_parser("score", help="score prediction files without a model (DoIT .json/.jsonl or result .parquet)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--mode", choices=("doit", "doit-text", "corrected"), default="doit",
                   help="official rules with logit fallback (default), official text mode, or corrected")
    p.add_argument("--out", default="scores", help="output folder (default: ./scores)")
    p.add_argument("--symbolic", action="store_true", help="corrected math: also compare expressions with sympy")
    p.add_argument("--letter-ids", default="", metavar="A,B,C,D",
                   help="token ids of A-D in a full-vocabulary generated_score (default: DoIT's eval tokenizer)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("task", help="run tasks of one stage (the entry point for plain sbatch --array)",
                       description="Run tasks by id, or the N-th task of the stage (--index, default "
                       "$SLURM_ARRAY_TASK_ID). Done tasks are skipped.")
    p.add_argument("stage", choices=("prepare", "base", "train", "eval", "aggregate"))
    p.add_argument("study", help="study directory")
    p.add_argument("task_ids", nargs="*")
    p.add_argument("--index", type=int)
    p.set_defaults(func=cmd_task)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `hpci plan ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
