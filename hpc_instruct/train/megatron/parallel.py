"""Process groups and one optimizer step for the Megatron backend: DDP x TP x PP, gloo on CPU, NCCL on GPUs.

`initialize` starts torch.distributed (rendezvous from torchrun or Slurm, via `hpc_instruct.train.distributed`)
and megatron's model-parallel groups, and seeds every RNG. `Trainer` wraps the model chunks
in megatron's DistributedDataParallel with `get_megatron_optimizer` (megatron's DDP keeps gradients in its own
buffers, so a plain torch optimizer would silently not train) and runs `train_step` / `eval_loss` through
`get_forward_backward_func()`, which picks the no-pipelining, 1F1B or interleaved schedule from the layout.

A step takes a list of micro-batches (this DP rank's share of the global batch); a micro-batch is what
`hpc_instruct.data.packing.collate_packed` gives: [micro_batch, seq] tensors `input_ids`, `labels` (aligned
with `input_ids`, -100 = no loss; shifted here, as HF models do internally) and optionally `segment_ids`
(packed rows, negative = padding), on any device (moved to the compute device here), and `cu_seqlens`
(`hpc_instruct.train.batching`; derived from `segment_ids` when absent). Every rank of a TP/PP group passes the
same micro-batches. Models built with Transformer Engine layers (`packed_format` "thd", see `te`) get each
micro-batch laid end to end as one sequence with its boundaries; local ones get a dense block-diagonal mask.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from megatron.core import parallel_state, tensor_parallel
from megatron.core.distributed import (
    DistributedDataParallel,
    DistributedDataParallelConfig,
    finalize_model_grads,
)
from megatron.core.models.gpt import GPTModel
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.transformer.module import Float16Module

from hpc_instruct.train import distributed
from hpc_instruct.train.megatron import cpu_compat, te
from hpc_instruct.train.megatron.model import ParallelLayout, packed_attention_mask, packed_position_ids

MicroBatch = dict[str, torch.Tensor]
IGNORE_INDEX = -100  # label of tokens without loss (HF convention)


def initialize(layout: ParallelLayout, seed: int, timeout_minutes: int = 30) -> None:
    """Start torch.distributed (if needed) and megatron's TP/PP/DP groups for `layout`; seed all RNGs.

    The rendezvous comes from `hpc_instruct.train.distributed` (torchrun's variables, or Slurm's under
    srun/submitit); NCCL with CUDA, gloo (plus `cpu_compat`) without. Call `teardown(keep_process_group=True)`
    before initializing another layout in the same processes.
    """
    cpu_compat.install()
    distributed.set_comm_env(layout.tensor)
    distributed.init(timeout_s=timeout_minutes * 60)
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=layout.tensor,
        pipeline_model_parallel_size=layout.pipeline,
        virtual_pipeline_model_parallel_size=layout.virtual_pipeline,
        distributed_timeout_minutes=timeout_minutes,
    )
    seed_everything(seed)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and, through megatron's tracker, the TP-rank-specific dropout streams)."""
    torch.manual_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def teardown(keep_process_group: bool = False) -> None:
    """Destroy megatron's groups and (unless kept, to re-`initialize` another layout) the process group.

    Destroying the process group before exit avoids intermittent gloo/NCCL aborts at interpreter shutdown.
    """
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if torch.distributed.is_initialized() and not keep_process_group:
        torch.distributed.destroy_process_group()


@dataclass(frozen=True)
class OptimizerSettings:
    """AdamW settings; the learning-rate schedule is the training loop's (set `param_groups[i]["lr"]`)."""

    lr: float = 1e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    distributed_optimizer: bool = False  # shard optimizer state over DP (ZeRO-1)
    tokens_per_micro_batch: int = 2048  # fp16 only: sizes the first loss scale (`fp16_initial_loss_scale`)
    # Overlap the DP gradient reduce (and, with the distributed optimizer, the parameter all-gather) with
    # backward/forward compute, in buckets. None: on with CUDA (NCCL), off on CPU/gloo, where the
    # collectives are synchronous in practice and the tests want the simplest path.
    overlap_communication: bool | None = None


