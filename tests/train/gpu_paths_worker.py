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


class FakeFusedAdam(torch.optim.AdamW):
    """Stands in for Transformer Engine's FusedAdam, which cannot install without CUDA: it keeps the step in its
    param groups, and its per-parameter state may hold only the Adam moments (a `step` there breaks TE)."""

    ALLOWED = {"exp_avg", "exp_avg_sq"}

    def __init__(self, params, adam_w_mode: bool = True, **kwargs) -> None:
        super().__init__(params, **kwargs)

    def __setstate__(self, state: dict) -> None:  # torch's Adam insists on a per-parameter step here
        torch.optim.Optimizer.__setstate__(self, state)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            group["step"] = group.get("step", 0) + 1
            for p in group["params"]:
                extra = set(self.state[p]) - self.ALLOWED
                if extra:
                    raise KeyError(f"FusedAdam state holds unknown keys {sorted(extra)}")
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["exp_avg"], st["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                b1, b2 = group["betas"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                st["exp_avg"].mul_(b1).add_(p.grad, alpha=1 - b1)
                st["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                t = group["step"]
                denom = (st["exp_avg_sq"] / (1 - b2**t)).sqrt_().add_(group["eps"])
                p.addcdiv_(st["exp_avg"], denom, value=-group["lr"] / (1 - b1**t))


def _use_fake_fused_adam() -> None:
    """Make megatron-core build and checkpoint its optimizer as it does where TE is installed."""
    import megatron.core.optimizer as mo
    import megatron.core.optimizer.distrib_optimizer as do

    mo.Adam, mo.USING_PYTORCH_OPTIMIZER = FakeFusedAdam, False
    do.HAVE_APEX_OR_TE, do.USING_TE_OPTIMIZER = True, True


def scenario_resume(save_layout: str, load_layouts: list[str], ckpt: Path, asynchronous: bool,
                    fused: bool) -> dict:
    """Two steps at `save_layout`, save, two more (the reference); then per load layout: load, two steps.

    Also reports what each rank wrote (bytes of its optimizer shard) and the per-parameter state keys.
    """
    from megatron.core import parallel_state

    from hpc_instruct.train.megatron import checkpoint

    if fused:
        _use_fake_fused_adam()
    trainer = _trainer(save_layout)
    batch = training_batch(LLAMA.vocab_size)
    for _ in range(2):
        trainer.train_step(_mine(batch))
    pending = checkpoint.save_training_state(trainer.chunks, trainer.optimizer, ckpt, asynchronous=asynchronous)
    reference = [trainer.train_step(_mine(batch))[0] for _ in range(2)]  # overlaps the asynchronous write
    if pending is not None:
        pending.done(blocking=True)
    parallel.teardown(keep_process_group=True)
    files = sorted((ckpt / checkpoint.OPTIMIZER_DIR).glob("rank-*.safetensors"))
    report = {"reference": reference, "shard_bytes": [f.stat().st_size for f in files], "loads": {}}
    for name in load_layouts:
        trainer = _trainer(name)
        checkpoint.load_training_state(trainer.chunks, trainer.optimizer, ckpt)
        inner = trainer.optimizer.chained_optimizers[0].optimizer
        keys = sorted({k for st in inner.state.values() for k in st})
        loss = [trainer.train_step(_mine(batch))[0] for _ in range(2)]
        report["loads"][name] = {"loss": loss, "state_keys": keys,
                                 "dp": parallel_state.get_data_parallel_world_size()}
        parallel.teardown(keep_process_group=True)
    return report


def scenario_export(layout_name: str, folder: Path) -> dict:
    """Export the converted tiny model with a 100 kB shard limit; rank 0 loads it with transformers."""
    from hpc_instruct.train.megatron import convert

    trainer = _trainer(layout_name)
    convert.save_hf_folder(trainer.chunks, LLAMA, folder, torch.float32, max_shard_bytes=100_000)
    parallel.teardown(keep_process_group=True)
    report = {}
    if torch.distributed.get_rank() == 0:
        from transformers import AutoModelForCausalLM

        index = json.loads((folder / "model.safetensors.index.json").read_text())
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        expected = reference_hf(LLAMA).state_dict()
        got = model.state_dict()
        report = {
            "files": sorted(p.name for p in folder.glob("*.safetensors")),
            "indexed_files": sorted(set(index["weight_map"].values())),
            "total_size": index["metadata"]["total_size"],
            "identical": got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got),
            "leftovers": sorted(p.name for p in folder.glob(".*")),
        }
    torch.distributed.barrier()
    return report


def main(argv: list[str]) -> None:
    from hpc_instruct.train.megatron.model import ParallelLayout

    scenario, out = argv[0], Path(argv[1])
    parallel.initialize(ParallelLayout(), seed=0)
    parallel.teardown(keep_process_group=True)
    if scenario == "fp16":
        report = scenario_fp16(argv[2])
    elif scenario == "resume":  # SAVE_LAYOUT CKPT sync|async torch|fused LOAD_LAYOUT...
        report = scenario_resume(argv[2], argv[6:], Path(argv[3]), argv[4] == "async", argv[5] == "fused")
    elif scenario == "export":
        report = scenario_export(argv[2], Path(argv[3]))
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    if torch.distributed.get_rank() == 0:
        out.write_text(json.dumps(report, indent=2))
    parallel.teardown()


if __name__ == "__main__":  # dist_checkpointing.save spawns a Manager process that re-imports this module
    main(sys.argv[1:])
