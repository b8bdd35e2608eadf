#!/usr/bin/env python
"""Write the generated ten-ability demo study (DoIT layout) to a folder.

    .venv/bin/python tools/make_demo_data.py out/demo                       # 1000 per ability, 40960 synthetic
    .venv/bin/python tools/make_demo_data.py out/demo --pool-size 400 --synthetic-size 2000 --seed 1
    .venv/bin/python tools/make_demo_data.py out/demo --pool-size default=1000 --pool-size biology=300

Re-running with the same settings is a no-op; the folder's demo.json records the settings and file hashes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpc_instruct.data.demo import write_demo_study  # noqa: E402
from hpc_instruct.data.doit_reader import read_doit  # noqa: E402
from hpc_instruct.errors import UserError  # noqa: E402


def _pool_size(values: list[str] | None) -> int | dict[str, int]:
    """`--pool-size 400` (every ability) or repeated `--pool-size ability=N` (with `default=N`)."""
    if not values:
        return 1000
    if len(values) == 1 and "=" not in values[0]:
        return int(values[0])
    sizes: dict[str, int] = {}
    for v in values:
        key, _, n = v.partition("=")
        if not n:
            raise UserError(f"--pool-size {v!r}: give N for every ability or ability=N (repeatable)")
        sizes[key] = int(n)
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool-size", action="append", metavar="N|ABILITY=N")
    parser.add_argument("--synthetic-size", type=int, default=40960)
    parser.add_argument("--eval-size", type=int, default=100, help="valid and test items per ability")
    parser.add_argument("--ceval-size", type=int, default=40, help="items per out-of-domain set")
    parser.add_argument("--no-pretrain-corpus", action="store_true", help="skip pretrain/corpus.jsonl")
    parser.add_argument("--overwrite", action="store_true", help="replace a folder that holds something else")
    args = parser.parse_args(argv)
    try:
        path = write_demo_study(args.out_dir, seed=args.seed, pool_size=_pool_size(args.pool_size),
                                synthetic_size=args.synthetic_size, eval_size=args.eval_size,
                                ceval_size=args.ceval_size, pretrain_corpus=not args.no_pretrain_corpus,
                                overwrite=args.overwrite)
        data = read_doit(path)  # prove the output reads back cleanly
    except (UserError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    pools = {a: len(data.pool(a)) for a in data.abilities("full")}
    print(f"wrote {path}: {sum(pools.values())} curated training items over {len(pools)} abilities, "
          f"{len(data.samples.get('synthetic', {}).get('synthetic', ()))} synthetic, "
          f"{len(data.files)} files (data fingerprint {data.fingerprint[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
