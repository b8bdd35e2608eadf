"""`hpci`: the command line. Thin: parse, call the library, print. User mistakes end in clear lines and exit 2.

Imports are deferred into each command so `hpci plan` starts fast on a login node (no torch).
"""

from __future__ import annotations

import argparse
import json
import sys

from hpc_instruct import __version__
from hpc_instruct.errors import UserError

EPILOG = """examples:
  hpci validate recipes/doit.yaml
  hpci plan recipes/doit.yaml training.lr=2e-5          # key.path=value overrides
  hpci plan recipes/demo.yaml --format json | jq '.trials[0]'
"""


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("overrides", nargs="*", metavar="key.path=value",
                   help="override recipe values, e.g. training.lr=2e-5 models.llama-7b.tp=2 sweep.seeds=[0,1]")


def cmd_validate(args: argparse.Namespace) -> int:
    from hpc_instruct.recipe.study import load_study

    study = load_study(args.recipe, tuple(args.overrides))
    ex = study.expand(with_eval=True)
    for w in study.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"ok: {args.recipe}: study {study.recipe.study.name!r}, {len(ex.trials)} trials, "
          f"{len(ex.eval_tasks)} eval tasks")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from hpc_instruct.launch.plan import plan_dict, plan_table
    from hpc_instruct.recipe.study import load_study

    study = load_study(args.recipe, tuple(args.overrides))
    ex = study.expand(with_eval=True)
    if args.format == "json":
        json.dump(plan_dict(study, ex), sys.stdout, indent=1 if args.pretty else None, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(plan_table(study, ex, every_eval_task=args.eval_tasks))
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
                       "and consistency rule, and report all problems at once. Writes nothing.")
    _recipe_args(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="dry run: every job of every stage, resources, outputs, GPU-hours",
                       description="Expand the study into trials and eval tasks and show what would be submitted: "
                       "one array job per stage and resource shape, each trial's layout, steps, tokens and "
                       "estimated GPU-hours (assumptions printed). Writes nothing; does not import torch.")
    _recipe_args(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--pretty", action="store_true", help="indent JSON")
    p.add_argument("--eval-tasks", action="store_true", help="list every eval task in the table (long)")
    p.set_defaults(func=cmd_plan)
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
