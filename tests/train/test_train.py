"""The train task end to end, in torchrun subprocesses on the shared prepared study (conftest.py).

The reference is the real entry point (`python -m hpc_instruct.launch.entry train ...`, megatron TP=1, the
recipe as written). Every other run goes through `train_worker.py`: the same loop on the same data with another
backend or layout, into its own folder. Preemption is the real path: a rank sends itself SIGUSR2 after step N,
all ranks agree, save, and die by the re-raised signal; the next run resumes from that checkpoint.

    (e) entry point: trial.json + marker, exports + markers, log.parquet; a second run skips the task
    (a) megatron preempted after step 3 and resumed: the same losses and bit-identical weights
    (b)+(c) megatron TP=2 preempted after step 3 (signal on rank 1 only), resumed as PP=2, preempted after
        step 6, resumed as DP=2 (distributed optimizer throughout): the reference curve throughout
    (b) hf DDP (DP=2, a time-based checkpoint every step) preempted after step 6, resumed at DP=1; deepspeed
        ZeRO-2 (DP=2) preempted and resumed
    (d) the exported folders load with transformers and give the trained model's logits
Each run takes ~10-20 s on 2 cores; all are `slow`. Run: `pytest tests/train/test_train.py`.

Covers: hpc_instruct.stages.train, hpc_instruct.stages.prepare, hpc_instruct.stages.study_data,
hpc_instruct.train.backend, hpc_instruct.train.deepspeed_backend, hpc_instruct.train.export,
hpc_instruct.train.job, hpc_instruct.train.distributed, hpc_instruct.train.megatron.backend,
hpc_instruct.train.loop."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
from process_group import run_in_session

torch = pytest.importorskip("torch")
pytest.importorskip("megatron.core")

WORKER = Path(__file__).with_name("train_worker.py")
LOSS_TOL = 2e-5  # per-token loss across backends/layouts: fp32, different summation orders (measured ~1e-6)
LOGIT_TOL = 1e-4
STEPS = 8

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, timeout: int = 300, expect_ok: bool = True) -> str:
    """Run a command in its own session (on timeout the whole group is killed); return its output."""
    return run_in_session(cmd, cwd, timeout, threads=1, expect_ok=expect_ok)


def worker(study, out: Path, nproc: int, expect_ok: bool = True, **spec) -> str:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(WORKER),
        str(study.root),
        str(out),
        json.dumps(spec),
    ]
    return run(cmd, out, expect_ok=expect_ok)


def preempted(study, out: Path, nproc: int, at: int, rank: int = 0, **spec) -> None:
    """A run that a warning signal stops after step `at`: it must die by SIGUSR2 with a checkpoint at `at`."""
    output = worker(study, out, nproc, expect_ok=False, signal_at=at, signal_rank=rank, **spec)
    assert "SIGUSR2" in output, output[-3000:]
    assert (out / "trials" / study.trial / "checkpoints" / f"step-{at:08d}.done").is_file(), output[-3000:]
    assert not (out / "trials" / study.trial / "export" / "epoch-002.done").exists()


def losses(trial_dir: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(trial_dir / "log.parquet").to_pylist()


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


@pytest.fixture(scope="module")
def reference(prepared_study):
    """The trial through the real entry point (megatron TP=1), once; returns (trial dir, output)."""
    cmd = [
        sys.executable,
        "-m",
        "hpc_instruct.launch.entry",
        "train",
        str(prepared_study.root),
        prepared_study.trial,
    ]
    output = run(cmd, prepared_study.root)
    return prepared_study.root / "trials" / prepared_study.trial, output


def assert_curve(rows: list[dict], ref: list[dict], steps: range, tol: float = LOSS_TOL) -> None:
    for s in steps:
        assert rows[s - 1]["step"] == s
        assert rows[s - 1]["loss"] == pytest.approx(ref[s - 1]["loss"], abs=tol), (s, rows[s - 1], ref[s - 1])


def assert_export_matches_logits(folder: Path, saved: Path) -> float:
    """The exported HF folder loads (model + tokenizer) and reproduces the logits the backend computed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hpc_instruct.data.packing import block_causal_mask

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.eos_token_id == tokenizer.convert_tokens_to_ids("<eot>")
    data = torch.load(saved, weights_only=True)
    batch = data["batch"]
    with torch.no_grad():
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=block_causal_mask(batch["segment_ids"]),
            position_ids=batch["position_ids"],
        ).logits
    real = batch["segment_ids"] >= 0
    diff = float((logits - data["logits"])[real].abs().max())
    assert diff < LOGIT_TOL, diff
    return diff


def test_entry_point_writes_summary_exports_and_log_then_skips(reference, prepared_study) -> None:
    trial_dir, output = reference
    summary = json.loads((trial_dir / "trial.json").read_text())
    marker = json.loads((trial_dir / "trial.json.done").read_text())
    assert marker["id"] == prepared_study.trial
    assert summary["steps"] == STEPS and summary["steps_per_epoch"] == 4 and summary["epochs"] == 2
    assert summary["backend"] == "megatron" and summary["layout"]["accumulation"] == 2
    assert summary["batch"] == "global batch 4 = micro batch 2 x accumulation 2 x dp 1"
    assert summary["code"]["train_code_version"] and summary["code"]["libraries"]["megatron-core"]
    assert summary["tokens_per_s"] > 0 and summary["attempts"] == 1
    for epoch in (1, 2):
        folder = trial_dir / "export" / f"epoch-{epoch:03d}"
        assert json.loads((folder.parent / f"{folder.name}.done").read_text())["id"] == prepared_study.trial
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    rows = losses(trial_dir)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert (
        rows[-1]["loss"] == pytest.approx(summary["final_loss"]) and rows[0]["loss"] > rows[-1]["loss"] + 0.5
    )
    assert all(r["mfu"] is None for r in rows) and rows[0]["lr"] == pytest.approx(2e-3)  # CPU: no MFU
    assert not (trial_dir / "checkpoints").exists()  # resume checkpoints go once the trial is done
    assert "step 8/8" in output
    stamp = (trial_dir / "trial.json").stat().st_mtime
    started = time.monotonic()
    again = run(
        [
            sys.executable,
            "-m",
            "hpc_instruct.launch.entry",
            "train",
            str(prepared_study.root),
            prepared_study.trial,
        ],
        prepared_study.root,
    )
    assert f"skip train {prepared_study.trial}: done" in again
    assert (trial_dir / "trial.json").stat().st_mtime == stamp and time.monotonic() - started < 60


