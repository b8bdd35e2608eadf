"""Run megatron-core's tensor/pipeline-parallel code on a CPU-only torch (gloo), for tests and laptops.

megatron-core has no CPU branch in a few places: it calls `torch.cuda.*` unconditionally and creates tensors
with `device="cuda"`. `install()` patches exactly those places, once per process, and only when CUDA is absent;
with CUDA it does nothing, so the same training code runs unchanged on GPUs. Each patch below says which
megatron-core code path needs it (measured with megatron-core 0.16.1, torch 2.13.0+cpu; see
shared/notes/megatron-cpu.md). The layer costs ~8% throughput on CPU (every torch call passes through the
device-rewriting mode).

The fiction is "the CPU is the CUDA device": tensors asked for on "cuda" land on the CPU, the "CUDA" RNG is
the CPU generator, and CPU tensors report CUDA type names to the few checks that ask.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_installed = False


def install() -> bool:
    """Activate the compatibility layer if CUDA is absent (idempotent). Returns whether it is active."""
    global _installed
    if torch.cuda.is_available():
        return False
    if not _installed:
        _patch_cuda_module()
        _patch_rng_tracker()
        # Entered and never exited: the mode stays on this thread's mode stack for the process's lifetime
        # (autograd's worker threads inherit it), which is what "process-wide" means for torch modes.
        _CudaToCpuMode().__enter__()
        _installed = True
    return True


def is_active() -> bool:
    """Whether `install()` has patched this process."""
    return _installed


class _NullStream:
    """Stands in for `torch.cuda.Stream`: CPU ops run in program order, so waiting/recording is a no-op.

    Needed by DDP grad sync with several distributed-optimizer instances (0.16) and unconditionally
    from megatron-core 0.17 on (`current_stream().wait_stream(...)`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def wait_stream(self, stream: Any) -> None:
        pass

    def wait_event(self, event: Any) -> None:
        pass

    def record_event(self, event: Any = None) -> None:
        return None

    def synchronize(self) -> None:
        pass


def _cpu_device(device: Any = None) -> torch.device:
    return torch.device("cpu")


def _patch_cuda_module() -> None:
    """Replace the `torch.cuda` calls megatron-core makes outside any CUDA check."""
    cuda = torch.cuda
    # Placement: layers, p2p communication, DDP buffers and the optimizer allocate on
    # `device=torch.cuda.current_device()`; returning the CPU device makes those allocations land on CPU.
    cuda.current_device = _cpu_device  # type: ignore[assignment]
    # p2p_communication (after batch_isend_irecv), DDP buffer freeing, parallel_state timeouts.
    cuda.synchronize = lambda device=None: None  # type: ignore[assignment]
    # optimizer offload/reload and DDP buffer freeing.
    cuda.empty_cache = lambda: None  # type: ignore[assignment]
    # DDP grad-sync streams (see _NullStream).
    cuda.Stream = _NullStream  # type: ignore[assignment,misc]
    cuda.current_stream = lambda device=None: _NullStream()  # type: ignore[assignment]
    cuda.default_stream = lambda device=None: _NullStream()  # type: ignore[assignment]
    cuda.stream = lambda stream=None: contextlib.nullcontext()  # type: ignore[assignment]


def _patch_rng_tracker() -> None:
    """Make megatron's model-parallel RNG tracker keep CPU generator states.

    `tensor_parallel.random` saves/restores "the CUDA RNG state" around dropout in TP regions and in
    activation recomputation (`CheckpointFunction`), and `CudaRNGStatesTracker.add` seeds named states with
    `torch.cuda.manual_seed`/`get_rng_state`. On CPU the generator that dropout uses is the CPU default
    generator, so that is the state to save and restore.
    """
    from megatron.core.tensor_parallel import random as mp_random

    def get_state(device: Any = "cuda", clone: bool = False, graph_safe: bool = False) -> torch.Tensor:
        return torch.get_rng_state()

    def set_state(new_state: torch.Tensor, device: Any = -1, graph_safe: bool = False) -> None:
        torch.set_rng_state(new_state)

    def add(self: Any, name: str, seed: int) -> None:
        # Same checks as the original; the new state is a CPU generator seeded with `seed`, built without
        # touching the process's default generator.
        self._is_initialized = True
        if seed in self.seeds_:
            raise Exception(f"seed {seed} already exists")
        self.seeds_.add(seed)
        if name in self.states_:
            raise Exception(f"cuda rng state {name} already exists")
        self.states_[name] = torch.Generator().manual_seed(seed).get_state()

    mp_random._get_cuda_rng_state = get_state
    mp_random._set_cuda_rng_state = set_state
    mp_random.CudaRNGStatesTracker.add = add
    # `fork()` warns when the CPU RNG changed inside a "GPU RNG" context; here the two are the same
    # generator, so the warning would fire on every dropout and means nothing.
    logging.getLogger(mp_random.__name__).addFilter(
        lambda record: "CPU RNG state changed within GPU RNG context" not in record.getMessage()
    )


_CUDA_TYPE_NAMES = {
    "torch.FloatTensor": "torch.cuda.FloatTensor",
    "torch.HalfTensor": "torch.cuda.HalfTensor",
    "torch.BFloat16Tensor": "torch.cuda.BFloat16Tensor",
}


def _is_cuda_device(device: Any) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda")
    return False


class _CudaToCpuMode(TorchFunctionMode):
    """Rewrites CUDA placement to CPU on every torch call.

    - `device="cuda"` in factories (`torch.zeros(..., device="cuda")` in schedules, grad clipping, the
      grad scaler, the default causal mask) and in `Tensor.to("cuda")`;
    - `Tensor.cuda()` (optimizer state reload, language-module weight setup, grad scaler load): the tensor
      is already where "cuda" is, so it is returned as is;
    - `Tensor.type()` with no argument: the Megatron optimizer (float16 and distributed) classifies params by
      `param.type() == "torch.cuda.FloatTensor"`-style names, so CPU float types report their CUDA names.

    Limitation: torch pops a mode while its handler runs, so code executed *inside* a `torch.autograd.backward`
    call (activation recomputation) would not see it. megatron's schedules with
    `deallocate_pipeline_outputs=True` (set in model.py) start backward through the autograd engine directly,
    which is not a torch function, so the mode stays active there.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            return _CUDA_TYPE_NAMES.get(name, name)
        if _is_cuda_device(kwargs.get("device")):
            kwargs = {**kwargs, "device": "cpu"}
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda_device(args[1]):
            args = (args[0], "cpu", *args[2:])
        return func(*args, **kwargs)
