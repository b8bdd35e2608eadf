"""The Megatron backend of the training loop (`hpc_instruct.train.backend.Backend`), on the modules beside it.

Layout: TP x PP (x virtual PP) from the recipe, the rest of the world is DP; the distributed optimizer shards
Adam state over DP; sequence parallelism shards norms/residuals over TP; `activation_checkpointing` is full
per-layer recomputation (what DoIT's gradient checkpointing does), selective (only the attention core,
whose s x s scores dominate the local spec's activations; cheap to recompute), or none. Precision: fp32; bf16
with fp32 main weights; fp16 (the DoIT paper's) with fp32 main weights and megatron-core's dynamic loss
scaling, on GPUs only (`parallel.FP16_*`: a step with inf/NaN gradients is skipped and logged).

The learning rate and weight decay are set on the optimizer's param groups before each step: megatron-core's
groups carry `wd_mult` (0 for norms and biases) but leave applying it to a scheduler, which this loop replaces.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from megatron.core import parallel_state

from hpc_instruct.train.backend import BackendSettings, StepStats
from hpc_instruct.train.megatron import checkpoint, convert, parallel
from hpc_instruct.train.megatron.model import ModelOptions, ParallelLayout, build_model
from hpc_instruct.train.presets import ModelShape


class MegatronBackend:
    name = "megatron"
    supports_async_save = True  # save_state(directory, asynchronous=True) returns a checkpoint.PendingSave

    def __init__(
        self, settings: BackendSettings, shape: ModelShape, weights: Mapping[str, torch.Tensor]
    ) -> None:
        if settings.precision == "fp16" and settings.device == "cpu":
            raise ValueError(
                "training.precision fp16 needs GPUs (model.device cuda): on CPU use fp32 (or bf16)"
            )
        if settings.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                "model.device is cuda but this node has no GPU: set device: cpu to train on CPU"
            )
        if settings.device == "cpu" and torch.cuda.is_available():
            raise RuntimeError(
                "model.device is cpu on a GPU node: the megatron backend uses the GPUs it sees; "
                "hide them (CUDA_VISIBLE_DEVICES=) or set device: cuda"
            )
        self.settings, self.shape = settings, shape
        # megatron-core lists every parameter and its config at INFO, and calls torch collectives that torch
        # 2.13 marks deprecated on every step: keep the training log readable.
        logging.getLogger("megatron.core").setLevel(logging.WARNING)
        warnings.filterwarnings(
            "ignore", message=r"`torch\.distributed\.\w+` is deprecated", category=FutureWarning
        )
        layout = ParallelLayout(
            settings.tp, settings.pp, settings.vpp if settings.vpp > 1 else None, settings.sequence_parallel
        )
        parallel.initialize(layout, settings.seed, settings.dist_timeout_minutes)
        dtype_name = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[settings.precision]
        self.dtype = getattr(torch, dtype_name)
        options = ModelOptions(
            dtype=dtype_name,
            recompute=None if settings.activation_checkpointing == "none" else settings.activation_checkpointing,
        )
        chunks = build_model(shape, layout, options)
        convert.load_hf_weights(chunks, shape, weights)  # before wrapping: DDP and the optimizer copy params
        opt = settings.optimizer
        self.trainer = parallel.Trainer(
            chunks,
            parallel.OptimizerSettings(
                lr=opt.lr,
                weight_decay=opt.weight_decay,
                adam_beta1=opt.betas[0],
                adam_beta2=opt.betas[1],
                adam_eps=opt.eps,
                clip_grad=opt.grad_clip,
                distributed_optimizer=settings.distributed_optimizer,
                tokens_per_micro_batch=settings.micro_batch * settings.max_length,
            ),
        )
        self.dp_rank = parallel_state.get_data_parallel_rank()
        self.dp_size = parallel_state.get_data_parallel_world_size()
        if self.dp_size != settings.dp:
            raise ValueError(
                f"world size {torch.distributed.get_world_size()} / (tp x pp = "
                f"{settings.tp * settings.pp}) gives dp={self.dp_size}, but the recipe says "
                f"dp={settings.dp}: start tp*pp*dp ranks"
            )
        self.pad_multiple = settings.tp if settings.sequence_parallel else 1

    def reseed(self, seed: int) -> None:
        parallel.seed_everything(seed)

    def train_step(self, micro_batches: list[dict[str, Any]], lr: float, target_tokens: int) -> StepStats:
        wd = self.settings.optimizer.weight_decay
        for group in self.trainer.optimizer.param_groups:
            group["lr"] = lr
            group["weight_decay"] = wd * group.get("wd_mult", 1.0)
        skipped = self.trainer.skipped_steps
        loss, grad_norm = self.trainer.train_step(micro_batches)
        if self.trainer.skipped_steps > skipped and torch.distributed.get_rank() == 0:
            logging.getLogger("hpc_instruct.train").warning(
                "fp16: inf/NaN gradients, step skipped; loss scale now %g (%d steps skipped so far)",
                self.trainer.loss_scale, self.trainer.skipped_steps)  # grad_norm is NaN on every rank
        # megatron computes the norm only when it clips; with grad_clip 0 there is no norm to report.
        return StepStats(loss, grad_norm if self.settings.optimizer.grad_clip > 0 else float("nan"))

    def save_state(self, directory: Path, asynchronous: bool = False) -> checkpoint.PendingSave | None:
        self.trainer.sync_params()
        return checkpoint.save_training_state(self.trainer.chunks, self.trainer.optimizer, directory, asynchronous)

    def load_state(self, directory: Path) -> None:
        checkpoint.load_training_state(self.trainer.chunks, self.trainer.optimizer, directory)

    def export_hf(self, folder: Path) -> None:
        self.trainer.sync_params()
        convert.save_hf_folder(self.trainer.chunks, self.shape, folder, self.dtype)

    def logits(self, micro_batch: dict[str, Any]) -> torch.Tensor | None:
        self.trainer.sync_params()
        out = parallel.forward_logits(self.trainer.model, [micro_batch])
        mine = None
        if (
            out is not None
            and parallel_state.get_tensor_model_parallel_rank() == 0
            and parallel_state.get_data_parallel_rank() == 0
        ):
            mine = out[0][..., : self.shape.vocab_size].float().cpu()
        gathered: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, mine)  # the last stage's logits reach rank 0
        if torch.distributed.get_rank() != 0:
            return None
        return next(t for t in gathered if t is not None)

    def close(self) -> None:
        checkpoint.release_writer()
        parallel.teardown(keep_process_group=True)
