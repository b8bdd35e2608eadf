"""Model checkpoints in megatron's `dist_checkpointing` format: saved under one layout, loadable under any other.

Every rank writes only its shards (keys are global, e.g. `decoder.layers.7.mlp.linear_fc1.weight` with the
layer's global number and its TP slice), so a trial checkpointed at TP=2 can be resumed at PP=2 or exported
by a single process. Entry scripts that call `save` need an `if __name__ == "__main__":` guard: the save starts
a spawn-context multiprocessing Manager that re-imports the main module.

`save_model`/`load_model` handle weights only. `save_training_state`/`load_training_state` add the optimizer:
- weights: `dist_checkpointing` with megatron's fully parallel strategy: the writes of tensors replicated over
  DP are spread across the DP ranks instead of all falling to DP rank 0;
- distributed-optimizer state (fp32 main weights, Adam moments): `optimizer_shards`, every rank writes its
  own shard keyed like the model's tensors, with no gather (host: 12 bytes/param / dp per rank), and it
  reshards across TP, PP and DP;
- without the distributed optimizer: megatron's own model-space optimizer state inside the weights folder
  (replicated over DP: the fully parallel strategy spreads its writes too).
`asynchronous=True` returns a `PendingSave`: tensors are staged to host memory at once, and files are
written by a forked writer process per rank while training goes on; `PendingSave.done(blocking)` (collective)
finishes it. RNG and data position belong to the training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from megatron.core import dist_checkpointing, parallel_state
from megatron.core.models.gpt import GPTModel

from hpc_instruct.train.checkpoint_guard import check_distributed_checkpoint
from hpc_instruct.train.megatron import optimizer_shards

WEIGHTS_DIR, OPTIMIZER_DIR, OPTIMIZER_STATE = "weights", "optimizer", "optimizer-state.pt"


def _sharded(chunks: list[GPTModel]) -> dict:
    # One entry per virtual stage, named like megatron-LM's ("model" or "model0", "model1", ...); loading
    # matches tensors by their global keys, so a different number of chunks on load is fine.
    if len(chunks) == 1:
        return {"model": chunks[0].sharded_state_dict()}
    return {f"model{i}": chunk.sharded_state_dict() for i, chunk in enumerate(chunks)}


def _apply(chunks: list[GPTModel], loaded: dict) -> None:
    if len(chunks) == 1:
        chunks[0].load_state_dict(loaded["model"])
    else:
        for i, chunk in enumerate(chunks):
            chunk.load_state_dict(loaded[f"model{i}"])


def _parallel_save_strategy():
    from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy
    from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelSaveStrategyWrapper

    group = parallel_state.get_data_parallel_group(with_context_parallel=True)
    return FullyParallelSaveStrategyWrapper(get_default_save_sharded_strategy(), group)


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
    _apply(chunks, dist_checkpointing.load(_sharded(chunks), str(directory)))


def _distributed(optimizer) -> bool:
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    return all(isinstance(o, DistributedOptimizer) for o in getattr(optimizer, "chained_optimizers", [optimizer]))


@dataclass
class PendingSave:
    """An asynchronous save in flight; `done` must be called on all ranks (it synchronises them)."""

    queue: Any
    finalize: list[Callable[[], None]] = field(default_factory=list)

    def done(self, blocking: bool = False) -> bool:
        """True once every rank's files are written and the finalizers have run (collective)."""
        self.queue.maybe_finalize_async_calls(blocking=blocking)
        if self.queue.get_num_unfinalized_calls():
            return False
        for fn in self.finalize:
            fn()
        self.finalize.clear()
        self.queue.close()
        return True


def save_training_state(chunks: list[GPTModel], optimizer, directory: str | Path,
                        asynchronous: bool = False) -> PendingSave | None:
    """Weights and optimizer state of every rank into `directory` (collective; the directory must exist).

    Synchronous by default; with `asynchronous` the files are written in the background (see `PendingSave`).
    """
    from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue, AsyncRequest

    directory = Path(directory)
    rank = torch.distributed.get_rank()
    if rank == 0:
        (directory / WEIGHTS_DIR).mkdir(parents=True, exist_ok=True)
        (directory / OPTIMIZER_DIR).mkdir(parents=True, exist_ok=True)
    torch.distributed.barrier()
    state = _sharded(chunks)
    distributed = _distributed(optimizer)
    if not distributed:
        state["optimizer"] = optimizer.sharded_state_dict(state, is_loading=False)
    request = dist_checkpointing.save(state, str(directory / WEIGHTS_DIR), _parallel_save_strategy(),
                                      async_sharded_save=asynchronous)
    requests = [request] if asynchronous else []
    if distributed:
        tensors, boxes = optimizer_shards.snapshot(optimizer, chunks)  # staged on the host now
        if rank == 0:
            torch.save(optimizer_shards.non_tensor_state(optimizer), directory / OPTIMIZER_DIR / OPTIMIZER_STATE)
        args = (directory / OPTIMIZER_DIR, rank, tensors, boxes)
        if asynchronous:
            requests.append(AsyncRequest(optimizer_shards.write, args, []))
        else:
            optimizer_shards.write(*args)
    if not asynchronous:
        torch.distributed.barrier()
        return None
    queue = AsyncCallsQueue()
    for r in requests:
        queue.schedule_async_request(r)
    return PendingSave(queue)


def load_training_state(chunks: list[GPTModel], optimizer, directory: str | Path) -> None:
    """Restore `save_training_state`'s weights and optimizer state, saved under any layout (collective)."""
    from megatron.core.dist_checkpointing.serialization import get_default_load_sharded_strategy
    from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelLoadStrategyWrapper

    directory = Path(directory)
    state = _sharded(chunks)
    distributed = _distributed(optimizer)
    if not distributed:
        for opt in getattr(optimizer, "chained_optimizers", [optimizer]):  # state tensors to load into
            if getattr(opt, "init_state_fn", None) is not None:
                opt.init_state_fn(opt.optimizer, opt.config)
        state["optimizer"] = optimizer.sharded_state_dict(state, is_loading=True)
    weights = str(directory / WEIGHTS_DIR)
    strategy = FullyParallelLoadStrategyWrapper(
        get_default_load_sharded_strategy(weights), parallel_state.get_data_parallel_group(with_context_parallel=True))
    check_distributed_checkpoint(Path(weights))  # its pickles come from a folder colleagues can write
    loaded = dist_checkpointing.load(state, weights, strategy)
    _apply(chunks, loaded)
    if distributed:
        saved = torch.load(directory / OPTIMIZER_DIR / OPTIMIZER_STATE, weights_only=True)  # plain data only: no code runs
        optimizer_shards.load(optimizer, chunks, directory / OPTIMIZER_DIR, saved)
    else:
        optimizer.load_state_dict(loaded["optimizer"])
    torch.distributed.barrier()


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
