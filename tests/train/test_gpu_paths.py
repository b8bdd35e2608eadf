"""The GPU code paths of the Megatron backend that no GPU had run, exercised on CPU over gloo (issue 14).

fp16 with megatron-core's dynamic loss scaling, the resume checkpoint format (no gather, every rank writes its
own shard, TP/PP/DP resharding), optimizer state that TE's FusedAdam can hold, the sharded HF export. The
multi-process runs go through `gpu_paths_worker.py` under torchrun and are `slow` (~20-60 s each on 2 cores).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("megatron.core")

from process_group import run_in_session  # noqa: E402

WORKER = Path(__file__).with_name("gpu_paths_worker.py")


def run_worker(tmp_path: Path, nproc: int, scenario: str, *args: str, timeout: int = 300) -> dict:
    out = tmp_path / f"{scenario}-{nproc}.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(WORKER), scenario, str(out), *args]
    output = run_in_session(cmd, tmp_path, timeout, threads=1 if nproc > 1 else 2)
    if not out.exists():
        pytest.fail(f"{scenario} x{nproc} wrote no report:\n{output[-4000:]}")
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------------ fp16
def test_fp16_first_loss_scale_is_deepspeeds_on_a_mean_loss() -> None:
    from hpc_instruct.train.megatron.parallel import fp16_initial_loss_scale

    assert fp16_initial_loss_scale(2 * 2048) == 16.0  # DoIT 7B: micro 2 x 2048 tokens
    assert fp16_initial_loss_scale(32) == 2048.0
    assert fp16_initial_loss_scale(10**9) == 1.0  # the scaler's floor


def test_megatron_backend_refuses_fp16_on_cpu() -> None:
    from hpc_instruct.train.backend import AdamWSettings, BackendSettings
    from hpc_instruct.train.megatron.backend import MegatronBackend
    from hpc_instruct.train.presets import preset

    settings = BackendSettings("megatron", "cpu", "fp16", 1, 1, 1, 1, False, True, False, 1, 1,
                               AdamWSettings(1e-5, 0.0, (0.9, 0.95), 1e-8, 1.0), 0)
    with pytest.raises(ValueError, match="fp16 needs GPUs"):
        MegatronBackend(settings, preset("tiny"), {})


@pytest.mark.slow
def test_fp16_trains_with_dynamic_loss_scaling_and_skips_overflows(tmp_path: Path) -> None:
    """fp16 weights with fp32 main weights track fp32 training; an overflow skips the step and halves the scale."""
    r = run_worker(tmp_path, 1, "fp16", "tp1")
    assert r["param_dtype"] == "torch.float16" and r["initial_scale"] == 2048.0
    assert r["losses"] == pytest.approx(r["fp32_losses"], abs=2e-3)
    assert r["losses"][-1] < r["losses"][0] - 0.3
    assert r["overflow_norms"] == ["nan", "nan"] and r["skipped"] == 2 and r["weights_unchanged"]
    assert r["scale_after"] == 2.0**59  # 2**60 forced; halved once hysteresis (2 overflows) is used up


# ------------------------------------------------------------------------------------ resume checkpoints
def test_flat_range_boxes_cover_the_range_once_in_order() -> None:
    from hpc_instruct.train.megatron.optimizer_shards import flat_range_boxes

    shape = (3, 4, 5)
    for start, end in [(0, 60), (7, 53), (21, 23), (5, 40), (0, 1), (59, 60)]:
        seen = torch.zeros(shape, dtype=torch.int)
        flat = start
        for at, (offsets, sizes) in flat_range_boxes(shape, start, end):
            assert at == flat  # boxes are contiguous and in flat order
            seen[tuple(slice(o, o + s) for o, s in zip(offsets, sizes, strict=True))] += 1
            flat += int(torch.tensor(sizes).prod())
        expected = torch.zeros(60, dtype=torch.int)
        expected[start:end] = 1
        assert flat == end and torch.equal(seen.flatten(), expected)


PARAMS = 217_664  # the tiny LLAMA of megatron_worker, vocabulary padded to 256; 3 fp32 states of 4 bytes each


@pytest.mark.slow
def test_resume_state_is_written_by_every_rank_and_reshards_tp_to_dp_and_pp(tmp_path: Path) -> None:
    """Saved at TP=2 (torch AdamW), loaded at TP=1 x DP=2 and at PP=2: the next step's loss is unchanged."""
    r = run_worker(tmp_path, 2, "resume", "tp2-dist", str(tmp_path / "ck"), "sync", "torch", "tp1-dist", "pp2-dist")
    assert set(r["loads"]) == {"tp1-dist", "pp2-dist"}
    for name, load in r["loads"].items():
        assert load["loss"] == pytest.approx(r["reference"], abs=1e-6), name  # two steps after the load
    # every element once: TP-replicated norms are written by their main replica only
    assert 12 * PARAMS < sum(r["shard_bytes"]) < 1.03 * 12 * PARAMS  # + safetensors headers


@pytest.mark.slow
def test_async_resume_save_spreads_dp_shards_and_keeps_fused_adam_state_clean(tmp_path: Path) -> None:
    """DP=2 ranks each write half the optimizer state, in the background, while the next step runs; loaded at
    TP=2 and PP=2 into megatron-core's TE code path (a stand-in FusedAdam: TE cannot install without CUDA),
    whose per-parameter state must not gain a `step`."""
    r = run_worker(tmp_path, 2, "resume", "tp1-dist", str(tmp_path / "ck"), "async", "fused", "tp2-dist", "pp2-dist")
    a, b = r["shard_bytes"]
    assert a == pytest.approx(b, rel=0.02) and 12 * PARAMS < a + b < 1.03 * 12 * PARAMS
    for name, load in r["loads"].items():
        assert load["loss"] == pytest.approx(r["reference"], abs=1e-6), name  # two steps after the load
        assert load["state_keys"] == ["exp_avg", "exp_avg_sq"], name


# ------------------------------------------------------------------------------------------------ HF export
@pytest.mark.slow
@pytest.mark.parametrize("layout", ["tp2", "pp2"])
def test_export_writes_size_limited_shards_with_the_index_transformers_reads(tmp_path: Path, layout: str) -> None:
    r = run_worker(tmp_path, 2, "export", layout, str(tmp_path / "hf"))
    assert len(r["files"]) > 2 and r["files"] == r["indexed_files"]
    assert r["files"][0] == f"model-00001-of-{len(r['files']):05d}.safetensors"
    assert r["total_size"] == 4 * (217_664 - 2 * 6 * 64)  # fp32, without the 6 padded vocabulary rows x 2
    assert r["identical"] and r["leftovers"] == []
