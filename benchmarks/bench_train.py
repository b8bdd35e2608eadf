"""Benchmark: training throughput of each backend, and what packing gains over padded batches.

    .venv/bin/python benchmarks/bench_train.py                      # small preset, rows of 256, 1 thread
    .venv/bin/python benchmarks/bench_train.py --size mini --max-length 512 --rounds 7 --threads 2

One process, one prepared mixture (the generated demo data, 32 samples per ability, packed to --max-length),
one model shape and seed. Built once each: megatron (TP=1, distributed optimizer), hf (transformers model),
and deepspeed (ZeRO-2) when it is installed. Then --rounds rounds, each running --steps optimizer steps per
contender in turn, so load from other processes hits every contender alike; the median round is reported.
Contenders: each backend on packed rows, plus megatron on padded batches (one sample per row, padded to the
longest in the step, DoIT's batching) with the same global batch in sequences. Throughput counts real
(non-pad) tokens only, so packed vs padded is real tokens per second. On a GPU it also prints MFU.

Reading the numbers: the generated samples are short (~40 tokens), so a padded step of 8 sequences holds
~300 real tokens and a packed one ~2,000; packing wins as long as the model's matmuls dominate. With very
small hidden sizes and long rows the quadratic attention over a whole packed row (a block-diagonal mask, no
variable-length kernel on CPU) can cost more than the padding saves: try --size tiny --max-length 512.

Fairness: megatron's CPU compatibility layer (a process-wide torch function mode, ~8% overhead, needed only
by megatron-core) stays installed once megatron is built; hf and deepspeed steps run with torch-function
dispatch disabled, so they do not pay for it.

The last line is machine-readable:
    RESULT bench_train megatron_tok_s=<x> hf_tok_s=<y> megatron_vs_hf=<x/y> packing_gain=<packed/padded>
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RECIPE = """\
study: {{name: bench-train, output_root: {root}}}
models: [{{name: m, size: {size}, device: cpu, micro_batch: {micro}, global_batch: {batch}}}]
data: {{generate: {{seed: 0, pool_size: 40, synthetic_size: 8}}}}
sweep: {{seeds: [0], curated: {{samples_per_ability: [32]}}}}
training: {{epochs: 1, lr: 1.0e-3, max_length: {max_length}, precision: fp32, activation_checkpointing: false}}
evaluation: {{include_base: false, checkpoints: last}}
"""


def prepare(root: Path, args) -> tuple[Path, str]:
    """A prepared demo mixture; returns (packed folder, tokenizer folder)."""
    from hpc_instruct.launch.local import run_local
    from hpc_instruct.launch.study_files import write_study
    from hpc_instruct.recipe.study import load_study
    from hpc_instruct.stages.prepare import mixture_id, read_prepared
    from hpc_instruct.study_dir import StudyDir

    recipe = root / "recipe.yaml"
    recipe.write_text(
        RECIPE.format(
            root=root / "studies",
            size=args.size,
            micro=args.micro_batch,
            batch=args.global_batch,
            max_length=args.max_length,
        )
    )
    study = load_study(recipe)
    ex = study.expand()
    write_study(study, ex)
    report = run_local(study, ex, progress=False, stages=("prepare",))
    if report.failed:
        raise SystemExit(f"prepare failed: {report.failed}")
    sdir = StudyDir(study.directory.resolve())
    info = read_prepared(sdir, mixture_id(study, ex.trials[0]))
    return sdir.root / info["packed"], info["tokenizer"]


def start_process_group() -> None:
    """A one-rank gloo/NCCL group on a free port (other jobs on this machine may hold torchrun's 29500)."""
    from hpc_instruct.train import distributed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    distributed.init()


class Contender:
    """One backend on one kind of rows: steps it and keeps (real tokens, seconds) per round."""

    def __init__(self, name: str, backend, data, schedule, plain_dispatch: bool) -> None:
        self.name, self.backend, self.data, self.schedule = name, backend, data, schedule
        self.plain_dispatch = plain_dispatch
        self.step, self.rounds = 0, []

    def run(self, steps: int) -> None:
        import torch

        tokens, seconds, rows = 0, 0.0, 0
        guard = torch._C.DisableTorchFunction() if self.plain_dispatch else contextlib.nullcontext()
        with guard:
            for _ in range(steps):
                batch = self.data.step(self.step, 0)
                start = time.perf_counter()
                self.backend.train_step(batch.micro_batches, self.schedule.lr, batch.target_tokens)
                seconds += time.perf_counter() - start
                tokens, rows, self.step = tokens + batch.tokens, rows + batch.rows, self.step + 1
        self.rounds.append((tokens, seconds, rows))

    @property
    def tok_s(self) -> float:
        return statistics.median(t / s for t, s, _ in self.rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--size", default="small", help="model size preset (tiny, mini, small; default small)"
    )
    parser.add_argument("--max-length", type=int, default=256, help="row length (the demo recipe's)")
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per contender per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per contender first")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from hpc_instruct.data.template import add_doit_tokens
    from hpc_instruct.data.tokenizer import load_tokenizer
    from hpc_instruct.train.backend import AdamWSettings, BackendSettings, build_backend
    from hpc_instruct.train.batching import StepData, load_rows
    from hpc_instruct.train.presets import preset
    from hpc_instruct.train.schedule import BatchPlan, LRSchedule
    from hpc_instruct.train.step_log import Throughput, gpu_peak_tflops
    from hpc_instruct.train.weights import SeededInit

    torch.set_num_threads(args.threads)
    gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        packed_dir, tokenizer_dir = prepare(Path(tmp), args)
        tokenizer = load_tokenizer(tokenizer_dir)
        add_doit_tokens(tokenizer)
        shape = preset(args.size, vocab_size=len(tokenizer))
        packed, padded = load_rows(packed_dir, packing=True), load_rows(packed_dir, packing=False)
        plan = BatchPlan(args.global_batch, args.micro_batch, 1)
        settings = BackendSettings(
            "megatron",
            "cuda" if gpu else "cpu",
            "bf16" if gpu else "fp32",
            1,
            1,
            1,
            1,
            False,
            True,
            False,
            args.micro_batch,
            plan.accumulation,
            AdamWSettings(1e-3, 0.1, (0.9, 0.95), 1e-8, 1.0),
            seed=0,
        )
        schedule = LRSchedule(1e-3, 10**6, "constant")
        start_process_group()
        print(
            f"model {args.size}: {shape.num_parameters:,} parameters (vocab {shape.vocab_size}); "
            f"{len(packed)} packed rows / {len(padded)} samples of <= {args.max_length} tokens; "
            f"{plan.describe()}; {args.threads} thread(s); {'GPU ' + torch.cuda.get_device_name() if gpu else 'CPU'}"
        )

        contenders: list[Contender] = []
        names = ["hf"] + (["deepspeed"] if _installed("deepspeed") else [])
        for name in names:  # before megatron: its CPU layer, once installed, stays for the process
            backend = build_backend(replace(settings, name=name), shape, SeededInit(shape, 0))
            contenders.append(
                Contender(
                    name,
                    backend,
                    StepData(packed, plan, 0, tokenizer.pad_token_id),
                    schedule,
                    plain_dispatch=not gpu,
                )
            )
        megatron = build_backend(settings, shape, SeededInit(shape, 0))
        contenders.insert(
            0,
            Contender(
                "megatron",
                megatron,
                StepData(packed, plan, 0, tokenizer.pad_token_id),
                schedule,
                plain_dispatch=False,
            ),
        )
        contenders.append(
            Contender(
                "megatron padded",
                megatron,
                StepData(padded, plan, 0, tokenizer.pad_token_id),
                schedule,
                plain_dispatch=False,
            )
        )
        for c in contenders:
            c.run(args.warmup)
            c.rounds.clear()
        for _ in range(args.rounds):
            for c in contenders:
                c.run(args.steps)

        peak = gpu_peak_tflops(None)
        throughput = Throughput(shape, peak, 1)
        base = next(c for c in contenders if c.name == "hf").tok_s
        print(
            f"{'contender':<18}{'real tok/s':>12}{'vs hf':>8}{'tokens/step':>13}  per round (tok/s)"
            + ("   MFU" if peak else "")
        )
        for c in contenders:
            per_round = ", ".join(f"{t / s:,.0f}" for t, s, _ in c.rounds)
            tokens, seconds, rows = map(sum, zip(*c.rounds, strict=True))
            mfu = f"   {throughput.mfu(tokens, rows, seconds):.1%}" if peak else ""
            print(
                f"{c.name:<18}{c.tok_s:>12,.0f}{c.tok_s / base:>8.2f}{tokens / (args.steps * args.rounds):>13,.0f}"
                f"  {per_round}{mfu}"
            )
        if not peak:
            print("MFU: n/a on CPU (no peak FLOP/s to compare with)")
        for backend in {id(c.backend): c.backend for c in contenders}.values():
            backend.close()
        torch.distributed.destroy_process_group()
        by = {c.name: c.tok_s for c in contenders}
        print(  # the machine-readable line: keep it last
            f"RESULT bench_train megatron_tok_s={by['megatron']:.0f} hf_tok_s={by['hf']:.0f} "
            f"megatron_vs_hf={by['megatron'] / by['hf']:.3f} packing_gain={by['megatron'] / by['megatron padded']:.3f}",
            flush=True,
        )


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":  # dist_checkpointing (megatron) spawns helpers that re-import this module
    main()
