"""The memory model against measurement: real megatron-core training on CPU (gloo), tiny shapes.

Static bytes (`buffers.static_bytes`) must equal, byte for byte on every one of 8 ranks (TP2 x PP2 x DP2),
the storages of the weights, DDP gradient buffers and optimizer state after one training step (bf16 with and
without the distributed optimizer, fp32 with interleaved stages; Llama with padded vocab and Qwen2 with tied
embeddings, whose shared-embedding bucket is split off). Activations (`memory.forward_activation_bytes`) must
be within ±20% of the bytes autograd saves in one forward of one micro-batch, counted with
`torch.autograd.graph.saved_tensors_hooks` (method: `hpc_instruct.train.scale.measure`), at three shapes and
each recompute mode. The worker runs under torchrun (`memory_worker.py`); both runs are `slow` (~60 s and ~45 s
on 2 cores). The buffer-layout unit tests are quick and torch-free.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hpc_instruct.train.presets import ModelShape
from hpc_instruct.train.scale.buffers import grad_buffer, shard_elements, static_bytes
from hpc_instruct.train.scale.memory import TrainSetup, forward_activation_bytes, layer_activation_bytes
from hpc_instruct.train.scale.ranks import LayoutKey, closed_form

WORKER = Path(__file__).with_name("memory_worker.py")
STATIC_LAYOUTS = ["tp2-pp2-bf16-dist", "tp2-pp2-bf16", "tp2-pp2-vpp2-dist"]
ACTIVATION_SPECS = [f"{shape}:{rest}:{mode}" for shape, rest in
                    (("llama-gqa", "256:2"), ("llama-mha", "128:2"), ("qwen2", "128:4"))
                    for mode in ("none", "selective", "full")]
ACT_TOL = 0.20


def run_memory_worker(tmp_path: Path, nproc: int, scenario: str, *args: str, timeout: int = 240) -> list[dict]:
    """One memory_worker scenario under torchrun; rank 0's JSON report."""
    from process_group import run_in_session

    out = tmp_path / f"{scenario}.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(WORKER), scenario, str(out), *args]
    output = run_in_session(cmd, tmp_path, timeout, threads=1 if nproc > 1 else 2)
    if not out.exists():
        pytest.fail(f"{scenario} wrote no report:\n{output[-4000:]}")
    return json.loads(out.read_text())


def modelled_static(entry: dict) -> tuple[int, int, int]:
    """The model's (weights, grads, optimizer) bytes for one measured rank (its shape as the worker built it)."""
    parts = entry["layout"].split("-")
    number = {p.rstrip("0123456789"): int(p[len(p.rstrip("0123456789")):]) for p in parts if p[-1].isdigit()}
    key = LayoutKey(ModelShape(**entry["shape_def"]), number.get("tp", 1), number.get("pp", 1), number.get("vpp", 1))
    (rank,) = [r for r in closed_form(key) if (r.pp_rank, r.tp_rank) == (entry["pp_rank"], entry["tp_rank"])]
    s = static_bytes(rank.tensors, rank.shared, entry["dp"], 2 if "bf16" in parts else 4, "dist" in parts)
    mine = s[entry["dp_rank"]]
    return mine.weights, mine.grads, mine.optimizer


def modelled_activations(entry: dict) -> tuple[int, int]:
    """The model's (one layer, whole forward) saved bytes for one measured spec."""
    shape = ModelShape(**entry["shape_def"])
    setup = TrainSetup(LayoutKey(shape), micro_batch=entry["micro"], seq_len=entry["seq"], precision="bf16",
                       recompute=entry["recompute"])
    return layer_activation_bytes(setup), forward_activation_bytes(setup, shape.num_layers)


