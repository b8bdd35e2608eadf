"""The deepspeed backend: the HF model under DeepSpeed ZeRO stage 2, the DoIT paper's training stack.

ZeRO-2 partitions the optimizer state and gradients over data-parallel ranks; every rank keeps the full
model, so an export is rank 0's `save_pretrained`. The optimizer is torch's AdamW with the same groups as
the hf backend (DeepSpeed's fused CPU/GPU Adam would need a JIT-compiled op and differs numerically), so
`zero_allow_untested_optimizer` is set. DeepSpeed manages gradient accumulation (`gradient_accumulation_steps`
= the plan's accumulation) and clipping (`gradient_clipping`); the loss is passed unscaled by accumulation
(`scale_wrt_gas=False`) because it is already divided by the global batch's target tokens.

Precision: fp32, bf16 (DeepSpeed keeps fp32 master weights in the optimizer partitions) or fp16 with dynamic
loss scaling (what DoIT used). Resume checkpoints are DeepSpeed's own (`save_checkpoint`): they hold each
rank's optimizer partition, so a resume needs the same number of data-parallel ranks.

DeepSpeed reads them with `torch.load(weights_only=False)`, and they live in the study folder, which colleagues
can write: `load_state` first vets every `.pt` file of the checkpoint with `weights_only=True` (allowing only the
few plain data classes DeepSpeed pickles into them, `deepspeed_data_classes()`), so a crafted file is refused,
naming it, before any of its code could run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from hpc_instruct.train.backend import BackendSettings, StepStats
from hpc_instruct.train.checkpoint_guard import check_torch_files
from hpc_instruct.train.hf_backend import (
    adamw,
    build_hf_model,
    compute_device,
    config_dtype,
    forward,
    reduced,
    save_hf,
    summed_loss,
)
from hpc_instruct.train.presets import ModelShape

TAG = "zero"  # DeepSpeed's checkpoint sub-folder name


def deepspeed_data_classes() -> tuple[type, ...]:
    """The classes besides tensors and plain values that DeepSpeed's ZeRO checkpoints pickle: the loss scaler (its
    scale and counters as attributes), the ZeRO stage enum and a fragment's (numel, start) dataclass."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address


def check_deepspeed_checkpoint(folder: Path) -> None:
    """Refuse (CheckpointRefused, naming the file) a DeepSpeed checkpoint folder any of whose `.pt` files holds
    more than tensors, plain values and `deepspeed_data_classes()`: DeepSpeed would unpickle it unchecked."""
    files = sorted(p for p in folder.rglob("*.pt") if p.is_file())
    check_torch_files(files, deepspeed_data_classes())


class DeepSpeedBackend:
    name = "deepspeed"

    def __init__(
        self, settings: BackendSettings, shape: ModelShape, weights: Mapping[str, torch.Tensor]
    ) -> None:
        import deepspeed

        # DeepSpeed logs every step and its config at INFO on every rank; keep warnings only.
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        self.settings, self.shape = settings, shape
        self.device = compute_device(settings)
        if self.device.type == "cpu":
            # DeepSpeed's CPU accelerator JIT-compiles a shared-memory all-reduce (g++ + ninja, ~70 s on first
            # use) that only `inference_all_reduce` uses; training collectives go through torch.distributed.
            import importlib

            # (imported by name: the attribute `deepspeed.comm.torch` is torch itself)
            importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
        if not dist.is_initialized():
            deepspeed.init_distributed(dist_backend="nccl" if self.device.type == "cuda" else "gloo")
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        if self.world != settings.dp:
            raise ValueError(
                f"backend deepspeed is data parallel: the world has {self.world} ranks but dp={settings.dp}"
            )
        self.dp_rank, self.dp_size, self.pad_multiple = self.rank, self.world, 1
        torch.manual_seed(settings.seed)
        model = build_hf_model(shape, weights, settings.activation_checkpointing == "full").to(self.device).train()
        config = {
            "train_micro_batch_size_per_gpu": settings.micro_batch,
            "gradient_accumulation_steps": settings.accumulation,
            "train_batch_size": settings.micro_batch * settings.accumulation * self.world,
            "gradient_clipping": settings.optimizer.grad_clip,
            "zero_optimization": {"stage": 2, "contiguous_gradients": True, "overlap_comm": False},
            "bf16": {"enabled": settings.precision == "bf16"},
            "fp16": {"enabled": settings.precision == "fp16", "loss_scale": 0},
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 2**31 - 1,
            "wall_clock_breakdown": False,
        }
        self.engine, *_ = deepspeed.initialize(model=model, optimizer=adamw(model, settings), config=config)

    def reseed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def train_step(self, micro_batches: list[dict[str, Any]], lr: float, target_tokens: int) -> StepStats:
        if len(micro_batches) != self.settings.accumulation:
            raise ValueError(
                f"{len(micro_batches)} micro-batches for accumulation {self.settings.accumulation}"
            )
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr
        scale = self.world / max(1, target_tokens)  # ZeRO averages gradients over the world, as DDP does
        local = torch.zeros((), dtype=torch.float64, device=self.device)
        for batch in micro_batches:
            loss = summed_loss(self.engine, batch, self.device)  # bf16/fp16: DeepSpeed cast the module itself
            local += loss.detach().double()
            self.engine.backward(loss * scale, scale_wrt_gas=False)
            self.engine.step()  # applies the update on the accumulation boundary (the last micro-batch)
        norm = self.engine.get_global_grad_norm()
        return StepStats(
            reduced(local) / max(1, target_tokens), float(norm) if norm is not None else float("nan")
        )

    def save_state(self, directory: Path) -> None:
        self.engine.save_checkpoint(str(directory), tag=TAG, save_latest=False)

    def load_state(self, directory: Path) -> None:
        check_deepspeed_checkpoint(Path(directory) / TAG)  # before DeepSpeed unpickles them with weights_only=False
        path, _ = self.engine.load_checkpoint(
            str(directory), tag=TAG, load_optimizer_states=True, load_lr_scheduler_states=False
        )
        if path is None:
            raise FileNotFoundError(f"DeepSpeed found no checkpoint under {directory}/{TAG}")

    def export_hf(self, folder: Path) -> None:
        if self.rank == 0:
            save_hf(self.engine.module, folder, config_dtype(self.settings))
        dist.barrier()

    @torch.no_grad()
    def logits(self, micro_batch: dict[str, Any]) -> torch.Tensor | None:
        if self.rank != 0:
            return None
        module = self.engine.module
        module.eval()
        try:
            return forward(module, micro_batch, self.device).float().cpu()
        finally:
            module.train()

    def close(self) -> None:
        self.engine.destroy()
