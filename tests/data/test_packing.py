"""Tokenising and packing: whole samples per row, no attention or loss across samples, cache, determinism."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hpc_instruct.data.bin_packing import pack_bins
from hpc_instruct.data.packing import (
    MANIFEST,
    PackingConfig,
    block_causal_mask,
    collate_packed,
    pack_mixture,
)
from hpc_instruct.data.template import IGNORE_INDEX, ChatTemplate, TemplateConfig
from hpc_instruct.data.tokenizer import load_tokenizer

ZH = "细胞是生命的基本单位。光合作用把二氧化碳和水转化成有机物。唐朝经济繁荣，文化发达。请写一首关于秋天的小诗。"
EN = "The cell is the basic unit of life. Solve for x: 2x + 3 = 11, so x = 4. Write a short story about a robot."


def make_records(n: int, seed: int = 0) -> list[dict]:
    """DoIT-format records (messages lists), Chinese and English, one to three turns, lengths spread widely."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        source = ZH if i % 2 else EN
        messages = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            q = source[: rng.randint(5, 40)]
            a = (source * 8)[: int(rng.lognormvariate(3.5, 0.8))] or "好"
            messages += [{"role": "user", "content": f"问题 {i}: {q}"}, {"role": "assistant", "content": a}]
        records.append({"messages": messages, "idx": i, "type": "biology", "question_format": 0})
    return records


RECORDS = make_records(120)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return load_tokenizer("builtin", cache_dir=tmp_path_factory.mktemp("tok"))


def pack(tok, cache_dir, records=RECORDS, template=None, **config):
    return pack_mixture(records, tok, template, PackingConfig(**{"max_length": 256, **config}), cache_dir)


# ---------------------------------------------------------------------------------------- bin packing
@settings(max_examples=80, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 64), max_size=200),
    strategy=st.sampled_from(["ffd", "greedy"]),
    seed=st.integers(0, 3),
)
def test_bins_place_every_sample_once_within_budget(lengths, strategy, seed):
    bins = pack_bins(lengths, 64, strategy, seed)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 64 for b in bins)
    assert bins == pack_bins(lengths, 64, strategy, seed)  # deterministic for a seed


