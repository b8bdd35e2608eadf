"""Multi-process scenarios for the GPU-path fixes (fp16, resume format, HF export), run by test_gpu_paths.py.

    python -m torch.distributed.run --standalone --nproc_per_node=N tests/train/gpu_paths_worker.py \
        SCENARIO OUT.json [ARGS...]

The same megatron-core code that runs on GPUs, on CPU over gloo (`cpu_compat`); the model and batch are
`megatron_worker`'s. Rank 0 writes a JSON report.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import torch
from megatron_worker import LLAMA, SEQ, parse_layout, reference_hf, training_batch

from hpc_instruct.train.megatron import parallel
from hpc_instruct.train.megatron.model import ModelOptions, build_model


def _trainer(layout_name: str, dtype: str | None = None) -> parallel.Trainer:
    from hpc_instruct.train.megatron import convert

    layout, options, settings = parse_layout(layout_name)
    parallel.initialize(layout, seed=7)
    options = ModelOptions(dtype=dtype, recompute=options.recompute)
    chunks = build_model(LLAMA, layout, options)
    convert.load_hf_weights(chunks, LLAMA, reference_hf(LLAMA).state_dict())
    return parallel.Trainer(chunks, dataclasses.replace(settings, tokens_per_micro_batch=SEQ))


def _mine(batch: list) -> list:
    from megatron.core import parallel_state

    return batch[parallel_state.get_data_parallel_rank() :: parallel_state.get_data_parallel_world_size()]


def scenario_fp16(layout_name: str, steps: int = 4) -> dict:
    """fp16 weights, fp32 main weights, megatron's dynamic loss scaler: losses, then a forced overflow."""
    trainer = _trainer(layout_name, "float32")
    batch = _mine(training_batch(LLAMA.vocab_size))
    fp32 = [trainer.train_step(batch)[0] for _ in range(steps)]
    parallel.teardown(keep_process_group=True)
    trainer = _trainer(layout_name, "float16")
    report = {
        "fp32_losses": fp32,
        "param_dtype": str(trainer.chunks[0].embedding.word_embeddings.weight.dtype),
        "initial_scale": trainer.loss_scale,
        "losses": [trainer.train_step(batch)[0] for _ in range(steps)],
    }
    # A scale far beyond fp16's range overflows the backward: the update is skipped, the weights stay, and
    # after `hysteresis` overflows in a row the scale halves.
    before = [p.detach().clone() for p in trainer.chunks[0].parameters()]
    scaler = trainer.optimizer.grad_scaler if hasattr(trainer.optimizer, "grad_scaler") else \
        trainer.optimizer.chained_optimizers[0].grad_scaler
    scaler._scale.fill_(2.0**60)
    norms = [trainer.train_step(batch)[1] for _ in range(parallel.FP16_HYSTERESIS)]
    unchanged = all(torch.equal(a, b) for a, b in zip(before, trainer.chunks[0].parameters(), strict=True))
    report.update(
        overflow_norms=[str(n) for n in norms],
        skipped=trainer.skipped_steps,
        weights_unchanged=unchanged,
        scale_after=trainer.loss_scale,
    )
    parallel.teardown(keep_process_group=True)
    return report


def main(argv: list[str]) -> None:
    from hpc_instruct.train.megatron.model import ParallelLayout

    scenario, out = argv[0], Path(argv[1])
    parallel.initialize(ParallelLayout(), seed=0)
    parallel.teardown(keep_process_group=True)
    if scenario == "fp16":
        report = scenario_fp16(argv[2])
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    if torch.distributed.get_rank() == 0:
        out.write_text(json.dumps(report, indent=2))
    parallel.teardown()


if __name__ == "__main__":  # dist_checkpointing.save spawns a Manager process that re-imports this module
    main(sys.argv[1:])