# fp16: megatron-core's dynamic loss scaler (`DynamicGradScaler`). A step whose gradients hold inf/NaN is
# skipped; `hysteresis` such steps in a row, then every further one, halve the scale; `window` clean steps
# double it. The first scale matters: a short DoIT trial has as few as 15 steps, and every overflow at the
# start is a lost update. DeepSpeed (the DoIT stack) starts at 2**16 on a micro-batch's *mean* loss; this
# loss is the *sum* over the micro-batch's tokens (`calculate_per_token_loss`, divided after the backward),
# whose logit gradients are up to tokens x larger. So the same headroom is 2**16 / tokens (rounded to a power
# of two). megatron-LM's 2**32 on a summed loss overflowed every step of a 4-step test (measured here).
FP16_MEAN_LOSS_SCALE = 2.0**16
FP16_LOSS_SCALE_WINDOW = 1000
FP16_HYSTERESIS = 2


def fp16_initial_loss_scale(tokens_per_micro_batch: int) -> float:
    """2**16 on a mean loss = 2**16 / tokens on the summed loss (power of two, at least 1)."""
    return max(1.0, FP16_MEAN_LOSS_SCALE / 2 ** math.ceil(math.log2(max(1, tokens_per_micro_batch))))


def ddp_config(settings: OptimizerSettings, cuda: bool, chunks: int = 1) -> DistributedDataParallelConfig:
    """Megatron DDP settings: fp32 gradient reduction, plus megatron-LM's GPU defaults for overlap.

    With overlap, gradients are reduced bucket by bucket as backward produces them (on the last
    micro-batch) and, with the distributed optimizer, each bucket's updated parameters are all-gathered
    just before the forward pass needs them. `bucket_size` None is megatron-core's default,
    max(40M, 1M x DP) parameters per bucket. With several model chunks (virtual pipeline) the schedule
    starts the chunks' all-gathers in order (`align_param_gather`, megatron-LM's default there).
    """
    overlap = cuda if settings.overlap_communication is None else settings.overlap_communication
    return DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        use_distributed_optimizer=settings.distributed_optimizer,
        overlap_grad_reduce=overlap,
        overlap_param_gather=overlap and settings.distributed_optimizer,
        align_param_gather=overlap and settings.distributed_optimizer and chunks > 1,
        bucket_size=None,
    )


def unwrap(module: torch.nn.Module) -> GPTModel:
    """The GPTModel inside DDP / Float16Module wrappers."""
    while not isinstance(module, GPTModel):
        module = module.module
    return module


