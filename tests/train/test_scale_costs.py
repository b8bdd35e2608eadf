"""FLOPs per token from the per-rank shapes and resume-checkpoint save time (hpc_instruct.train.scale.costs)."""

from __future__ import annotations

import dataclasses

import pytest

from hpc_instruct.train.presets import PRESETS
from hpc_instruct.train.scale.costs import checkpoint_save, train_flops_per_token, unique_params
from hpc_instruct.train.scale.ranks import LayoutKey, closed_form


def flops(name: str, tp: int = 1, pp: int = 1, seq: int = 2048, **shape_changes) -> float:
    key = LayoutKey(dataclasses.replace(PRESETS[name], **shape_changes), tp, pp)
    return train_flops_per_token(key, closed_form(key), seq)


def test_flops_count_the_matmuls_of_the_padded_model_by_hand():
    s = PRESETS["7b"]  # 49953 -> 50048 rows of the output layer
    h, f, layers = s.hidden_size, s.ffn_hidden_size, s.num_layers
    matmul = layers * (4 * h * h + 3 * h * f) + 50048 * h  # q, k, v, o; gate, up, down; padded output layer
    assert flops("7b") == 3 * (2 * matmul + 2 * 2048 * h * layers)  # causal attention: half the s x s scores


def test_flops_do_not_depend_on_the_layout():
    assert flops("70b", 8, 4) == flops("70b") == flops("70b", 2, 8)
    assert flops("qwen2-1.5b", 2, 1) == flops("qwen2-1.5b", 1, 2)  # tied: the output matmul counted once


def test_padding_the_vocabulary_costs_flops():
    # 49953 rows is not a multiple of 128: the padded rows are computed too.
    assert flops("7b") > flops("7b", vocab_size=49920) and flops("7b", vocab_size=50048) == flops("7b")


def test_checkpoint_bytes_and_save_time_against_the_warning():
    key = LayoutKey(PRESETS["33b"], 4, 2)
    ranks = closed_form(key)
    n = unique_params(key, ranks)
    assert n == pytest.approx(PRESETS["33b"].num_parameters, rel=1e-4) and n > PRESETS["33b"].num_parameters
    save = checkpoint_save(key, ranks, 2, fs_gbps=2.0, warning_s=90)
    assert save.bytes == 14 * n  # bf16 weights + fp32 main params + two fp32 Adam moments
    assert save.seconds == pytest.approx(14 * n / 2e9) and not save.fits_warning
    assert save.needed_warning_s == int(1.5 * save.seconds + 60)  # validate's rule: 1.5x plus the step in flight
    fast = checkpoint_save(key, ranks, 2, fs_gbps=40.0, warning_s=90)  # ~12 s -> needs 77 s of warning
    assert fast.fits_warning and "within the 90 s" in fast.describe()
    parallel = checkpoint_save(key, ranks, 2, fs_gbps=2.0, warning_s=90, node_seconds=10.0)
    assert parallel.seconds == 10.0 and parallel.fits_warning  # nodes writing their own shards at once
    assert checkpoint_save(key, ranks, 4).bytes == 12 * n  # fp32: the weights are the main params
