"""The training loop of one trial: resume, step, export, checkpoint, log; save and hand over on preemption.

    steps per epoch = ceil(rows / global batch)     (from the real packed data, not the plan's estimate)
    total steps     = steps per epoch x trial epochs (epochs fixed at plan time: export names are known)
    step s          = rows epoch_order(seed, e)[k*G:(k+1)*G], lr = schedule(s), RNG seeded by (seed, s)

At every step boundary all ranks agree (one all-reduce of two flags) on whether to save: a warning signal
(SIGUSR2/SIGTERM, caught by `PreemptionGuard` on any rank) or `resume_every_minutes` elapsed (rank 0's
clock). Epoch ends export the HF folder when the epoch is in `trial.checkpoints`, and every
`checkpoint_every_epochs`-th epoch end saves a resume checkpoint (except after the last step: the exports are
the product). On a signal the loop saves, writes the
log, releases the backend and re-raises the signal (`hand_over`): Slurm/submitit requeue, and the next run
resumes from that checkpoint, bit-for-bit on the same layout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.distributed as dist

from hpc_instruct.provenance import library_versions
from hpc_instruct.train import distributed
from hpc_instruct.train.backend import Backend, BackendSettings, StepStats, build_backend
from hpc_instruct.train.batching import StepData, load_rows
from hpc_instruct.train.export import export_epoch
from hpc_instruct.train.job import TrainJob
from hpc_instruct.train.preemption import PreemptionGuard
from hpc_instruct.train.presets import ModelShape
from hpc_instruct.train.resume import BACKEND_DIR, ResumeStore, TrainerState, check_compatible
from hpc_instruct.train.schedule import BatchPlan, LRSchedule
from hpc_instruct.train.step_log import Progress, StepLog, Throughput, gpu_peak_tflops

log = logging.getLogger("hpc_instruct.train")


class Preempted(Exception):
    """Raised when the warning signal's previous handler returned: the state is saved, the task is not done."""


@dataclass(frozen=True)
class TrainHooks:
    """Test and tool hooks (none in production runs).

    after_step(step, stats): after each optimizer step (1-based), before the ranks agree on saving; a test
        sends itself SIGUSR2 here to exercise the real preemption path.
    before_close(backend, data): after training, before the backend is released (e.g. to read logits).
    """

    after_step: Callable[[int, StepStats], None] | None = None
    before_close: Callable[[Backend, StepData], None] | None = None


@dataclass(frozen=True)
class TrainResult:
    """What the trial summary (trial.json) records about training."""

    steps: int
    steps_per_epoch: int
    epochs: int
    rows: int
    final_loss: float
    tokens: int
    step_seconds: float  # time in optimizer steps, all attempts
    wall_seconds: float  # attempts' wall time up to their last save, plus this attempt's
    attempts: int
    resumed_from: int | None  # step this attempt started from
    backend: str
    layout: dict[str, Any]
    batch: str
    precision: str
    device: str
    data_key: str
    exports: dict[int, str] = field(default_factory=dict)
    peak_tflops: float | None = None
    mfu: float | None = None  # step-time-weighted mean over the log (GPU runs; known on rank 0)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.step_seconds if self.step_seconds > 0 else 0.0


def step_seed(seed: int, step: int) -> int:
    """The RNG seed of optimizer step `step`: a resume (any layout) reproduces every stream from it."""
    return (seed * 1_000_003 + step) % (2**62)


def tokenizer_and_shape(job: TrainJob) -> tuple[Any, ModelShape]:
    """The trial's tokenizer (with the DoIT tokens when the template adds them) and the model shape sized to it."""
    from hpc_instruct.data.template import add_doit_tokens
    from hpc_instruct.data.tokenizer import load_tokenizer
    from hpc_instruct.train.weights import base_shape

    tokenizer = load_tokenizer(job.tokenizer)
    if job.template == "doit":
        add_doit_tokens(tokenizer)
    if tokenizer.pad_token_id is None:
        raise ValueError(f"tokenizer {job.tokenizer} has no pad token and the template added none")
    if job.model.path:  # a base model: its own shape, embeddings grown when the tokenizer gained tokens
        shape = base_shape(job.model.path)
        return tokenizer, replace(shape, vocab_size=max(shape.vocab_size, len(tokenizer)))
    return tokenizer, replace(job.shape, vocab_size=len(tokenizer))  # a preset: the tokenizer's vocabulary


def start_distributed(timeout_s: int = 1800) -> distributed.DistEnv:
    """The process group of this trial's ranks (`hpc_instruct.train.distributed`), idempotent.

    A single-rank trial started without torchrun (the local executor's one-process tasks, a one-task Slurm
    step) gets an in-process store instead of the fixed TCP port 29500 that `distributed.init` falls back to:
    two such trials on one machine (local parallelism, array elements sharing a node) would collide there.
    """
    env = distributed.detect()
    if env.world_size == 1 and not dist.is_initialized():
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(distributed.device_index(env.local_rank, torch.cuda.device_count()))
            backend = "nccl"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return distributed.init(timeout_s=timeout_s)


