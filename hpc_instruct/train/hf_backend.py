"""The hf backend: a transformers Llama/Qwen2 model under torch DDP (data parallel only).

The model is built from the trial's shape (`convert.hf_config`) and loaded from the same initial weights as
the other backends. Packed rows get a block-diagonal causal mask (`block_causal_mask`, passed as a 4-D mask
that transformers uses as is, with SDPA attention) and positions restarting per sample. The loss is computed
here, not by the model: the sum of next-token cross entropies, scaled so that DDP's gradient average yields
sum / (target tokens of the global batch), which is megatron's per-token loss.

Precision: fp32; bf16 autocast on GPUs (fp32 master weights, as megatron); fp16 autocast with a gradient
scaler. `activation_checkpointing` uses transformers' gradient checkpointing.

What it is for: a reference implementation (parity tests against megatron, CPU runs, small models on GPUs).
Every GPU holds the whole model in fp32 with its gradients and both Adam moments (16 bytes/param: a 7B model
needs ~104 GiB before activations), and nothing is sharded (no FSDP); `hpci validate` refuses a model that
does not fit one GPU this way and names backend megatron (distributed optimizer, TP/PP) or deepspeed (ZeRO-2).
The functions below are shared with the DeepSpeed backend.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from hpc_instruct.data.packing import block_causal_mask
from hpc_instruct.data.template import IGNORE_INDEX
from hpc_instruct.train.backend import BackendSettings, StepStats, decays
from hpc_instruct.train.presets import ModelShape

STATE_FILE = "hf-state.pt"


def compute_device(settings: BackendSettings) -> torch.device:
    """This rank's device: its local GPU (LOCAL_RANK) for device cuda, else the CPU."""
    if settings.device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                "model.device is cuda but this node has no GPU: set device: cpu to train on CPU"
            )
        from hpc_instruct.train.distributed import device_index

        index = device_index(int(os.environ.get("LOCAL_RANK", 0)), torch.cuda.device_count())
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def build_hf_model(
    shape: ModelShape, weights: Mapping[str, torch.Tensor], checkpointing: bool
) -> torch.nn.Module:
    """LlamaForCausalLM / Qwen2ForCausalLM of `shape` (fp32, CPU) holding exactly `weights`."""
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM

    from hpc_instruct.train.megatron.convert import hf_config

    config = hf_config(shape)
    config._attn_implementation = "sdpa"  # takes the boolean 4-D block mask as is
    model = (Qwen2ForCausalLM if shape.family == "qwen2" else LlamaForCausalLM)(config)
    expected = model.state_dict()
    state = {name: weights[name] for name in expected if name in weights}
    missing = set(expected) - set(state) - ({"lm_head.weight"} if shape.tie_embeddings else set())
    if missing:
        raise KeyError(
            f"initial weights lack {len(missing)} tensors of the model, e.g. {sorted(missing)[:3]}"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ValueError(
                f"{name}: weights have {tuple(tensor.shape)}, the model {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=False)
    if shape.tie_embeddings:
        model.tie_weights()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    return model


def adamw(model: torch.nn.Module, settings: BackendSettings) -> torch.optim.AdamW:
    """torch AdamW with two groups: decayed matrices, undecayed norms and biases (see `backend.decays`)."""
    opt = settings.optimizer
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": opt.weight_decay},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)


def autocast(settings: BackendSettings, device: torch.device) -> contextlib.AbstractContextManager:
    if settings.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if settings.precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def summed_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """Sum of next-token cross entropies over the tokens with a label (position t predicts label t+1)."""
    logits = forward(model, batch, device)
    labels = batch["labels"].to(device)
    target = torch.full_like(labels, IGNORE_INDEX)
    target[:, :-1] = labels[:, 1:]
    return F.cross_entropy(
        logits.float().flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def forward(model: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """Logits of a collated batch: block-diagonal causal attention within samples, pads attend to themselves."""
    segments = batch["segment_ids"].to(device)
    return model(
        input_ids=batch["input_ids"].to(device),
        attention_mask=block_causal_mask(segments),
        position_ids=batch["position_ids"].to(device),
        use_cache=False,
    ).logits


def reduced(value: torch.Tensor) -> float:
    """Sum over all ranks (a float64 copy, so the mean loss does not depend on the reduction dtype)."""
    total = value.detach().double().reshape(1)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(total)
    return float(total)


def config_dtype(settings: BackendSettings) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[settings.precision]


def save_hf(model: torch.nn.Module, folder: Path, dtype: torch.dtype) -> None:
    """`save_pretrained` (safetensors) with the weights and config.json in the training dtype; rank 0 only."""
    state = {k: v.to(dtype) for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # the embedding; from_pretrained ties it again
    model.save_pretrained(folder, safe_serialization=True, state_dict=state)
    config = copy.deepcopy(model.config)
    setattr(config, "dtype" if hasattr(config, "dtype") else "torch_dtype", dtype)
    config.save_pretrained(folder)


class HFBackend:
    name = "hf"

    def __init__(
        self, settings: BackendSettings, shape: ModelShape, weights: Mapping[str, torch.Tensor]
    ) -> None:
        self.settings, self.shape = settings, shape
        self.device = compute_device(settings)
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        if self.world != settings.dp:
            raise ValueError(
                f"backend hf is data parallel: the world has {self.world} ranks but dp={settings.dp}"
            )
        self.dp_rank, self.dp_size, self.pad_multiple = self.rank, self.world, 1
        torch.manual_seed(settings.seed)
        self.model = build_hf_model(shape, weights, settings.activation_checkpointing == "full").to(self.device).train()
        self.ddp: torch.nn.Module | None = None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = adamw(self.model, settings)
        self.scaler = torch.amp.GradScaler(self.device.type) if settings.precision == "fp16" else None

    def reseed(self, seed: int) -> None:
        torch.manual_seed(seed)  # seeds the CUDA generators too

    def train_step(self, micro_batches: list[dict[str, Any]], lr: float, target_tokens: int) -> StepStats:
        module = self.ddp or self.model
        # DDP averages gradients over the world; the sum over all ranks divided by the global target count is
        # what every backend optimises, so each rank scales its sum by world / targets.
        scale = self.world / max(1, target_tokens)
        local = torch.zeros((), dtype=torch.float64, device=self.device)
        for i, batch in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            sync = contextlib.nullcontext() if (self.ddp is None or last) else self.ddp.no_sync()
            with sync:
                with autocast(self.settings, self.device):
                    loss = summed_loss(module, batch, self.device)
                local += loss.detach().double()
                scaled = loss * scale
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        grad_norm = self._clip()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepStats(reduced(local) / max(1, target_tokens), grad_norm)

    def _clip(self) -> float:
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        clip = self.settings.optimizer.grad_clip
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        return float(norm)

    def save_state(self, directory: Path) -> None:
        if self.rank == 0:  # DDP replicas are identical: one copy serves any DP size on resume
            state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
            if self.scaler:
                state["scaler"] = self.scaler.state_dict()
            torch.save(state, directory / STATE_FILE)
        if self.world > 1:
            dist.barrier()

    def load_state(self, directory: Path) -> None:
        state = torch.load(directory / STATE_FILE, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    def export_hf(self, folder: Path) -> None:
        if self.rank == 0:
            save_hf(self.model, folder, config_dtype(self.settings))
        if self.world > 1:
            dist.barrier()

    @torch.no_grad()
    def logits(self, micro_batch: dict[str, Any]) -> torch.Tensor | None:
        if self.rank != 0:
            return None
        self.model.eval()
        try:
            with autocast(self.settings, self.device):
                return forward(self.model, micro_batch, self.device).float().cpu()
        finally:
            self.model.train()

    def close(self) -> None:
        self.ddp = None