# ------------------------------------------------------------------ megatron's buffer layout, by hand
def test_distributed_optimizer_pads_every_parameter_to_64_and_buckets_to_lcm_dp_128() -> None:
    # Placed in reverse: 64 at [0, 64), 10 at [64, 74), 100 starts at 128 (not 74), ends at 228 -> 256.
    buf = grad_buffer((100, 10, 64), -1, 2, True)
    assert buf.ranges == ((0, 64, 0), (64, 74, 0), (128, 228, 0)) and buf.numel == 256 and buf.elements == 174
    assert shard_elements(buf, 2) == (64 + 10, 100)  # rank 0: [0, 128), rank 1: [128, 256)
    assert grad_buffer((100, 10, 64), -1, 2, False).numel == 174  # no distributed optimizer: packed, no padding
    assert grad_buffer((100, 10, 64), -1, 3, True).numel == 384  # lcm(3, 128)


def test_a_shared_embedding_gets_a_bucket_of_its_own() -> None:
    buf = grad_buffer((100, 10, 64), 0, 2, True)  # the first parameter (the embedding) is shared
    assert buf.buckets == ((0, 128), (128, 256)) and buf.ranges[-1] == (128, 228, 1)
    assert shard_elements(buf, 2) == (64 + 64, 10 + 36)  # each bucket is split over the DP ranks


def test_static_bytes_by_precision_and_optimizer() -> None:
    (rank,) = closed_form(LayoutKey(ModelShape("llama", 2, 64, 4, 2, 176, 250)))
    n = rank.params
    plain = static_bytes(rank.tensors, rank.shared, 2, 2, False)
    assert plain[0].weights == 2 * n and plain[0].grads == 4 * n and plain[0].optimizer == 12 * n
    sharded = static_bytes(rank.tensors, rank.shared, 2, 2, True)
    assert sum(s.optimizer for s in sharded) == 12 * n  # every element on exactly one DP rank
    assert sharded[0].grads == 2 * sharded[0].weights > 4 * n  # padded buffers, weights live in DDP's
    assert static_bytes(rank.tensors, rank.shared, 1, 4, False)[0].optimizer == 8 * n  # fp32: moments only


# ------------------------------------------------------------------ real megatron processes
@pytest.mark.slow
def test_static_bytes_equal_a_real_step_on_every_rank_of_tp2_pp2_dp2(tmp_path: Path) -> None:
    pytest.importorskip("megatron.core")
    from memory_worker import STATIC_SHAPES

    report = run_memory_worker(tmp_path, 8, "static", *STATIC_LAYOUTS)
    assert len(report) == 8 * len(STATIC_LAYOUTS) * len(STATIC_SHAPES)
    coords = {(e["layout"], e["shape"], e["pp_rank"], e["tp_rank"], e["dp_rank"]) for e in report}
    assert len(coords) == len(report)  # every rank of every run, once
    for e in report:
        assert (e["weights"], e["grads"], e["optimizer"]) == modelled_static(e), e
    # The shards differ between DP ranks: the model has to know which rank it is.
    last = {e["dp_rank"]: e["optimizer"] for e in report
            if (e["layout"], e["shape"], e["pp_rank"], e["tp_rank"]) == ("tp2-pp2-bf16-dist", "llama", 1, 0)}
    assert last[0] != last[1]


@pytest.mark.slow
def test_activations_within_20_percent_of_the_saved_tensors_of_a_real_forward(tmp_path: Path) -> None:
    pytest.importorskip("megatron.core")
    report = run_memory_worker(tmp_path, 1, "activations", *ACTIVATION_SPECS)
    assert [e["spec"] for e in report] == ACTIVATION_SPECS
    for e in report:
        layer, total = modelled_activations(e)
        measured = sum(e["regions"].values())
        assert abs(total / measured - 1) <= ACT_TOL, (e["spec"], total, measured)
        assert abs(layer / e["regions"]["layer1"] - 1) <= ACT_TOL, (e["spec"], layer, e["regions"])
    by = {e["spec"]: sum(e["regions"].values()) for e in report}
    assert by["llama-gqa:256:2:none"] > by["llama-gqa:256:2:selective"] > by["llama-gqa:256:2:full"]
