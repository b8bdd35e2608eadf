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