def train(job: TrainJob, hooks: TrainHooks = TrainHooks()) -> TrainResult:
    """Train `job` to the end (resuming from its newest complete checkpoint), exporting as planned."""
    started = time.monotonic()
    distributed.set_comm_env(job.model.tp)
    env = start_distributed(job.training.dist_timeout_minutes * 60)
    rank0 = env.rank == 0
    if dist.get_world_size() != job.ranks:
        raise RuntimeError(
            f"trial {job.trial_id} is laid out for tp*pp*dp = {job.model.tp}*{job.model.pp}*"
            f"{job.model.dp} = {job.ranks} ranks but {dist.get_world_size()} were started: "
            f"launch it with `torchrun --nproc_per_node={job.ranks}` (the executors do)"
        )
    tokenizer, shape = tokenizer_and_shape(job)
    rows = load_rows(job.packed, job.training.packing)
    plan = BatchPlan(job.model.global_batch, job.model.micro_batch, job.model.dp)
    steps_per_epoch = plan.steps_per_epoch(len(rows))
    total = job.max_steps or steps_per_epoch * job.epochs  # pretraining a base: a fixed step count
    schedule = LRSchedule.from_config(job.training, total)
    settings = BackendSettings.from_recipe(job.model, job.training, plan.accumulation, job.seed)
    if total < job.training.min_steps and rank0:
        log.warning(
            "trial %s trains %d steps, fewer than training.min_steps=%d: its %d epochs were fixed at plan time "
            "from data.mean_tokens, but this mixture averages %.0f tokens per sample (%d %s rows); set "
            "data.mean_tokens closer to that so the plan gives enough epochs",
            job.trial_id, total, job.training.min_steps, job.epochs, rows.tokens / max(1, rows.samples),
            len(rows), "packed" if rows.packed else "sample",
        )  # fmt: skip
    store = ResumeStore(job.checkpoints_dir, job.trial_id, job.training.keep_last)
    point = _broadcast(store.newest() if rank0 else None)
    if rank0:
        log.info(
            "trial %s (%s): %d %s rows, %s; %d steps/epoch x %d epochs = %d steps (plan: %d); lr %s %g, "
            "warmup %d; backend %s %s", job.trial_id, job.label, len(rows), "packed" if rows.packed else "sample",
            plan.describe(), steps_per_epoch, job.epochs, total, job.planned_steps, schedule.kind, schedule.lr,
            schedule.warmup_steps, settings.name, settings.layout(),
        )  # fmt: skip

    from hpc_instruct.train.weights import initial_weights

    backend = build_backend(settings, shape, initial_weights(shape, job.seed, job.init_from or job.model.path))
    # Pipeline stages exchange fixed shapes: one width per step there, one per micro-batch elsewhere.
    data = StepData(rows, plan, job.seed, tokenizer.pad_token_id, backend.pad_multiple, job.model.pp > 1)
    fresh = TrainerState(
        trial_id=job.trial_id, step=0, total_steps=total, steps_per_epoch=steps_per_epoch,
        global_batch=plan.global_batch, data_key=rows.data_key, packing=rows.packed, backend=settings.name,
        layout=settings.layout(), seconds=0.0, tokens=0, attempt=1, reason="start", versions=library_versions(),
    )  # fmt: skip
    state = fresh
    if point is not None:
        check_compatible(point.state, fresh)
        backend.load_state(point.backend_dir)
        state = replace(
            fresh,
            step=point.state.step,
            seconds=point.state.seconds,
            tokens=point.state.tokens,
            attempt=point.state.attempt + 1,
        )
        if rank0:
            log.info(
                "resuming %s from step %d (%s checkpoint, attempt %d)",
                job.trial_id,
                state.step,
                point.state.reason,
                state.attempt,
            )
    steplog = StepLog.resume(job.log_path, state.step) if rank0 else None
    if steplog is not None and steplog.open_tensorboard(job.trial_dir / "tensorboard"):
        log.info("TensorBoard events in %s", job.trial_dir / "tensorboard")
    prior_step_seconds = sum(r["seconds"] for r in steplog.rows) if steplog else 0.0
    step_seconds = _broadcast(prior_step_seconds)
    throughput = Throughput(shape, gpu_peak_tflops(job.gpu_peak_tflops), dist.get_world_size())
    progress = Progress(total, steps_per_epoch, job.label)
    flag_device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    last_save, exports, loss = time.monotonic(), {}, float("nan")

    pending: list = []  # an asynchronous save in flight: [PendingSave, commit]

    def finish_pending(blocking: bool) -> None:
        """Commit the asynchronous save once every rank's files are written (collective when one is pending)."""
        if pending and pending[0].done(blocking=blocking):
            pending.pop(1)()
            pending.clear()

    def save(step: int, reason: str) -> None:
        nonlocal last_save
        finish_pending(blocking=True)  # one save at a time; a new one may prune the previous
        tmp = store.begin(step) if rank0 else store.partial(step)
        dist.barrier()
        snapshot = replace(state, step=step, seconds=state.seconds + time.monotonic() - started, tokens=tokens,
                           reason=reason)

        def commit() -> None:
            if rank0:
                store.commit(snapshot)
                steplog.write()
            dist.barrier()

        # A preemption save is synchronous: the job ends right after it.
        if job.training.async_save and reason != "preemption" and getattr(backend, "supports_async_save", False):
            pending.extend([backend.save_state(tmp / BACKEND_DIR, asynchronous=True), commit])
        else:
            backend.save_state(tmp / BACKEND_DIR)
            dist.barrier()
            commit()
        last_save = time.monotonic()

    tokens = state.tokens
    with PreemptionGuard() as guard:
        for step in range(state.step, total):
            backend.reseed(step_seed(job.seed, step))
            batch = data.step(step, backend.dp_rank)
            lr = schedule.at(step)
            t0 = time.perf_counter()
            stats = backend.train_step(batch.micro_batches, lr, batch.target_tokens)
            seconds = time.perf_counter() - t0
            done, loss = step + 1, stats.loss
            tokens += batch.tokens
            step_seconds += seconds
            if rank0:
                row = {
                    "step": done,
                    "epoch": done / steps_per_epoch,
                    "loss": stats.loss,
                    "lr": lr,
                    "grad_norm": stats.grad_norm,
                    "tokens": batch.tokens,
                    "target_tokens": batch.target_tokens,
                    "seconds": seconds,
                    "tokens_per_s": batch.tokens / seconds,
                    "mfu": throughput.mfu(batch.tokens, batch.squares, seconds),
                    "attempt": state.attempt,
                    "time": time.time(),
                }
                steplog.add(row)
                progress.update(row)
            if hooks.after_step is not None:
                hooks.after_step(done, stats)
            epoch, epoch_end = divmod(done, steps_per_epoch)[0], done % steps_per_epoch == 0
            if (epoch_end and epoch in job.export_epochs) or (job.max_steps and done == total):
                folder = export_epoch(
                    backend, tokenizer, job.export_dir(epoch), job.trial_id, epoch, done, job.template
                )
                exports[epoch] = str(folder.relative_to(job.root))
                if rank0:
                    log.info("exported epoch %d to %s", epoch, folder)
            if done == total:
                break
            finish_pending(blocking=False)
            due = rank0 and time.monotonic() - last_save >= job.training.resume_every_minutes * 60
            flags = torch.tensor([float(guard.requested), float(due)], device=flag_device)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            preempted = bool(flags[0])
            # Resume checkpoints at the epochs the recipe checkpoints (checkpoint_every_epochs) and on the time
            # cadence: a tiny mixture stretched to min_steps can have hundreds of one-step epochs.
            at_epoch = epoch_end and epoch % job.training.checkpoint_every_epochs == 0
            if at_epoch or preempted or bool(flags[1]):
                save(done, "preemption" if preempted else "epoch" if at_epoch else "time")
            if preempted:
                if rank0:
                    log.warning(
                        "warning signal: saved %s at step %d/%d; handing over for requeue",
                        job.trial_id,
                        done,
                        total,
                    )
                    steplog.close()
                backend.close()
                guard.hand_over()  # re-raises the signal: submitit requeues, the default handler exits
                raise Preempted(
                    f"trial {job.trial_id} saved at step {done} after a warning signal; run the "
                    f"task again to resume"
                )
        if guard.requested and rank0:
            log.warning("warning signal during the last step: finishing %s instead of saving", job.trial_id)
    finish_pending(blocking=True)
    mfu = None
    if rank0:
        steplog.write()
        steplog.close()
        timed = [(r["mfu"], r["seconds"]) for r in steplog.rows if r["mfu"] is not None]
        mfu = sum(m * t for m, t in timed) / sum(t for _, t in timed) if timed else None
    if hooks.before_close is not None:
        hooks.before_close(backend, data)
    backend.close()
    return TrainResult(
        steps=total,
        steps_per_epoch=steps_per_epoch,
        epochs=job.epochs,
        rows=len(rows),
        final_loss=loss,
        tokens=tokens,
        step_seconds=step_seconds,
        wall_seconds=state.seconds + time.monotonic() - started,
        attempts=state.attempt,
        resumed_from=state.step if point is not None else None,
        backend=settings.name,
        layout=settings.layout(),
        batch=plan.describe(),
        precision=settings.precision,
        device=settings.device,
        data_key=rows.data_key,
        exports=exports,
        peak_tflops=throughput.peak_tflops,
        mfu=mfu,
    )


def _broadcast(value: Any) -> Any:
    """Rank 0's `value` on every rank (small Python objects)."""
    box = [value]
    if dist.get_world_size() > 1:
        dist.broadcast_object_list(box, src=0)
    return box[0]