class Trainer:
    """Megatron DDP + optimizer around this rank's model chunks, and the step functions over them."""

    def __init__(self, chunks: list[GPTModel], settings: OptimizerSettings) -> None:
        config = chunks[0].config
        ddp = ddp_config(settings, torch.cuda.is_available(), len(chunks))
        half = config.bf16 or config.fp16
        wrapped: list[torch.nn.Module] = [Float16Module(config, c) if half else c for c in chunks]
        self.model = [
            # Only the first chunk gets bucketed reduce (megatron-LM's choice for interleaved schedules).
            DistributedDataParallel(config=config, ddp_config=ddp, module=m, disable_bucketing=i > 0)
            for i, m in enumerate(wrapped)
        ]
        self.optimizer = get_megatron_optimizer(
            OptimizerConfig(
                optimizer="adam",
                lr=settings.lr,
                weight_decay=settings.weight_decay,
                adam_beta1=settings.adam_beta1,
                adam_beta2=settings.adam_beta2,
                adam_eps=settings.adam_eps,
                clip_grad=settings.clip_grad,
                bf16=config.bf16,
                fp16=config.fp16,
                loss_scale=None,  # dynamic
                initial_loss_scale=fp16_initial_loss_scale(settings.tokens_per_micro_batch),
                loss_scale_window=FP16_LOSS_SCALE_WINDOW,
                hysteresis=FP16_HYSTERESIS,
                params_dtype=config.params_dtype,
                use_distributed_optimizer=settings.distributed_optimizer,
                overlap_param_gather=ddp.overlap_param_gather,  # meant to equal the DDP setting
            ),
            self.model,
        )
        # The schedules call these hooks: skip DP grad sync until the last micro-batch, then reduce DP grads,
        # TP-replicated (sequence-parallel norm) grads and tied embeddings, and divide by the token count.
        config.no_sync_func = _per_chunk([m.no_sync for m in self.model])
        # With overlap, the schedules also start each chunk's grad reduce when its last backward is done,
        # and (interleaved only: megatron-LM's align_param_gather) each chunk's param all-gather in order.
        config.grad_sync_func = (
            _per_chunk([m.start_grad_sync for m in self.model]) if ddp.overlap_grad_reduce else None
        )
        config.param_sync_func = (
            _per_chunk([m.start_param_sync for m in self.model]) if ddp.align_param_gather else None
        )
        config.finalize_model_grads_func = finalize_model_grads
        config.grad_scale_func = self.optimizer.scale_loss
        self.config = config
        self.skipped_steps = 0  # fp16: steps whose update was skipped for inf/NaN gradients

    @property
    def chunks(self) -> list[GPTModel]:
        return [unwrap(m) for m in self.model]

    def sync_params(self) -> None:
        """Finish a pending parameter all-gather (overlap with the distributed optimizer; else a no-op).

        With overlap the optimizer step leaves the updated parameters to be gathered during the next forward
        pass; anything that reads the weights outside a training step (checkpoint, export, logits, eval)
        calls this first, as megatron-LM does before evaluation and saving.
        """
        for m in self.model:
            if getattr(m, "use_forward_hook", False):
                m.disable_forward_pre_hook(param_sync=True)
                m.enable_forward_pre_hook()

    def train_step(self, micro_batches: list[MicroBatch]) -> tuple[float, float]:
        """Forward, backward and one optimizer step over the micro-batches of one global batch (this DP rank's).

        Returns (mean loss per target token over the whole global batch, gradient norm); the same on all
        ranks. In fp16 a step with inf/NaN gradients makes no update (the loss scale drops): its norm is NaN
        and `skipped_steps` counts it.
        """
        for m in self.model:
            m.train()
            m.zero_grad_buffer()
        self.optimizer.zero_grad()
        stats = self._run(micro_batches, forward_only=False)
        updated, grad_norm, _ = self.optimizer.step()
        if not updated:
            self.skipped_steps += 1
            return self._mean_loss(stats), float("nan")
        return self._mean_loss(stats), float(grad_norm or 0.0)

    @property
    def loss_scale(self) -> float:
        """The current loss scale (1.0 without fp16)."""
        return float(self.optimizer.get_loss_scale())

    @torch.no_grad()
    def eval_loss(self, micro_batches: list[MicroBatch]) -> float:
        """Mean loss per target token over the micro-batches (all DP ranks together), no update."""
        self.sync_params()
        for m in self.model:
            m.eval()
        return self._mean_loss(self._run(micro_batches, forward_only=True))

    def _run(self, micro_batches: list[MicroBatch], forward_only: bool) -> list[dict[str, torch.Tensor]]:
        micro, seq = _schedule_shape(self.model, micro_batches[0])
        iterators: list[Iterator[MicroBatch]] = [iter(micro_batches) for _ in self.model]
        return get_forward_backward_func()(
            forward_step_func=_forward_step,
            data_iterator=iterators if len(iterators) > 1 else iterators[0],
            model=self.model if len(self.model) > 1 else self.model[0],
            num_microbatches=len(micro_batches),
            seq_length=seq,
            micro_batch_size=micro,
            forward_only=forward_only,
        )

    @staticmethod
    def _mean_loss(stats: list[dict[str, torch.Tensor]]) -> float:
        """Sum (loss, tokens) over micro-batches on the last stage, then over DP and PP: same value everywhere."""
        total = torch.zeros(2, dtype=torch.float64, device=_device())
        for s in stats:
            total += s["lm loss"].double()
        torch.distributed.all_reduce(total, group=parallel_state.get_data_parallel_group())
        torch.distributed.all_reduce(total, group=parallel_state.get_pipeline_model_parallel_group())
        return float(total[0] / total[1].clamp(min=1))


@torch.no_grad()
def forward_logits(
    model: list[torch.nn.Module], micro_batches: list[MicroBatch]
) -> list[torch.Tensor] | None:
    """Full-vocabulary logits [micro_batch, seq, padded vocab] per micro-batch, through the pipeline.

    Collective over the model-parallel group; returns the logits on last-stage ranks and None elsewhere.
    Works on bare chunks or on `Trainer.model`.
    """
    for m in model:
        m.eval()
    micro, seq = _schedule_shape(model, micro_batches[0])

    def step(data_iterator: Iterator[MicroBatch], chunk: torch.nn.Module) -> tuple[torch.Tensor, Any]:
        return chunk(**model_inputs(_to_device(next(data_iterator)), _is_thd(chunk))), _gather_logits

    iterators = [iter(micro_batches) for _ in model]
    outputs = get_forward_backward_func()(
        forward_step_func=step,
        data_iterator=iterators if len(model) > 1 else iterators[0],
        model=model if len(model) > 1 else model[0],
        num_microbatches=len(micro_batches),
        seq_length=seq,
        micro_batch_size=micro,
        forward_only=True,
        collect_non_loss_data=True,
    )
    if not parallel_state.is_pipeline_last_stage():
        return None
    # THD runs a micro-batch as one row: give the logits back their [rows, width] shape.
    return [out.reshape(*mb["input_ids"].shape, -1) for out, mb in zip(outputs, micro_batches, strict=True)]


