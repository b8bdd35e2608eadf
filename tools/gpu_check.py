"""The parts of the one-shot GPU check (`tools/gpu-check.sh`), one per invocation, each under torchrun.

    python -m torch.distributed.run --standalone --nproc_per_node=N tools/gpu_check.py PART OUT [--dry-run] [--tp T]
    python tools/gpu_check.py list | summary OUT

Parts (PARTS; a new check adds a function there and its name shows up in `list`, which the shell runs):
    train        a ~1B Llama (TinyLlama shape) in bf16, steps of packed rows, with TE layers when TE imports
                 and with the local layers: tokens/s and MFU against the GPU's peak (`step_log.Throughput`).
    parity       one packed batch: loss of the path under test (TE + THD, else local + dense mask) against
                 the reference (local + dense mask; without TE: every sample in a row of its own).
    resume-save  train, save a resume checkpoint, train on (the reference losses), then SIGKILL itself.
    resume-load  a fresh process loads that checkpoint and trains the same steps: the losses must match.
    export       train a little, export the HF folder, reload it with transformers: greedy batched generation
                 (left padding) must give the tokens the in-memory Megatron model gives.
Each part writes `<OUT>/<part>-tp<T>.json` on rank 0; `summary` reads them and prints the RESULT line.
`--dry-run`: a tiny shape in fp32 on CPU (gloo), the same code path; no figure from it is a GPU figure.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpc_instruct.train.presets import ModelShape  # noqa: E402

# TinyLlama-1.1B's shape: 22 layers, hidden 2048, 32 heads in 4 KV groups, SwiGLU 5632, vocab 32000.
GPU_SHAPE = ModelShape("llama", 22, 2048, 32, 4, 5632, 32000, 4096, norm_epsilon=1e-5)
DRY_SHAPE = ModelShape("llama", 2, 64, 4, 2, 176, 256, 256, norm_epsilon=1e-5)


@dataclass(frozen=True)
class Setting:
    """Sizes of one run: the GPU's, or the dry run's."""

    shape: ModelShape
    dtype: str
    width: int  # tokens per packed row
    rows: int  # rows per micro-batch
    steps: int  # timed training steps per attention path
    warmup: int
    loss_tol: float  # parity and resume: max |loss difference|

    @classmethod
    def pick(cls, dry: bool) -> Setting:
        if dry:
            return cls(DRY_SHAPE, "float32", 64, 2, 6, 1, 1e-4)
        return cls(GPU_SHAPE, "bfloat16", 2048, 4, 200, 10, 2e-2)


# ------------------------------------------------------------------ data and model
def packed_batch(setting: Setting, seed: int, width: int | None = None) -> dict:
    """One micro-batch of packed rows: samples of random lengths, each an arithmetic sequence mod the vocabulary
    (learnable, so greedy generation after a few steps is not a coin toss), first token of each without loss."""
    import numpy as np

    from hpc_instruct.data.packing import collate_packed
    from hpc_instruct.train.batching import flat_cu_seqlens

    rng = np.random.default_rng(seed)
    width = width or setting.width
    vocab = setting.shape.vocab_size
    rows = []
    for _ in range(setting.rows):
        ids, labels, segments, bounds = [], [], [], [0]
        while bounds[-1] < width - 4:
            n = int(min(width - bounds[-1], rng.integers(width // 8, width // 2 + 1)))
            start, stride = int(rng.integers(vocab)), int(rng.integers(1, 8))
            sample = [(start + stride * i) % vocab for i in range(n)]
            ids += sample
            labels += [-100, *sample[1:]]
            segments += [len(bounds) - 1] * n
            bounds.append(bounds[-1] + n)
        rows.append({"input_ids": np.array(ids), "labels": np.array(labels), "segment_ids": np.array(segments),
                     "position_ids": np.zeros(len(ids), dtype=np.int64), "cu_seqlens": np.array(bounds)})
    batch = collate_packed(rows, pad_id=0, pad_to=width)
    batch["cu_seqlens"] = flat_cu_seqlens([r["cu_seqlens"] for r in rows], width)
    batch["squares"] = sum(int(((r["cu_seqlens"][1:] - r["cu_seqlens"][:-1]) ** 2).sum()) for r in rows)
    return batch


def model_batch(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "squares"}


def build(setting: Setting, tp: int, attention: str, seed: int = 7, weights: dict | None = None):
    """initialize (first call) + model chunks + Trainer; `weights` (HF names) overwrite the random init."""
    from hpc_instruct.train.megatron import convert, parallel
    from hpc_instruct.train.megatron.model import ModelOptions, ParallelLayout, build_model

    layout = ParallelLayout(tensor=tp)
    from megatron.core import parallel_state

    if not parallel_state.model_parallel_is_initialized():
        parallel.initialize(layout, seed)
    chunks = build_model(setting.shape, layout, ModelOptions(dtype=setting.dtype, attention=attention))
    if weights is not None:
        convert.load_hf_weights(chunks, setting.shape, weights)
    settings = parallel.OptimizerSettings(lr=3e-3 if setting.dtype == "float32" else 3e-4, weight_decay=0.0,
                                          distributed_optimizer=True)
    return parallel.Trainer(chunks, settings)


def attentions(dry: bool) -> list[str]:
    """The attention paths to run: TE (when it imports on this GPU) and the local layers."""
    from hpc_instruct.train.megatron import te

    return (["te"] if not dry and te.use_te("auto") else []) + ["local"]


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ------------------------------------------------------------------ parts
def part_train(setting: Setting, out: Path, dry: bool, tp: int) -> dict:
    import torch

    from hpc_instruct.train.megatron import parallel
    from hpc_instruct.train.step_log import Throughput, gpu_peak_tflops

    peak = gpu_peak_tflops(None)
    report: dict = {"peak_tflops": peak, "shape": setting.shape.__dict__}
    for attention in attentions(dry):
        trainer = build(setting, tp, attention)
        devices = report["devices"] = torch.distributed.get_world_size()
        batches = [packed_batch(setting, seed=s) for s in range(4)]
        for s in range(setting.warmup):
            trainer.train_step([model_batch(batches[s % 4])])
        _sync()
        start, tokens, squares, losses = time.perf_counter(), 0, 0, []
        for s in range(setting.steps):
            b = batches[s % 4]
            losses.append(trainer.train_step([model_batch(b)])[0])
            tokens += int((b["segment_ids"] >= 0).sum())
            squares += b["squares"]
        _sync()
        seconds = time.perf_counter() - start
        # Every DP rank ran its own micro-batch: the global token count is tokens x DP.
        dp = devices // tp
        mfu = Throughput(setting.shape, peak, devices).mfu(tokens * dp, squares * dp, seconds)
        report[attention] = {"tok_s": tokens * dp / seconds, "mfu": mfu, "first_loss": losses[0],
                             "last_loss": losses[-1], "steps": setting.steps, "seconds": seconds}
        del trainer
        parallel.teardown(keep_process_group=True)
    return report


def _loss(logits, batch) -> float:
    import torch

    from hpc_instruct.train.megatron.parallel import shifted_targets

    target, mask = shifted_targets(batch["labels"].to(logits.device))
    vocab = logits.shape[-1]
    per = torch.nn.functional.cross_entropy(logits.float().reshape(-1, vocab), target.reshape(-1), reduction="none")
    return float((per * mask.reshape(-1)).sum() / mask.sum())


def part_parity(setting: Setting, out: Path, dry: bool, tp: int) -> dict:
    from hpc_instruct.train.megatron import convert, parallel

    test_path = attentions(dry)[0]
    reference = build(setting, tp, "local")
    for _ in range(3):  # move away from the init so the comparison is not of near-uniform logits
        reference.train_step([model_batch(packed_batch(setting, seed=11))])
    reference.sync_params()
    weights = convert.gather_hf_state(reference.chunks, setting.shape)
    batch = model_batch(packed_batch(setting, seed=12))
    (ref_logits,) = parallel.forward_logits(reference.model, [batch])
    ref_loss = _loss(ref_logits[..., : setting.shape.vocab_size], batch)
    if test_path == "te":
        tested = build(setting, tp, "te", weights=weights)
        (logits,) = parallel.forward_logits(tested.model, [batch])
        loss, compared = _loss(logits[..., : setting.shape.vocab_size], batch), "te-thd vs local-dense-mask"
    else:  # each sample alone in a row, no mask: what the dense mask must reproduce
        alone = _samples_alone(batch)
        total, count = 0.0, 0
        for sample in alone:
            (logits,) = parallel.forward_logits(reference.model, [sample])
            n = int((sample["labels"][:, 1:] != -100).sum())
            total += _loss(logits[..., : setting.shape.vocab_size], sample) * n
            count += n
        loss, compared = total / count, "local-dense-mask vs samples alone"
    diff = abs(loss - ref_loss)
    return {"compared": compared, "loss": loss, "reference_loss": ref_loss, "diff": diff,
            "ok": diff <= setting.loss_tol}


def _samples_alone(batch: dict) -> list[dict]:
    rows = []
    for r in range(batch["input_ids"].shape[0]):
        seg = batch["segment_ids"][r]
        for s in seg[seg >= 0].unique().tolist():
            keep = seg == s
            rows.append({"input_ids": batch["input_ids"][r : r + 1, keep], "labels": batch["labels"][r : r + 1, keep]})
    return rows


def _resume_dir(out: Path, tp: int) -> Path:
    return out / f"resume-ckpt-tp{tp}"


def part_resume_save(setting: Setting, out: Path, dry: bool, tp: int) -> dict:
    import torch

    from hpc_instruct.train.megatron import checkpoint

    trainer = build(setting, tp, attentions(dry)[0])
    for s in range(3):
        trainer.train_step([model_batch(packed_batch(setting, seed=100 + s))])
    trainer.sync_params()
    directory = _resume_dir(out, tp)
    if torch.distributed.get_rank() == 0:
        directory.mkdir(parents=True, exist_ok=True)
    torch.distributed.barrier()
    checkpoint.save_training_state(trainer.chunks, trainer.optimizer, directory)
    after = [trainer.train_step([model_batch(packed_batch(setting, seed=103 + s))])[0] for s in range(3)]
    report = {"saved_after": 3, "losses_after_save": after}
    if torch.distributed.get_rank() == 0:
        (out / f"resume-save-tp{tp}.json").write_text(json.dumps(report))
        print(f"resume-save tp{tp}: {json.dumps(report)} (killing itself now)", flush=True)
    checkpoint.release_writer()  # its helper process would outlive the kill
    torch.distributed.barrier()
    os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no atexit: what a node failure leaves
    return report  # not reached


def part_resume_load(setting: Setting, out: Path, dry: bool, tp: int) -> dict:
    from hpc_instruct.train.megatron import checkpoint

    saved = json.loads((out / f"resume-save-tp{tp}.json").read_text())
    trainer = build(setting, tp, attentions(dry)[0], seed=99)  # another init: the load must overwrite it
    checkpoint.load_training_state(trainer.chunks, trainer.optimizer, _resume_dir(out, tp))
    losses = [trainer.train_step([model_batch(packed_batch(setting, seed=103 + s))])[0] for s in range(3)]
    diff = max(abs(a - b) for a, b in zip(losses, saved["losses_after_save"], strict=True))
    return {"losses": losses, "reference": saved["losses_after_save"], "diff": diff, "ok": diff <= setting.loss_tol}


def part_export(setting: Setting, out: Path, dry: bool, tp: int) -> dict:
    import torch

    from hpc_instruct.train.megatron import convert, parallel

    trainer = build(setting, tp, attentions(dry)[0])
    for s in range(max(20, setting.steps // 4)):  # long enough that the sequences are learnt
        trainer.train_step([model_batch(packed_batch(setting, seed=200 + s % 4))])
    trainer.sync_params()
    folder = out / f"export-hf-tp{tp}"
    dtype = getattr(torch, setting.dtype)
    convert.save_hf_folder(trainer.chunks, setting.shape, folder, dtype)
    vocab, new = setting.shape.vocab_size, 8
    prompts = [[(5 + 3 * i) % vocab for i in range(n)] for n in (6, 9, 13)]
    mine = []
    for prompt in prompts:  # Megatron greedy, one prompt at a time, no cache
        ids = list(prompt)
        for _ in range(new):
            batch = {"input_ids": torch.tensor([ids]), "labels": torch.full((1, len(ids)), -100)}
            (logits,) = parallel.forward_logits(trainer.model, [batch])
            ids.append(int(logits[0, -1, :vocab].argmax()))
        mine.append(ids[len(prompt) :])
    report: dict = {"megatron": mine}
    if torch.distributed.get_rank() == 0:
        from transformers import AutoModelForCausalLM

        device = "cuda" if torch.cuda.is_available() else "cpu"
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
        width = max(map(len, prompts))
        ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        with torch.no_grad():
            generated = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=False,
                                    pad_token_id=0)
        report["hf_batched"] = generated[:, width:].tolist()
        report["ok"] = report["hf_batched"] == mine
    return report


PARTS: dict[str, Callable[[Setting, Path, bool, int], dict]] = {
    "train": part_train,
    "parity": part_parity,
    "resume-save": part_resume_save,
    "resume-load": part_resume_load,
    "export": part_export,
}


# ------------------------------------------------------------------ summary
def summary(out: Path) -> str:
    """The RESULT line from the parts' reports (tp1; TP=2 reports, when present, must pass too)."""
    def read(name: str) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(out.glob(f"{name}-tp*.json"))]

    def verdict(name: str) -> str:
        reports = read(name)
        return "ok" if reports and all(r.get("ok") for r in reports) else "fail"

    train = next(iter(read("train")), {})
    best = train.get("te") or train.get("local") or {}  # the fastest path this GPU has
    mfu, tok_s = best.get("mfu"), best.get("tok_s")
    return (f"RESULT gpu_check mfu={'n/a' if mfu is None else f'{mfu:.3f}'} "
            f"tok_s={'n/a' if tok_s is None else f'{tok_s:.0f}'} parity={verdict('parity')} "
            f"resume={verdict('resume-load')} export={verdict('export')}")


def main(argv: list[str]) -> None:
    if argv[0] == "list":
        print(" ".join(PARTS))
        return
    out = Path(argv[1])
    if argv[0] == "summary":
        print(summary(out))
        return
    dry = "--dry-run" in argv
    tp = int(argv[argv.index("--tp") + 1]) if "--tp" in argv else 1
    import logging
    import warnings

    import torch

    logging.getLogger("megatron.core").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    from hpc_instruct.train.megatron import parallel

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    out.mkdir(parents=True, exist_ok=True)
    report = PARTS[argv[0]](Setting.pick(dry), out, dry, tp)
    if torch.distributed.get_rank() == 0:
        (out / f"{argv[0]}-tp{tp}.json").write_text(json.dumps(report, indent=1, default=str))
        print(f"{argv[0]} tp{tp}: {json.dumps(report, default=str)[:2000]}", flush=True)
    parallel.teardown()


if __name__ == "__main__":
    main(sys.argv[1:])
