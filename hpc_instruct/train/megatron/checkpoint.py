"""Model checkpoints in megatron's `dist_checkpointing` format: saved under one layout, loadable under any other.

Every rank writes only its shards (keys are global, e.g. `decoder.layers.7.mlp.linear_fc1.weight` with the
layer's global number and its TP slice), so a trial checkpointed at TP=2 can be resumed at PP=2 or exported
by a single process. Entry scripts that call `save` need an `if __name__ == "__main__":` guard: the save starts
a spawn-context multiprocessing Manager that re-imports the main module.

`save_model`/`load_model` handle weights only. `save_training_state`/`load_training_state` add the optimizer
(Adam moments and, with bf16, the fp32 main weights) in its sharded form: each state tensor is keyed like the
parameter it belongs to ("fully_reshardable" for the distributed optimizer), so a resume may change TP, PP
and DP. RNG and data position belong to the training loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from megatron.core import dist_checkpointing
from megatron.core.models.gpt import GPTModel

from hpc_instruct.train.checkpoint_guard import check_distributed_checkpoint

# Distributed-optimizer state in the canonical per-parameter form (gathered over DP on save, sliced on load), so
# it reshards across TP/PP/DP. megatron-core 0.16's "dp_reshardable" is faster (no gather) but reshards only
# over DP; "fully_sharded_model_space" is refused by 0.16 (ShardedTensor.flattened_range is gone).
OPTIMIZER_SHARDING = {"distrib_optim_sharding_type": "fully_reshardable"}


def _sharded(chunks: list[GPTModel]) -> dict:
    # One entry per virtual stage, named like megatron-LM's ("model" or "model0", "model1", ...); loading
    # matches tensors by their global keys, so a different number of chunks on load is fine.
    if len(chunks) == 1:
        return {"model": chunks[0].sharded_state_dict()}
    return {f"model{i}": chunk.sharded_state_dict() for i, chunk in enumerate(chunks)}


def save_model(chunks: list[GPTModel], directory: str | Path) -> None:
    """Save the weights of all ranks' chunks to `directory` (collective; the directory must be new/empty)."""
    directory = Path(directory)
    if torch.distributed.get_rank() == 0:
        directory.mkdir(parents=True, exist_ok=True)
    torch.distributed.barrier()
    dist_checkpointing.save(_sharded(chunks), str(directory))


def load_model(chunks: list[GPTModel], directory: str | Path) -> None:
    """Load weights saved by `save_model` (under any layout) into this rank's chunks (collective)."""
    check_distributed_checkpoint(directory)  # its pickles come from a folder colleagues can write
    state = dist_checkpointing.load(_sharded(chunks), str(directory))
    if len(chunks) == 1:
        chunks[0].load_state_dict(state["model"])
    else:
        for i, chunk in enumerate(chunks):
            chunk.load_state_dict(state[f"model{i}"])


def save_training_state(chunks: list[GPTModel], optimizer, directory: str | Path) -> None:
    """Weights and optimizer state of every rank into `directory` (collective; the directory must exist)."""
    state = _sharded(chunks)
    state["optimizer"] = optimizer.sharded_state_dict(state, is_loading=False, metadata=OPTIMIZER_SHARDING)
    dist_checkpointing.save(state, str(directory))


def load_training_state(chunks: list[GPTModel], optimizer, directory: str | Path) -> None:
    """Restore `save_training_state`'s weights and optimizer state, saved under any layout (collective)."""
    _allocate_optimizer_state(optimizer)
    state = _sharded(chunks)
    state["optimizer"] = optimizer.sharded_state_dict(state, is_loading=True, metadata=OPTIMIZER_SHARDING)
    check_distributed_checkpoint(directory)  # its pickles come from a folder colleagues can write
    loaded = dist_checkpointing.load(state, str(directory))
    if len(chunks) == 1:
        chunks[0].load_state_dict(loaded["model"])
    else:
        for i, chunk in enumerate(chunks):
            chunk.load_state_dict(loaded[f"model{i}"])
    with _torch_adam_step_tolerated(optimizer):
        optimizer.load_state_dict(loaded["optimizer"])
    _unshare_steps(optimizer)


def _inner_optimizers(optimizer) -> list:
    return list(getattr(optimizer, "chained_optimizers", [optimizer]))


def _allocate_optimizer_state(optimizer) -> None:
    """Give a fresh optimizer zero Adam moments and step 0, so its sharded state dict can be built for loading.

    With torch's AdamW (no apex/Transformer Engine, as on CPU) megatron-core 0.16's distributed optimizer reads
    the step from the per-parameter state, which does not exist before the first step. The loaded values
    overwrite these placeholders.
    """
    for opt in _inner_optimizers(optimizer):
        inner = getattr(opt, "optimizer", None)
        if inner is None or getattr(opt, "init_state_fn", None) is None:
            continue
        opt.init_state_fn(inner, opt.config)
        for param_state in inner.state.values():
            param_state.setdefault("step", torch.zeros((), dtype=torch.float32))


@contextlib.contextmanager
def _torch_adam_step_tolerated(optimizer) -> Iterator[None]:
    """Let megatron-core 0.16 load "fully_reshardable" distributed-optimizer state into torch's AdamW.

    Its loader skips torch Adam's per-parameter "step" in the checkpoint (the step travels in the param
    groups and is set by `load_state_dict` itself), then copies every state key of the destination, "step"
    included, and fails on the missing key. GPU runs with apex/TE FusedAdam keep no per-parameter step and
    never reach this. Here the destination's own step (just set from the param groups) is passed through.
    """
    patched = []
    for opt in _inner_optimizers(optimizer):
        original = getattr(opt, "_set_main_param_and_optimizer_states", None)
        if original is None:
            continue

        def set_states(model_param, tensors, opt=opt, original=original):
            if "step" not in tensors:
                group, order = opt.model_param_group_index_map[model_param]
                step = opt.optimizer.state[opt.optimizer.param_groups[group]["params"][order]].get("step")
                if step is not None:
                    tensors = {**tensors, "step": step}
            original(model_param, tensors)

        opt._set_main_param_and_optimizer_states = set_states
        patched.append(opt)
    try:
        yield
    finally:
        for opt in patched:
            del opt._set_main_param_and_optimizer_states  # back to the class's method


def _unshare_steps(optimizer) -> None:
    """One step tensor per parameter: megatron-core sets the same tensor on all of them, and torch's AdamW adds 1
    to each parameter's step in place, so a shared tensor would advance once per parameter per step."""
    for opt in _inner_optimizers(optimizer):
        inner = getattr(opt, "optimizer", None)
        for param_state in inner.state.values() if inner is not None else ():
            if isinstance(param_state.get("step"), torch.Tensor):
                param_state["step"] = param_state["step"].clone()


def release_writer() -> None:
    """Stop the helper process that `dist_checkpointing.save` starts (a spawn-context Manager, once per process).

    Python stops it at a normal exit; a process that ends by a re-raised preemption signal skips that, and the
    Manager would outlive the job. megatron-core 0.16 keeps it in a module global (private API, checked here).
    """
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    queue = getattr(filesystem_async, "_results_queue", None)
    manager = getattr(queue, "_manager", None)
    if manager is not None:
        manager.shutdown()
    if queue is not None:
        filesystem_async._results_queue = None
