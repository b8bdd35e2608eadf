"""Model checkpoints in megatron's `dist_checkpointing` format: saved under one layout, loadable under any other.

Every rank writes only its shards (keys are global, e.g. `decoder.layers.7.mlp.linear_fc1.weight` with the
layer's global number and its TP slice), so a trial checkpointed at TP=2 can be resumed at PP=2 or exported
by a single process. Entry scripts that call `save` need an `if __name__ == "__main__":` guard: the save starts
a spawn-context multiprocessing Manager that re-imports the main module.

Only model weights are handled here; optimizer state, RNG and data position (what a resume needs) belong to
the training loop.
"""

from __future__ import annotations

from pathlib import Path

import torch
from megatron.core import dist_checkpointing
from megatron.core.models.gpt import GPTModel


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
    state = dist_checkpointing.load(_sharded(chunks), str(directory))
    if len(chunks) == 1:
        chunks[0].load_state_dict(state["model"])
    else:
        for i, chunk in enumerate(chunks):
            chunk.load_state_dict(state[f"model{i}"])
