"""Memory measurements of the real megatron backend, launched under torchrun by test_scale_measure.py and
benchmarks/bench_scale.py (method: `hpc_instruct.train.scale.measure`).

    python -m torch.distributed.run --standalone --nproc_per_node=N tests/train/memory_worker.py \
        static OUT.json LAYOUT...        # bytes of weights/grads/optimizer on every rank after one step
    python -m torch.distributed.run --standalone --nproc_per_node=1 tests/train/memory_worker.py \
        activations OUT.json SPEC...     # bytes saved for backward in one forward of one micro-batch

Layout names are megatron_worker's (`tp2-pp2-dist`, ...) plus `bf16` (bf16 weights, fp32 grads/main
parameters; default fp32). A SPEC is `<shape>:<seq>:<micro>:<recompute>` with a shape of `SHAPES`.
Rank 0 writes a JSON list with one entry per (rank, layout, shape) / per spec.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from functools import partial
from pathlib import Path

import torch
from megatron.core import parallel_state
from megatron.core.transformer.module import Float16Module
from megatron_worker import LLAMA, QWEN2, parse_layout, training_batch

from hpc_instruct.train.megatron import parallel
from hpc_instruct.train.megatron.model import ModelOptions, ParallelLayout, build_model
from hpc_instruct.train.presets import ModelShape
from hpc_instruct.train.scale.measure import saved_activations, static_measured

# Activation shapes: GQA llama, multi-head llama with a wide FFN, qwen2 (qkv bias, tied) with GQA 3:1.
SHAPES = {
    "llama-gqa": ModelShape("llama", 3, 128, 4, 2, 344, 1000, 512),
    "llama-mha": ModelShape("llama", 2, 192, 6, 6, 512, 500, 512),
    "qwen2": ModelShape("qwen2", 2, 96, 6, 2, 256, 384, 512, 1e6, 1e-6, True),
}
STATIC_SHAPES = {"llama": LLAMA, "qwen2-tied": QWEN2}


def _layout(name: str) -> tuple[ParallelLayout, ModelOptions, parallel.OptimizerSettings]:
    layout, options, settings = parse_layout(name)
    dtype = "bfloat16" if "bf16" in name.split("-") else "float32"
    return layout, dataclasses.replace(options, dtype=dtype), settings


def scenario_static(layouts: list[str]) -> list[dict]:
    """One training step per layout and shape; every rank's weights, grads and optimizer bytes."""
    mine = []
    for name in layouts:
        for shape_name, shape in STATIC_SHAPES.items():
            layout, options, settings = _layout(name)
            parallel.initialize(layout, seed=7)
            trainer = parallel.Trainer(build_model(shape, layout, options), settings)
            dp_rank = parallel_state.get_data_parallel_rank()
            dp = parallel_state.get_data_parallel_world_size()
            trainer.train_step(training_batch(shape.vocab_size)[dp_rank::dp])
            mine.append({"layout": name, "shape": shape_name, "shape_def": dataclasses.asdict(shape), "pp_rank": parallel_state.get_pipeline_model_parallel_rank(),
                         "tp_rank": parallel_state.get_tensor_model_parallel_rank(), "dp_rank": dp_rank, "dp": dp,
                         **static_measured(trainer.chunks, trainer.optimizer)})
            parallel.teardown(keep_process_group=True)
    every: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(every, mine)
    return [entry for part in every for entry in part]


def scenario_activations(specs: list[str]) -> list[dict]:
    """Saved-for-backward bytes of one micro-batch forward, by region, for each spec (bf16, TP1)."""
    out = []
    for spec in specs:
        shape_name, seq, micro, recompute = spec.split(":")
        shape = SHAPES[shape_name]
        options = ModelOptions(dtype="bfloat16", recompute=None if recompute == "none" else recompute)  # type: ignore[arg-type]
        parallel.initialize(ParallelLayout(), seed=7)
        (chunk,) = build_model(shape, ParallelLayout(), options)
        model = Float16Module(chunk.config, chunk)  # what Trainer wraps it in
        model.train()
        g = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, shape.vocab_size, (int(micro), int(seq)), generator=g)
        labels = torch.randint(0, shape.vocab_size, (int(micro), int(seq)), generator=g)
        kept: list[torch.Tensor] = []  # the loss keeps the graph (and its saved tensors) alive until counted
        run = partial(_forward, model, tokens, labels, kept)
        regions = saved_activations(model, list(chunk.decoder.layers), chunk.decoder.final_layernorm, run)
        out.append({"spec": spec, "shape": shape_name, "shape_def": dataclasses.asdict(shape), "seq": int(seq), "micro": int(micro),
                    "recompute": recompute, "regions": regions})
        parallel.teardown(keep_process_group=True)
    return out


def _forward(model: torch.nn.Module, tokens: torch.Tensor, labels: torch.Tensor, kept: list) -> None:
    kept.append(model(input_ids=tokens, position_ids=None, attention_mask=None, labels=labels))


def main(argv: list[str]) -> None:
    scenario, out = argv[0], Path(argv[1])
    parallel.initialize(ParallelLayout(), seed=0)  # starts the process group; each scenario re-lays out
    parallel.teardown(keep_process_group=True)
    if scenario == "static":
        report = scenario_static(argv[2:])
    elif scenario == "activations":
        report = scenario_activations(argv[2:])
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    if torch.distributed.get_rank() == 0:
        out.write_text(json.dumps(report, indent=1))
    parallel.teardown()


if __name__ == "__main__":
    main(sys.argv[1:])