def test_megatron_preempted_and_resumed_equals_uninterrupted(reference, prepared_study, tmp_path) -> None:
    ref_dir, _ = reference
    preempted(prepared_study, tmp_path, 1, at=3)
    worker(prepared_study, tmp_path, 1, logits=True)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["attempts"] == 2 and result["resumed_from"] == 3
    ref = losses(ref_dir)
    rows = losses(tmp_path / "trials" / prepared_study.trial)
    assert [r["attempt"] for r in rows] == [1, 1, 1] + [2] * 5
    assert result["final_loss"] == pytest.approx(ref[-1]["loss"], abs=1e-6)
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref]  # same thread count: bit-identical
    mine = weights(tmp_path / "trials" / prepared_study.trial / "export" / "epoch-002")
    theirs = weights(ref_dir / "export" / "epoch-002")
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert_export_matches_logits(
        tmp_path / "trials" / prepared_study.trial / "export" / "epoch-002", tmp_path / "logits.pt"
    )


def test_megatron_tp2_then_pp2_then_dp2_stay_on_the_same_curve(reference, prepared_study, tmp_path) -> None:
    """One trial, three layouts: model and distributed-optimizer state reshard across TP, PP and DP."""
    ref = losses(reference[0])
    trial_dir = tmp_path / "trials" / prepared_study.trial
    preempted(prepared_study, tmp_path, 2, at=3, rank=1, tp=2)  # only rank 1 sees the signal
    assert_curve(losses(trial_dir), ref, range(1, 4))  # TP=2 = TP=1
    preempted(prepared_study, tmp_path, 2, at=6, tp=1, pp=2)
    assert_curve(losses(trial_dir), ref, range(1, 7))
    worker(prepared_study, tmp_path, 2, tp=1, pp=1, dp=2)
    rows = losses(trial_dir)
    assert_curve(rows, ref, range(1, STEPS + 1))
    assert [r["attempt"] for r in rows] == [1] * 3 + [2] * 3 + [3] * 2
    mine = weights(trial_dir / "export" / "epoch-002")
    theirs = weights(reference[0] / "export" / "epoch-002")
    assert max(float((mine[k] - theirs[k]).abs().max()) for k in mine) < 1e-4


def test_megatron_async_saves_every_step_then_preempted_and_resumed(reference, prepared_study, tmp_path) -> None:
    """Resume checkpoints written in the background after every step (DP=2, each rank its own optimizer shard),
    committed one step later; the preemption save is synchronous; the resumed run stays on the curve."""
    ref = losses(reference[0])
    trial_dir = tmp_path / "trials" / prepared_study.trial
    preempted(prepared_study, tmp_path, 2, at=5, dp=2, async_save=True, resume_every_minutes=1e-9)
    done = sorted(p.name for p in (trial_dir / "checkpoints").glob("step-*.done"))
    assert done == ["step-00000004.done", "step-00000005.done"]  # keep_last 2: the async step 4, then 5
    worker(prepared_study, tmp_path, 2, dp=2, async_save=True)
    rows = losses(trial_dir)
    assert_curve(rows, ref, range(1, STEPS + 1))
    assert [r["attempt"] for r in rows] == [1] * 5 + [2] * 3


def test_hf_ddp_matches_megatron_and_resumes_at_another_dp(reference, prepared_study, tmp_path) -> None:
    ref = losses(reference[0])
    trial_dir = tmp_path / "trials" / prepared_study.trial
    # resume_every_minutes ~0: a time-based checkpoint after every step, the oldest pruned (keep_last 2)
    preempted(prepared_study, tmp_path, 2, at=6, backend="hf", dp=2, resume_every_minutes=1e-9)
    kept = sorted(p.name for p in (trial_dir / "checkpoints").glob("step-*.done"))
    assert kept == ["step-00000005.done", "step-00000006.done"]
    reasons = [json.loads((trial_dir / "checkpoints" / k).read_text())["reason"] for k in kept]
    assert reasons == ["time", "preemption"]
    worker(prepared_study, tmp_path, 1, backend="hf", dp=1, logits=True)
    rows = losses(trial_dir)
    assert_curve(rows, ref, range(1, STEPS + 1))
    assert [r["attempt"] for r in rows] == [1] * 6 + [2] * 2
    assert_export_matches_logits(trial_dir / "export" / "epoch-002", tmp_path / "logits.pt")


@pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None,
    reason="deepspeed not installed: DS_BUILD_OPS=0 pip install --no-build-isolation deepspeed",
)
def test_deepspeed_zero2_matches_megatron_and_resumes(reference, prepared_study, tmp_path) -> None:
    ref = losses(reference[0])
    preempted(prepared_study, tmp_path, 2, at=3, rank=1, backend="deepspeed", dp=2)
    worker(prepared_study, tmp_path, 2, backend="deepspeed", dp=2)
    rows = losses(tmp_path / "trials" / prepared_study.trial)
    assert_curve(rows, ref, range(1, STEPS + 1))
    assert rows[-1]["attempt"] == 2
