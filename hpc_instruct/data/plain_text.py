"""Plain text for pretraining a base model: a JSON-lines corpus tokenised, cut into pieces and packed, every token
trained (no chat template, no loss mask).

    corpus.jsonl  {"text": "..."} per line (one document)
    documents  -> token ids (the study tokenizer, no special tokens) + the end-of-sequence token, so the model
                  learns where a document ends
    pieces     -> documents longer than max_length cut into max_length pieces (nothing is dropped)
    rows       -> the pieces packed like a mixture (`packing.pack_mixture`, first-fit decreasing, sample
                  boundaries kept), labels = input ids; a piece's first token is never a target

The packed folder has the layout the training loop reads (`hpc_instruct.train.batching.load_rows`), cached by
(corpus content, tokenizer, this format, packing settings).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hpc_instruct.data.packing import PackedData, PackingConfig, pack_mixture
from hpc_instruct.data.template import EncodedSample

PLAIN_TEXT_VERSION = "plain-text-1"


class PlainTextEncoder:
    """The packer's encoder for pieces that are already token ids: labels are the ids (every token trained)."""

    template_hash = hashlib.sha256(PLAIN_TEXT_VERSION.encode()).hexdigest()

    def encode_batch(self, pieces: Iterable[Sequence[int]]) -> list[EncodedSample]:
        out = []
        for piece in pieces:
            ids = [int(t) for t in piece]
            out.append(EncodedSample(ids, list(ids), len(ids)))
        return out


def read_corpus(path: str | Path) -> list[str]:
    """The documents of a JSON-lines corpus (`{"text": ...}` per line); a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretraining corpus {path} not found (JSON lines, one {{\"text\": ...}} per line)")
    texts = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: expected a JSON object with a 'text' string ({exc})") from exc
            if not isinstance(text, str):
                raise ValueError(f"{path}:{number}: 'text' must be a string, got {type(text).__name__}")
            if text.strip():
                texts.append(text)
    if not texts:
        raise ValueError(f"pretraining corpus {path} holds no text")
    return texts


def corpus_pieces(texts: Sequence[str], tokenizer: Any, max_length: int) -> list[list[int]]:
    """Every document as token ids + end of sequence, cut into pieces of at most `max_length` tokens."""
    eos = tokenizer.eos_token_id
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    pieces: list[list[int]] = []
    for ids in encoded:
        ids = list(ids) + ([eos] if eos is not None else [])
        pieces += [ids[i:i + max_length] for i in range(0, len(ids), max_length) if len(ids[i:i + max_length]) > 1]
    return pieces


def pack_corpus(path: str | Path, tokenizer: Any, config: PackingConfig, cache_dir: str | Path) -> PackedData:
    """Tokenise, cut and pack the corpus at `path` into `cache_dir` (reused when the same key was packed)."""
    from datasets import Dataset, Features, Sequence, Value

    raw = Path(path).read_bytes()
    pieces = corpus_pieces(read_corpus(path), tokenizer, config.max_length)
    content = hashlib.sha256(raw + PLAIN_TEXT_VERSION.encode()).hexdigest()
    # The packer reads a "messages" column and hands its values to the encoder: here, token id lists.
    data = Dataset.from_dict({"messages": pieces}, features=Features({"messages": Sequence(Value("int32"))}))
    return pack_mixture(data, tokenizer, config=config, cache_dir=cache_dir, mixture_hash=content,
                        encoder=PlainTextEncoder())
