"""Measure what a real megatron-core rank holds, to check the memory model against (`buffers`, `memory`).

Used inside training processes (tests/train/memory_worker.py under torchrun, on CPU over gloo); imports torch.

Static bytes after a step (`static_measured`): every tensor is counted by its storage, once (views of one
buffer share a storage):
- weights: the storages of the model chunks' parameters (with the distributed optimizer, DDP's parameter
  buffer, padding included);
- grads: the storages of the parameters' `main_grad` (DDP's gradient buffers) plus any stray `.grad`;
- optimizer: the storages of the torch optimizers' parameters (megatron's fp32 main parameters) and state
  tensors, less those that are the model's weights or gradients (fp32 training: the optimizer steps the
  weights themselves). torch Adam's `step` counters (0-dim, host-side, not a GPU cost) are reported apart.

Activations (`saved_activations`): the bytes autograd keeps for backward during one forward of one
micro-batch, summed by `torch.autograd.graph.saved_tensors_hooks`: the pack hook sees every tensor an op saves
(including a recompute checkpoint's saved inputs); each storage is counted once, at its first save, in the
region then running (decoder layer i from its forward pre-hook on, "head" from the final norm on: final norm,
output layer, cross entropy; "embedding" before the first layer); parameters are not activations and are
skipped. At the end of a forward all these tensors are alive at once, which is the activation peak of that
micro-batch (transient workspaces freed within an op are not kept for backward and are not counted). With full
recomputation each layer is recomputed in backward, holding one layer's no-recompute set again for a moment;
that extra is the no-recompute figure of one layer, measured separately.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def _storages(tensors: Iterable[torch.Tensor]) -> dict[int, int]:
    """data_ptr of each distinct storage -> its bytes."""
    return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}


def static_measured(chunks: list[torch.nn.Module], optimizer: Any) -> dict[str, int]:
    """Bytes of weights, gradient buffers and optimizer state one rank holds (see the module docstring)."""
    params = [p for c in chunks for p in c.parameters()]
    weights = _storages(params)
    grads = _storages([p.main_grad for p in params if getattr(p, "main_grad", None) is not None])
    stray = _storages([p.grad for p in params if p.grad is not None])
    grads.update({k: v for k, v in stray.items() if k not in weights})
    torch_optimizers = [o.optimizer for o in getattr(optimizer, "chained_optimizers", [optimizer])]
    held: list[torch.Tensor] = []
    steps = 0
    for opt in torch_optimizers:
        held += [p for group in opt.param_groups for p in group["params"]]
        for state in opt.state.values():
            for name, value in state.items():
                if not isinstance(value, torch.Tensor):
                    continue
                if name == "step":
                    steps += value.untyped_storage().nbytes()
                else:
                    held.append(value)
    own = {k: v for k, v in _storages(held).items() if k not in weights and k not in grads}
    return {"weights": sum(weights.values()), "grads": sum(grads.values()), "optimizer": sum(own.values()),
            "adam_step_counters": steps}


def saved_activations(model: torch.nn.Module, layers: list[torch.nn.Module], head: torch.nn.Module,
                      run: Any) -> dict[str, int]:
    """Bytes saved for backward by `run()` (one forward), by region; see the module docstring.

    `layers`: the decoder layers (regions "layer0", ...); `head`: the module that starts the "head" region
    (the final norm); `model`: whose parameters are skipped.
    """
    skip = set(_storages(model.parameters()))
    seen: set[int] = set()
    regions: dict[str, int] = {"embedding": 0}
    current = ["embedding"]

    def enter(name: str) -> Any:
        def hook(module: torch.nn.Module, args: Any) -> None:
            current[0] = name
            regions.setdefault(name, 0)
        return hook

    handles = [layer.register_forward_pre_hook(enter(f"layer{i}")) for i, layer in enumerate(layers)]
    handles.append(head.register_forward_pre_hook(enter("head")))

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in skip and key not in seen and storage.nbytes():
            seen.add(key)
            regions[current[0]] += storage.nbytes()
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            run()
    finally:
        for h in handles:
            h.remove()
    return regions
