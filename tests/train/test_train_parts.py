"""The training loop's parts, in process (no torch.distributed): batch plan, LR schedule, data order, rows
with and without packing, the seeded init, resume checkpoints, the step log, MFU peaks.

Run: `pytest tests/train/test_train_parts.py` (a few seconds after the shared study is prepared).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hpc_instruct.train.batching import StepData, epoch_order, load_rows  # noqa: E402
from hpc_instruct.train.presets import preset  # noqa: E402
from hpc_instruct.train.resume import ResumeStore, TrainerState, check_compatible  # noqa: E402
from hpc_instruct.train.schedule import BatchPlan, LRSchedule  # noqa: E402
from hpc_instruct.train.step_log import StepLog, Throughput, gpu_peak_tflops  # noqa: E402
from hpc_instruct.train.weights import SeededInit, VocabResized, hf_tensor_shapes  # noqa: E402


# ------------------------------------------------------------------------------------------ schedule
def test_accumulation_is_derived_and_a_bad_global_batch_says_what_to_set() -> None:
    assert BatchPlan(64, 8, 8).accumulation == 1  # DoIT on one node of 8 GPUs
    assert BatchPlan(64, 1, 8).accumulation == 8
    assert BatchPlan(4, 2, 1).steps_per_epoch(13) == 4  # ceil(13 / 4)
    with pytest.raises(
        ValueError, match=r"global_batch=60 is not a multiple of micro_batch x dp = 8 x 1 = 8.*64"
    ):
        BatchPlan(60, 8, 1)


def test_linear_decay_is_hf_get_linear_schedule_with_warmup() -> None:
    from transformers import get_linear_schedule_with_warmup

    total = 10
    ours = LRSchedule(1e-5, total)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-5)
    hf = get_linear_schedule_with_warmup(opt, num_warmup_steps=0, num_training_steps=total)
    expected = []
    for _ in range(total):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        hf.step()
    assert [ours.at(s) for s in range(total)] == pytest.approx(expected, rel=1e-12)


def test_warmup_cosine_constant_and_min_lr() -> None:
    warm = LRSchedule(1.0, 10, "linear", warmup_steps=4, min_lr=0.1)
    assert [warm.at(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])  # no step at lr 0
    assert warm.at(4) == pytest.approx(1.0) and warm.at(9) == pytest.approx(0.1 + 0.9 / 6)
    cosine = LRSchedule(1.0, 100, "cosine", min_lr=0.0)
    assert cosine.at(50) == pytest.approx(0.5) and cosine.at(99) < 0.001
    assert LRSchedule(0.3, 5, "constant", warmup_steps=1).at(4) == 0.3


def test_warmup_ratio_and_steps_come_from_the_recipe() -> None:
    from hpc_instruct.train.config import TrainingConfig

    assert LRSchedule.from_config(TrainingConfig(warmup_ratio=0.1), 95).warmup_steps == 10  # ceil(9.5)
    assert LRSchedule.from_config(TrainingConfig(warmup_steps=3, warmup_ratio=0.5), 95).warmup_steps == 3


# ------------------------------------------------------------------------------------------ data
def test_rows_with_and_without_packing_hold_the_same_tokens(prepared_study) -> None:
    packed = load_rows(prepared_study.packed, packing=True)
    samples = load_rows(prepared_study.packed, packing=False)
    stats = json.loads((prepared_study.packed / "packing.json").read_text())["stats"]
    assert len(packed) == stats["num_rows"] == 13 and len(samples) == stats["num_samples"] == 40
    assert packed.tokens == samples.tokens == stats["num_tokens"] and packed.samples == samples.samples == 40
    assert packed.targets.sum() == samples.targets.sum()  # each sample's first label is already -100
    for row in samples.rows:
        assert (row["segment_ids"] == 0).all() and (
            row["position_ids"] == np.arange(len(row["input_ids"]))
        ).all()


def test_every_epoch_is_a_seeded_permutation_split_across_dp_ranks(prepared_study) -> None:
    rows = load_rows(prepared_study.packed)
    assert (epoch_order(0, 1, 13) == epoch_order(0, 1, 13)).all()
    assert not (epoch_order(0, 0, 13) == epoch_order(0, 1, 13)).all()
    one = StepData(rows, BatchPlan(4, 2, 1), seed=0, pad_id=0, uniform_width=True)
    two = StepData(rows, BatchPlan(4, 1, 2), seed=0, pad_id=0, pad_multiple=8, uniform_width=True)
    seen = np.concatenate([one.global_rows(s) for s in range(4)])
    assert sorted(seen.tolist()) == list(range(13))  # each row once per epoch; the last step has 1 row
    for step in range(8):
        a = one.step(step, 0)
        b0, b1 = two.step(step, 0), two.step(step, 1)
        assert a.tokens == b0.tokens and a.target_tokens == b0.target_tokens  # global counts, every rank
        assert a.squares == b0.squares == rows.squares[one.global_rows(step)].sum()
        assert b0.width % 8 == 0 and all(mb["input_ids"].shape[1] == b0.width for mb in b0.micro_batches)
        ids_one = torch.cat([mb["input_ids"] for mb in a.micro_batches])
        ids_two = torch.cat([mb["input_ids"] for mb in (*b0.micro_batches, *b1.micro_batches)])
        assert torch.equal(ids_one, ids_two[:, : ids_one.shape[1]])  # same rows in the same slots
    short = one.step(3, 0)  # 13 = 3 x 4 + 1: three empty rows, no loss on them
    assert short.rows == 1 and (short.micro_batches[1]["labels"] == -100).all()


# ------------------------------------------------------------------------------------------ weights
def test_unpacked_micro_batches_are_padded_to_their_own_longest_row(prepared_study) -> None:
    rows = load_rows(prepared_study.packed, packing=False)
    own = StepData(rows, BatchPlan(8, 2, 1), seed=0, pad_id=0, pad_multiple=4)
    uniform = StepData(rows, BatchPlan(8, 2, 1), seed=0, pad_id=0, pad_multiple=4, uniform_width=True)
    saved = 0
    for step in range(own.steps_per_epoch):
        a, b = own.step(step, 0), uniform.step(step, 0)
        for mine, same in zip(a.micro_batches, b.micro_batches, strict=True):
            longest = int((mine["segment_ids"] >= 0).sum(1).max())
            assert mine["input_ids"].shape[1] == -(-longest // 4) * 4  # its own longest row, rounded up
            assert same["input_ids"].shape[1] == b.width  # pipeline parallel: the step's longest row
            width = mine["input_ids"].shape[1]
            for key in ("input_ids", "labels", "segment_ids"):
                assert torch.equal(mine[key], same[key][:, :width])  # the same rows, less padding
            assert (same["labels"][:, width:] == -100).all()
            saved += same["input_ids"].numel() - mine["input_ids"].numel()
        assert (a.tokens, a.target_tokens, a.squares) == (b.tokens, b.target_tokens, b.squares)
    assert saved > 0  # this data has rows of different lengths: some padding is not computed


def test_cu_seqlens_lay_the_stored_boundaries_end_to_end(prepared_study) -> None:
    packed = load_rows(prepared_study.packed, packing=True)
    data = StepData(packed, BatchPlan(4, 2, 1), seed=0, pad_id=0)
    for step in range(data.steps_per_epoch):
        for mb in data.step(step, 0).micro_batches:
            cu = mb["cu_seqlens"]
            rows, width = mb["input_ids"].shape
            assert cu.dtype == torch.int32 and cu[0] == 0 and cu[-1] == rows * width
            assert (cu[1:] > cu[:-1]).all()  # no empty sequence
            # Every boundary is a segment change of the flattened row-major segment ids (pads: a new one).
            seg = (mb["segment_ids"] + 1000 * torch.arange(rows)[:, None]).flatten()
            starts = torch.nonzero(seg[1:] != seg[:-1]).flatten() + 1
            assert cu[1:-1].tolist() == starts.tolist()
    short = [r for r in packed.rows if len(r["cu_seqlens"]) > 2][0]
    assert packed.squares[packed.rows.index(short)] == sum(
        int(b - a) ** 2 for a, b in zip(short["cu_seqlens"][:-1], short["cu_seqlens"][1:], strict=True)
    )


def test_seeded_init_is_per_tensor_and_matches_the_hf_model() -> None:
    from hpc_instruct.train.hf_backend import build_hf_model

    shape = preset("tiny-gqa", vocab_size=300)
    a, b = SeededInit(shape, 0), SeededInit(shape, 0)
    names = list(a)
    assert torch.equal(a[names[5]], b[names[5]]) and not torch.equal(
        a[names[5]], SeededInit(shape, 1)[names[5]]
    )
    assert a["model.layers.0.input_layernorm.weight"].eq(1).all()
    model = build_hf_model(shape, a, checkpointing=False)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == hf_tensor_shapes(shape)
    assert torch.equal(
        model.state_dict()["model.layers.1.mlp.up_proj.weight"], a["model.layers.1.mlp.up_proj.weight"]
    )


def test_new_token_rows_are_the_mean_row() -> None:
    weights = {"model.embed_tokens.weight": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "x": torch.ones(1)}
    grown = VocabResized(weights, 4)["model.embed_tokens.weight"]
    assert (
        grown.tolist() == [[1, 2], [3, 4], [2, 3], [2, 3]] and VocabResized(weights, 4)["x"] is weights["x"]
    )


# ------------------------------------------------------------------------------------------ resume
def _state(step: int, **changes) -> TrainerState:
    base = dict(
        trial_id="t1",
        step=step,
        total_steps=8,
        steps_per_epoch=4,
        global_batch=4,
        data_key="k",
        packing=True,
        backend="megatron",
        layout={"tp": 1, "dp": 1},
        seconds=1.0,
        tokens=10,
        attempt=1,
        reason="epoch",
    )
    return TrainerState(**{**base, **changes})


def test_only_marked_checkpoints_count_and_old_ones_are_pruned(tmp_path) -> None:
    store = ResumeStore(tmp_path / "ckpt", "t1", keep_last=2)
    assert store.newest() is None
    for step in (2, 4, 6):
        store.begin(step)
        store.commit(_state(step))
    assert [p.state.step for p in store.complete()] == [4, 6]
    store.begin(7)  # a save killed before its commit: not a checkpoint, removed by the next save
    (store.partial(7) / "backend" / "half").write_text("x")
    assert store.newest().state.step == 6
    other = ResumeStore(tmp_path / "ckpt", "t2", keep_last=2)  # markers name the trial
    assert other.newest() is None
    store.begin(8)
    assert not store.partial(7).exists()
    store.clear()
    assert not (tmp_path / "ckpt").exists()


def test_a_resume_refuses_other_data_or_batch_and_deepspeed_dp_changes() -> None:
    check_compatible(_state(4), _state(0, layout={"tp": 2, "dp": 1}))  # megatron: another layout is fine
    with pytest.raises(RuntimeError, match="data_key.*the packed mixture changed"):
        check_compatible(_state(4), _state(0, data_key="other"))
    with pytest.raises(RuntimeError, match="ZeRO-2 partitions"):
        check_compatible(_state(4, backend="deepspeed"), _state(0, backend="deepspeed", layout={"dp": 2}))


# ------------------------------------------------------------------------------------------ logging
def test_step_log_resumes_up_to_the_checkpoint(tmp_path) -> None:
    log = StepLog(tmp_path / "log.parquet")
    for step in range(1, 6):
        log.add(
            {
                "step": step,
                "epoch": step / 4,
                "loss": 1.0 / step,
                "lr": 0.1,
                "grad_norm": 1.0,
                "tokens": 10,
                "target_tokens": 5,
                "seconds": 0.5,
                "tokens_per_s": 20.0,
                "mfu": None,
                "attempt": 1,
                "time": 0.0,
            }
        )
    log.write()
    again = StepLog.resume(tmp_path / "log.parquet", upto_step=3)
    assert [r["step"] for r in again.rows] == [1, 2, 3] and again.rows[0]["mfu"] is None
    assert StepLog.resume(tmp_path / "log.parquet", upto_step=0).rows == []


def test_mfu_uses_the_gpu_table_or_the_recipe_peak(monkeypatch) -> None:
    assert gpu_peak_tflops(312.0) is None or torch.cuda.is_available()  # CPU: no MFU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    assert gpu_peak_tflops(312.0) == 989.0
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 PCIe")
    assert gpu_peak_tflops(312.0) == 756.0
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Some Future GPU")
    assert gpu_peak_tflops(500.0) == 500.0
    shape = preset("7b")
    mfu = Throughput(shape, 989.0, 8).mfu(tokens=8 * 3000 * 2048, squares=8 * 3000 * 2048**2, seconds=60.0)
    assert math.isclose(mfu, shape.flops_per_token(2048) * 8 * 3000 * 2048 / 60 / (8 * 989e12))


def test_model_flops_count_matmuls_and_each_samples_attention_by_hand() -> None:
    shape = preset("tiny")  # llama: 2 layers, hidden 64, 4 heads = 4 groups of 16, ffn 176, vocab 512
    # Per layer: q, o 2*64*64 = 8192; k, v 2*64*(4*16) = 8192; gate, up, down 3*64*176 = 33792 -> 50176.
    # x 2 layers = 100352, + output layer 512*64 = 32768 -> 133120. The input embedding (32768) is a lookup.
    assert shape.matmul_parameters == 133_120 == shape.num_parameters - 512 * 64 - 5 * 64  # - embedding, norms
    # One packed row of samples 100 + 28 and one row of 50: 178 tokens; squares 10000 + 784 + 2500 = 13284.
    # 6 * 133120 * 178 = 142,172,160; attention 6 * 2 layers * 64 * 13284 = 10,202,112.
    assert shape.training_flops(178, 13_284) == 152_374_272
    # The same tokens counted as rows of their own length (the old formula) would read higher:
    assert shape.training_flops(178, 128**2 + 50**2) > shape.training_flops(178, 13_284)
    # Tied embeddings: the one matrix is the output layer, counted once.
    assert replace(shape, tie_embeddings=True).matmul_parameters == shape.matmul_parameters
    mfu = Throughput(shape, 100.0, 2).mfu(tokens=178, squares=13_284, seconds=1e-6)
    assert math.isclose(mfu, 152_374_272 / 1e-6 / (2 * 100e12))
