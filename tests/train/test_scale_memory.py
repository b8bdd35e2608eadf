"""The memory model, GPU presets, the cache and the fix search (hpc_instruct.train.scale); torch-free."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from hpc_instruct.train.presets import PRESETS
from hpc_instruct.train.scale import cache
from hpc_instruct.train.scale.fit import check_train, smallest_fix
from hpc_instruct.train.scale.gpu import GPU_PRESETS, gpu_preset
from hpc_instruct.train.scale.memory import GIB, TrainSetup, gpu_train, in_flight, layer_activation_bytes
from hpc_instruct.train.scale.ranks import LayoutKey, closed_form

ROOT = Path(__file__).resolve().parents[2]


def setup(name="7b", tp=1, pp=1, vpp=1, **kw) -> TrainSetup:
    return TrainSetup(LayoutKey(PRESETS[name], tp, pp, vpp), **({"global_batch": 64} | kw))


def test_gpu_presets_and_a_misspelt_name():
    assert gpu_preset("h100-80g").peak_tflops("bf16") == 989.0 and GPU_PRESETS["a100-40g"].memory_gib == 40.0
    with pytest.raises(KeyError, match="h100-80g"):
        gpu_preset("h100-80")


def test_activations_shrink_with_recompute_and_sequence_parallelism():
    none, sel, full = (layer_activation_bytes(setup(tp=4), r) for r in ("none", "selective", "full"))
    assert none > sel > full
    s = setup(tp=4, seq_len=2048, micro_batch=1)
    h = PRESETS["7b"].hidden_size
    assert full == 2 * 2048 * h  # the layer input in bf16 (Korthikanti's 2sbh)
    assert layer_activation_bytes(dataclasses.replace(s, sequence_parallel=True), "full") == full // 4
    # The attention scores grow with s^2: doubling the sequence more than doubles the no-recompute figure.
    assert layer_activation_bytes(setup(seq_len=4096), "none") > 2 * layer_activation_bytes(setup(seq_len=2048), "none")


def test_pipeline_in_flight_counts_follow_the_schedules():
    s = setup("13b", pp=4, dp=1, micro_batch=1, global_batch=64)
    assert [in_flight(s, i) for i in range(4)] == [4, 3, 2, 1]
    v = setup("13b", pp=4, vpp=5, dp=1, micro_batch=1)
    # Korthikanti et al.: the first rank of an interleaved schedule holds L(1 + (p-1)/(pv)) layers.
    layers = in_flight(v, 0) * 40 // (4 * 5)
    assert layers == 40 * (1 + 3 / 20)
    assert in_flight(setup("13b", pp=4, micro_batch=1, global_batch=2, dp=1), 0) == 2  # fewer micro-batches


def test_distributed_optimizer_shards_adam_over_data_parallel_ranks():
    (rank,) = closed_form(LayoutKey(PRESETS["7b"]))
    parts = {k: dict(gpu_train(setup(dp=8, distributed_optimizer=d), rank).parts) for k, d in (("d", True), ("r", False))}
    assert parts["r"]["optimizer"] == 12 * rank.params
    assert parts["d"]["optimizer"] == pytest.approx(12 * rank.params / 8, rel=1e-6)
    assert parts["d"]["weights"] == 2 * rank.params and parts["d"]["grads"] >= 4 * rank.params


def test_70b_at_tp1_does_not_fit_and_the_fix_does(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCI_SCALE_CACHE", str(tmp_path))  # the fix is confirmed by a simulation
    s = setup("70b", dp=8, micro_batch=1)
    gpu = GPU_PRESETS["a100-80g"]
    fit = check_train(s, gpu, 4096, closed_form)
    assert not fit.gpu_ok and fit.fullest[1].gib > 400
    fix = smallest_fix(s, gpu, 4096)
    assert fix is not None and fix.fit.gpu_ok and fix.fit.fullest[1].gib <= 80
    changed = dict(fix.changes)
    assert changed["tp"] * changed.get("pp", 1) > 1 and fix.gpus <= 64


def test_host_memory_counts_checkpoint_transients_per_node():
    (rank,) = closed_form(LayoutKey(PRESETS["7b"]))
    fit = check_train(setup(dp=8), GPU_PRESETS["a100-80g"], 480, closed_form)
    # No gather: each of the 8 ranks stages only its own 1/8 of the 12 B/param fp32 state, where the gathering
    # format needed 8 x 12 B/param (~720 GiB) on the node.
    assert 12 * rank.params <= fit.host.total < 8 * 12 * rank.params / 3 and fit.host_ok


def test_cache_stores_by_content_hash_and_hits_without_torch(tmp_path):
    env = {"HPCI_SCALE_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)}
    code = ("import sys\n"
            "from hpc_instruct.train.presets import PRESETS\n"
            "from hpc_instruct.train.scale.cache import rank_params\n"
            "from hpc_instruct.train.scale.ranks import LayoutKey\n"
            "r = rank_params(LayoutKey(PRESETS['mini'], 2, 2))\n"
            "print(sum(x.params for x in r), 'torch' in sys.modules)\n")
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert list(tmp_path.glob("*.json")) == [tmp_path / f"{LayoutKey(PRESETS['mini'], 2, 2).digest()}.json"]
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    total = sum(r.params for r in closed_form(LayoutKey(PRESETS["mini"], 2, 2)))
    assert first.stdout.split() == [str(total), "True"] and again.stdout.split() == [str(total), "False"]


def test_a_changed_key_is_a_different_entry():
    a, b = LayoutKey(PRESETS["7b"], 2), LayoutKey(PRESETS["7b"], 2, vocab_multiple=64)
    assert a.digest() != b.digest() and a.digest() == LayoutKey(PRESETS["7b"], 2).digest()


def test_an_unreadable_cache_entry_is_a_miss(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCI_SCALE_CACHE", str(tmp_path))
    key = LayoutKey(PRESETS["tiny"], 1, 1, 1, 7)
    (tmp_path / f"{key.digest()}.json").write_text("{not json")
    assert cache.lookup(key) is None


def test_breakdown_reads_in_gib():
    (rank,) = closed_form(LayoutKey(PRESETS["7b"]))
    b = gpu_train(setup(dp=8), rank)
    assert b.describe().startswith(f"{b.total / GIB:.1f} GiB = weights ")