def test_ffd_is_near_the_lower_bound_and_beats_greedy():
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(5.5, 0.8, 3000).astype(int), 1, 2048).tolist()
    ffd, greedy = pack_bins(lengths, 2048, "ffd"), pack_bins(lengths, 2048, "greedy")
    lower_bound = -(-sum(lengths) // 2048)
    assert len(ffd) <= lower_bound * 1.02 < len(greedy)
    with pytest.raises(ValueError, match="truncate or drop"):
        pack_bins([65], 64)


# --------------------------------------------------------------------------------------- packed rows
def test_rows_hold_whole_samples_with_restarting_positions(tok, tmp_path):
    packed = pack(tok, tmp_path)
    chat = ChatTemplate(tok)
    seen = []
    for row in packed.dataset:
        cu, seg = row["cu_seqlens"], row["segment_ids"]
        assert cu[0] == 0 and cu[-1] == len(row["input_ids"]) == row["num_tokens"] <= 256
        assert len(cu) == len(row["sample_indices"]) + 1
        for k, (a, b) in enumerate(zip(cu[:-1], cu[1:], strict=True)):
            alone = chat.encode(RECORDS[row["sample_indices"][k]])
            assert seg[a:b] == [k] * (b - a)
            assert row["position_ids"][a:b] == list(range(b - a))
            assert row["input_ids"][a:b] == alone.input_ids[:256]
            assert row["labels"][a] == IGNORE_INDEX  # never predicted from the previous sample
            assert row["labels"][a + 1 : b] == alone.labels[1:256]
        seen += row["sample_indices"]
    assert sorted(seen) == list(range(len(RECORDS)))  # every sample exactly once
    stats = packed.stats
    assert stats.num_rows == len(packed.dataset) and stats.num_samples == len(RECORDS)
    assert stats.num_tokens == sum(packed.dataset["num_tokens"])
    assert stats.real_token_fraction > 0.9


def test_overlong_samples_are_truncated_or_dropped(tok, tmp_path):
    lengths = [len(e.input_ids) for e in ChatTemplate(tok).encode_batch(RECORDS)]
    overlong = sum(n > 64 for n in lengths)
    assert 0 < overlong < len(RECORDS)
    cut = pack(tok, tmp_path / "cut", max_length=64, overlong="truncate").stats
    dropped = pack(tok, tmp_path / "drop", max_length=64, overlong="drop").stats
    assert dropped.num_dropped_overlong == overlong and dropped.num_truncated == 0
    # A truncated sample whose answer was cut off entirely has nothing to learn: it is dropped, not packed.
    assert cut.num_truncated + cut.num_dropped_untrained == overlong and cut.num_dropped_overlong == 0
    assert cut.num_trained_tokens > dropped.num_trained_tokens


def test_samples_without_assistant_turn_are_dropped(tok, tmp_path):
    records = RECORDS[:5] + [{"messages": [{"role": "user", "content": "只有问题"}]}]
    stats = pack(tok, tmp_path, records=records).stats
    assert stats.num_dropped_untrained == 1 and stats.num_samples == 6


def test_nothing_to_pack_is_a_clear_error(tok, tmp_path):
    with pytest.raises(ValueError, match="no samples"):
        pack(tok, tmp_path, records=[])
    with pytest.raises(ValueError, match="3 had no assistant token"):
        pack(tok, tmp_path, records=[[("user", "只有问题")]] * 3)
    assert not list(tmp_path.iterdir())  # nothing half-written


# ------------------------------------------------------------------------------------------ no leaks
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_rows_never_attend_across_samples(tok, tmp_path, attention):
    """A tiny Llama on packed rows gives the same logits and loss per sample as on each sample alone."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        attn_implementation=attention,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    packed = pack(tok, tmp_path).dataset
    rows = [r for r in packed if len(r["sample_indices"]) >= 3][:2]
    assert rows, "the corpus should give rows with several samples"
    batch = collate_packed(rows, pad_id=tok.pad_token_id)
    mask = block_causal_mask(batch["segment_ids"], dtype=None if attention == "sdpa" else torch.float32)
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"])
        leaky = model(input_ids=batch["input_ids"]).logits  # plain causal attention over the whole row
    packed_loss = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), reduction="sum"
    )
    alone_loss = torch.zeros(())
    leaked = False
    for i, row in enumerate(rows):
        cu = row["cu_seqlens"]
        for a, b in zip(cu[:-1], cu[1:], strict=True):
            ids = batch["input_ids"][i : i + 1, a:b]
            with torch.no_grad():
                alone = model(input_ids=ids).logits[0]
            torch.testing.assert_close(out.logits[i, a:b], alone, atol=1e-5, rtol=1e-5)
            leaked |= a > 0 and not torch.allclose(leaky[i, a:b], alone, atol=1e-5)
            labels = batch["labels"][i, a:b]
            alone_loss += torch.nn.functional.cross_entropy(alone[:-1], labels[1:], reduction="sum")
    torch.testing.assert_close(packed_loss, alone_loss, atol=1e-3, rtol=1e-5)
    assert leaked, "negative control: without the block mask later samples must see earlier ones"


def test_block_causal_mask_is_block_diagonal_and_hides_padding():
    mask = block_causal_mask(torch.tensor([0, 0, 1, 1, 1, -1]))[0, 0].int().tolist()
    assert mask == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],  # a pad sees only itself: no all-masked softmax row
    ]
    additive = block_causal_mask(torch.tensor([[0, 1]]), dtype=torch.float32)[0, 0]
    assert additive[1, 1] == 0 and additive[1, 0] == torch.finfo(torch.float32).min


def test_collate_pads_rows(tok, tmp_path):
    rows = list(pack(tok, tmp_path).dataset.select(range(2)))
    batch = collate_packed(rows, pad_id=tok.pad_token_id, pad_to=300)
    assert {k: tuple(v.shape) for k, v in batch.items()} == {k: (2, 300) for k in batch}
    n = len(rows[0]["input_ids"])
    assert batch["labels"][0, n:].eq(IGNORE_INDEX).all() and batch["segment_ids"][0, n:].eq(-1).all()


# ------------------------------------------------------------------------------- cache, determinism
def test_cache_hit_and_miss(tok, tmp_path):
    first = pack(tok, tmp_path)
    assert not first.cache_hit
    again = pack(tok, tmp_path, num_proc=2, batch_size=7)  # workers and batching do not change rows
    assert again.cache_hit and again.path == first.path
    assert again.dataset["input_ids"] == first.dataset["input_ids"]
    misses = [
        pack(tok, tmp_path, max_length=512),
        pack(tok, tmp_path, seed=1),
        pack(tok, tmp_path, strategy="greedy"),
        pack(tok, tmp_path, template=TemplateConfig(train_on="last")),
        pack(tok, tmp_path, records=RECORDS[:-1]),
    ]
    assert not any(m.cache_hit for m in misses)
    assert len({first.path, *(m.path for m in misses)}) == 6
    # Another tokenizer (here: one more token) is another key, even for the same files on disk.
    other = load_tokenizer("builtin", cache_dir=tmp_path / "t2")
    other.add_tokens(["<extra>"], special_tokens=True)
    assert not pack(other, tmp_path).cache_hit
    # A caller-given mixture hash (the manifest's) is what keys the mixture.
    by_manifest = pack_mixture(RECORDS, tok, None, PackingConfig(max_length=256), tmp_path, mixture_hash="m1")
    assert not by_manifest.cache_hit
    assert json.loads((by_manifest.path / MANIFEST).read_text())["parts"]["mixture"] == "m1"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
    assert len(first.path.name) == len("packed-") + 24


def test_cache_hits_across_processes(tok, tmp_path):
    """A prepare stage packs in one process; the train stage, in another, must find the same key."""
    code = (
        "import json, sys; from hpc_instruct.data.packing import PackingConfig, pack_mixture; "
        "from hpc_instruct.data.tokenizer import load_tokenizer; "
        f"tok = load_tokenizer('builtin', cache_dir={str(tmp_path / 'tok')!r}); "
        "records = json.loads(sys.stdin.read()); "
        f"pack_mixture(records, tok, None, PackingConfig(max_length=256), {str(tmp_path / 'packed')!r})"
    )
    env = {**os.environ, "PYTHONHASHSEED": "7"}
    subprocess.run([sys.executable, "-c", code], input=json.dumps(RECORDS), text=True, check=True, env=env)
    assert pack(tok, tmp_path / "packed").cache_hit


def test_damaged_cache_folder_is_rebuilt(tok, tmp_path):
    first = pack(tok, tmp_path)
    (first.path / MANIFEST).unlink()
    again = pack(tok, tmp_path)
    assert not again.cache_hit and (again.path / MANIFEST).is_file()
    assert again.dataset["input_ids"] == first.dataset["input_ids"]


def test_packing_is_deterministic_and_seeded(tok, tmp_path):
    a, b = pack(tok, tmp_path / "a"), pack(tok, tmp_path / "b", num_proc=2)
    assert a.dataset.data.table.equals(b.dataset.data.table)
    sha = [json.loads((p.path / MANIFEST).read_text())["data_sha256"] for p in (a, b)]
    assert sha[0] == sha[1]
    c = pack(tok, tmp_path / "c", seed=1)
    assert c.dataset["sample_indices"] != a.dataset["sample_indices"]
    assert sorted(sum(c.dataset["sample_indices"], [])) == sorted(sum(a.dataset["sample_indices"], []))


def test_dataset_input_matches_list_input(tok, tmp_path):
    from datasets import Dataset

    from_list = pack(tok, tmp_path / "list")
    from_dataset = pack(tok, tmp_path / "ds", records=Dataset.from_list(RECORDS))
    assert from_dataset.key == from_list.key
    assert from_dataset.dataset.data.table.equals(from_list.dataset.data.table)


def test_benchmark_prints_its_result_line_last(tmp_path):
    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_packing.py"
    env = {**os.environ, "HPC_INSTRUCT_CACHE": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, str(bench), "--samples", "300", "--repeats", "1"],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    last = out.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"RESULT bench_packing real_token_fraction=0\.9[7-9]\d* baseline_real_token_fraction=0\.\d+ speedup=\d+\.\d+",
        last,
    ), last
