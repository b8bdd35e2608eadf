"""The one interface the training loop talks to, and the choice of implementation by `model.backend`.

    megatron   megatron-core GPTModel: TP x PP (x virtual) x DP, distributed optimizer, sequence parallelism,
               activation recomputation, dist_checkpointing (resumable under another layout)
    hf         transformers LlamaForCausalLM / Qwen2ForCausalLM with torch DDP (data parallel only)
    deepspeed  the same HF model under DeepSpeed ZeRO-2 (the DoIT paper's stack; data parallel only)

Every backend: starts from the same initial weights (`hpc_instruct.train.weights`), runs AdamW with the same
settings and per-parameter weight decay (none on norms and biases), clips the global gradient norm, and takes
the loss as the sum of next-token cross entropies over the global batch divided by its number of target
tokens. So the same trial gives the same loss curve on each (within floating-point summation order).
Implementations are imported only when chosen: an hf run needs no megatron-core, and no backend needs
DeepSpeed unless it is the DeepSpeed one.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from hpc_instruct.train.config import ModelConfig, TrainingConfig
from hpc_instruct.train.presets import ModelShape

IMPLEMENTATIONS = {
    "megatron": "hpc_instruct.train.megatron.backend:MegatronBackend",
    "hf": "hpc_instruct.train.hf_backend:HFBackend",
    "deepspeed": "hpc_instruct.train.deepspeed_backend:DeepSpeedBackend",
}


@dataclass(frozen=True)
class AdamWSettings:
    """AdamW as in the recipe (DoIT: lr 1e-5, weight decay 0.1, betas 0.9/0.95, eps 1e-8, clip 1.0)."""

    lr: float
    weight_decay: float
    betas: tuple[float, float]
    eps: float
    grad_clip: float  # 0 = no clipping (the norm is still reported)


@dataclass(frozen=True)
class BackendSettings:
    """What a backend builds itself from: the model's layout and precision, and the optimizer."""

    name: Literal["megatron", "hf", "deepspeed"]
    device: Literal["cuda", "cpu"]
    precision: Literal["fp32", "bf16", "fp16"]
    tp: int
    pp: int
    vpp: int
    dp: int
    sequence_parallel: bool
    distributed_optimizer: bool
    activation_checkpointing: Literal["selective", "full", "none"]
    micro_batch: int
    accumulation: int
    optimizer: AdamWSettings
    seed: int
    max_length: int = 2048  # tokens per row (sizes fp16's first loss scale)
    dist_timeout_minutes: int = 30

    @classmethod
    def from_recipe(
        cls, model: ModelConfig, training: TrainingConfig, accumulation: int, seed: int
    ) -> BackendSettings:
        adamw = AdamWSettings(
            training.lr, training.weight_decay, tuple(training.betas), training.eps, training.grad_clip
        )
        return cls(
            model.backend,
            model.device,
            training.precision,
            model.tp,
            model.pp,
            model.vpp,
            model.dp,
            model.sequence_parallel,
            model.distributed_optimizer,
            training.activation_checkpointing,
            model.micro_batch,
            accumulation,
            adamw,
            seed,
            training.max_length,
            training.dist_timeout_minutes,
        )

    def layout(self) -> dict[str, Any]:
        """The parallel layout as recorded in checkpoints and trial.json."""
        return {
            "tp": self.tp,
            "pp": self.pp,
            "vpp": self.vpp,
            "dp": self.dp,
            "sequence_parallel": self.sequence_parallel,
            "distributed_optimizer": self.distributed_optimizer,
            "micro_batch": self.micro_batch,
            "accumulation": self.accumulation,
        }


@dataclass(frozen=True)
class StepStats:
    """One optimizer step, identical on every rank."""

    loss: float  # mean cross entropy per target token over the global batch
    grad_norm: float  # global gradient norm before clipping


class Backend(Protocol):
    """A model + optimizer on this rank, driven step by step by `hpc_instruct.train.loop`.

    Every method is collective (all ranks call it, in the same order) unless it says otherwise.
    """

    name: str
    dp_rank: int  # which slice of the global batch this rank trains on
    dp_size: int
    pad_multiple: int  # micro-batch widths must be a multiple of this (sequence parallelism: TP)

    def reseed(self, seed: int) -> None:
        """Seed every RNG this rank uses (dropout streams included); called before each step."""

    def train_step(self, micro_batches: list[dict[str, Any]], lr: float, target_tokens: int) -> StepStats:
        """Forward/backward over this rank's micro-batches, then one AdamW step at `lr`.

        `target_tokens` is the global batch's number of tokens with a loss (the loss normaliser).
        """

    def save_state(self, directory: Path) -> None:
        """Write model + optimizer state for a resume into `directory` (created by rank 0 beforehand)."""

    def load_state(self, directory: Path) -> None:
        """Restore what `save_state` wrote (the megatron backend also under another TP/PP/DP layout)."""

    def export_hf(self, folder: Path) -> None:
        """Write the weights and config.json of an HF model folder into `folder` (tokenizer: the caller)."""

    def logits(self, micro_batch: dict[str, Any]) -> Any:
        """Full-vocabulary logits [rows, width, vocab] (fp32, CPU) on global rank 0; None on other ranks."""

    def close(self) -> None:
        """Release what the backend started (process groups stay: the caller owns them)."""


def build_backend(settings: BackendSettings, shape: ModelShape, weights: Mapping[str, Any]) -> Backend:
    """The backend named in `settings`, built on this rank (collective), starting from `weights`."""
    if settings.name not in IMPLEMENTATIONS:
        raise ValueError(f"unknown backend {settings.name!r}; choose one of: {', '.join(IMPLEMENTATIONS)}")
    if settings.name != "megatron" and (settings.tp > 1 or settings.pp > 1):
        raise ValueError(
            f"backend {settings.name!r} is data parallel only: tp={settings.tp}, pp={settings.pp} "
            f"needs backend: megatron"
        )
    if settings.name != "megatron" and settings.activation_checkpointing == "selective":
        raise ValueError(
            f"backend {settings.name!r} recomputes whole layers only: set training.activation_checkpointing "
            f"to full or none, or use backend: megatron for selective recomputation"
        )
    module, _, cls = IMPLEMENTATIONS[settings.name].partition(":")
    try:
        implementation = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        how = {
            "megatron": "pip install 'megatron-core>=0.16,<0.20'",
            "deepspeed": "DS_BUILD_OPS=0 pip install --no-build-isolation 'deepspeed>=0.16,<0.20'",
        }.get(settings.name, "pip install the package")
        raise ImportError(
            f"backend {settings.name!r} needs {exc.name}, which is not installed ({how})"
        ) from exc
    return implementation(settings, shape, weights)


def decays(name: str, param: Any) -> bool:
    """Whether AdamW's weight decay applies: matrices yes; norms and biases (1-D tensors) no.

    The rule of megatron-core's default param groups and of HF's Trainer, so every backend decays the same.
    """
    return param.ndim > 1 and not name.endswith(".bias")
