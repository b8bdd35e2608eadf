"""Plain text for pretraining: a JSON-lines corpus tokenised, cut at max_length, packed, every token trained.

Covers: hpc_instruct.data.plain_text, hpc_instruct.data.packing (the `encoder` argument)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hpc_instruct.data.packing import PackingConfig
from hpc_instruct.data.plain_text import corpus_pieces, pack_corpus, read_corpus
from hpc_instruct.data.template import IGNORE_INDEX
from hpc_instruct.data.tokenizer import load_tokenizer
from hpc_instruct.train.batching import load_rows


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("builtin")


def write_corpus(path, texts):
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts))
    return path


def test_read_corpus_names_the_bad_line(tmp_path):
    good = write_corpus(tmp_path / "c.jsonl", ["第一篇。", "", "second document"])
    assert read_corpus(good) == ["第一篇。", "second document"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected a JSON object with a 'text' string"):
        read_corpus(bad)
    with pytest.raises(FileNotFoundError, match="pretraining corpus"):
        read_corpus(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="holds no text"):
        read_corpus(tmp_path / "empty.jsonl")


def test_long_documents_are_cut_not_dropped(tokenizer):
    text = "the water of the river " * 60
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    pieces = corpus_pieces([text, "short"], tokenizer, 32)
    assert all(2 <= len(p) <= 32 for p in pieces)
    first = pieces[:-1]  # the long document's pieces, in order ("short" is one piece)
    joined = sum(first, [])
    assert len(first) > 3 and joined == ids[: len(joined)] and len(joined) >= len(ids) - 1  # (a 1-token tail
    assert pieces[-1][-1] == tokenizer.eos_token_id  # has nothing to predict)   each document ends with EOS


def test_packed_corpus_trains_every_token_but_each_pieces_first(tokenizer, tmp_path):
    texts = [f"document {i}: " + "the sum of two and three is five. " * (1 + i % 7) for i in range(40)]
    corpus = write_corpus(tmp_path / "c.jsonl", texts)
    config = PackingConfig(max_length=64)
    packed = pack_corpus(corpus, tokenizer, config, tmp_path / "packed")
    pieces = corpus_pieces(texts, tokenizer, 64)
    assert packed.stats.num_samples == len(pieces) and packed.stats.num_dropped_untrained == 0
    assert packed.stats.num_tokens == sum(len(p) for p in pieces)
    assert packed.stats.num_trained_tokens == packed.stats.num_tokens - len(pieces)
    rows = load_rows(packed.path)
    for row in rows.rows:
        starts = row["cu_seqlens"][:-1]
        labels, ids = row["labels"].copy(), row["input_ids"]
        assert (labels[starts] == IGNORE_INDEX).all()
        labels[starts] = ids[starts]
        assert np.array_equal(labels, ids)  # no chat template, no mask: the text itself is the target
    again = pack_corpus(corpus, tokenizer, config, tmp_path / "packed")
    assert again.cache_hit and again.key == packed.key
    write_corpus(corpus, texts[:-1])
    assert pack_corpus(corpus, tokenizer, config, tmp_path / "packed").key != packed.key  # keyed by content