def _gather_logits(logits: torch.Tensor, non_loss_data: bool = True) -> torch.Tensor:
    """The schedules' "loss function" for forward_logits: the TP ranks' vocabulary slices, concatenated."""
    return tensor_parallel.gather_from_tensor_model_parallel_region(logits)


def _per_chunk(hooks: list[Any]) -> Any:
    """One hook per model chunk, or the hook itself without virtual pipeline stages (what the schedules take)."""
    return hooks if len(hooks) > 1 else hooks[0]


def _is_thd(model: torch.nn.Module) -> bool:
    return getattr(unwrap(model), te.PACKED_FORMAT, "mask") == "thd"


def _schedule_shape(model: list[torch.nn.Module], batch: MicroBatch) -> tuple[int, int]:
    """(micro-batch size, sequence length) as the schedules see them: THD lays the rows end to end."""
    rows, width = batch["input_ids"].shape
    return (1, rows * width) if _is_thd(model[0]) else (rows, width)


def _device() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_available()
        else torch.device("cpu")
    )


def _to_device(batch: MicroBatch) -> MicroBatch:
    device = _device()
    # The boundaries stay on the host: `te.thd_params` reads their maximum there and moves them itself.
    return {k: v if k == "cu_seqlens" else v.to(device, non_blocking=True) for k, v in batch.items()}


def model_inputs(batch: MicroBatch, thd: bool = False) -> dict[str, Any]:
    """GPTModel keyword arguments for a micro-batch.

    Local layers: packed rows get the block-diagonal causal mask. `thd` (TE layers): the rows are laid end to
    end ([1, rows x width]) with `PackedSeqParams` from `cu_seqlens`; no mask, TE's causal kernel runs per
    sequence (each row's padding tail is a sequence of its own, without loss).
    """
    if thd:
        cu = batch.get("cu_seqlens")
        if cu is None:
            cu = te.cu_seqlens_from_segments(
                batch.get("segment_ids", torch.zeros_like(batch["input_ids"])).cpu()
            )
        flat = te.flatten_rows(batch)
        return {
            "input_ids": flat["input_ids"],
            "position_ids": None,  # RoPE restarts per THD sequence inside megatron
            "attention_mask": None,
            "packed_seq_params": te.thd_params(cu, flat["input_ids"].device),
        }
    segments = batch.get("segment_ids")
    if segments is None:
        return {"input_ids": batch["input_ids"], "position_ids": None, "attention_mask": None}
    positions = batch.get("position_ids")
    return {
        "input_ids": batch["input_ids"],
        "position_ids": packed_position_ids(segments) if positions is None else positions,
        "attention_mask": packed_attention_mask(segments),
    }


def shifted_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(next-token targets, loss mask) from labels aligned with the inputs: position t predicts label t+1.

    Targets without loss are set to 0 (any valid id) for megatron's vocab-parallel cross entropy.
    """
    target = torch.full_like(labels, IGNORE_INDEX)
    target[:, :-1] = labels[:, 1:]
    mask = target != IGNORE_INDEX
    return target.masked_fill(~mask, 0), mask.float()


def _forward_step(data_iterator: Iterator[MicroBatch], model: torch.nn.Module) -> tuple[torch.Tensor, Any]:
    batch = _to_device(next(data_iterator))
    target, loss_mask = shifted_targets(batch["labels"])  # shifted within each row, before any flattening
    thd = _is_thd(model)
    if thd:
        target, loss_mask = target.reshape(1, -1), loss_mask.reshape(1, -1)
    output = model(**model_inputs(batch, thd), labels=target)
    return output, partial(_loss, loss_mask)


def _loss(loss_mask: torch.Tensor, per_token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Summed loss over target tokens and their count; the schedules divide by the global count."""
    mask = loss_mask.to(per_token.device)
    loss = (per_token.float() * mask).sum()
    count = mask.sum().to(torch.int)
    # The schedules scale `loss` in place: log a detached clone.
    return loss, count, {"lm loss": torch.stack([loss.detach().clone(), mask.sum()])}
