"""Tokenise a mixture with its chat template and pack it into rows of whole samples, cached as Arrow.

`pack_mixture`: (1) tokenise with `datasets.map`, batched (one tokenizer call per batch) and multi-process;
(2) truncate samples over `max_length` at the end, or drop them (`overlong`), and drop samples left with
no trained token (the answer cut off), counted in `PackStats`; (3) shuffle by `seed` and pack by
first-fit decreasing (rows >97% full on realistic data) or greedily in shuffled order, then shuffle rows;
(4) store per row `input_ids`, `labels` (-100 = no loss, aligned with `input_ids`: the model shifts),
`position_ids` restarting at 0 per sample, `segment_ids` (0, 1, ... per sample), `cu_seqlens`
([0, l0, l0+l1, ..., row length]), `sample_indices` (positions in the mixture) and `num_tokens`; each
sample's first label is -100, so a shifted loss never predicts a sample from the previous one; (5) save
with `Dataset.save_to_disk` into a temporary folder renamed into place, `packing.json` (key parts,
config, stats, data hash) marking completion. The folder is keyed by mixture hash + tokenizer hash +
template hash + packing settings. Rows are unpadded on disk: `collate_packed` pads a batch and
`block_causal_mask` builds the block-diagonal causal mask for backends without varlen kernels.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from hpc_instruct.data.assets import cache_root
from hpc_instruct.data.bin_packing import pack_bins
from hpc_instruct.data.template import IGNORE_INDEX, ChatTemplate, TemplateConfig, normalize_messages
from hpc_instruct.data.tokenizer import tokenizer_hash

log = logging.getLogger(__name__)
PACKING_FORMAT_VERSION = 1
MANIFEST = "packing.json"


@dataclass(frozen=True)
class PackingConfig:
    """How a mixture becomes packed rows.

    Attributes:
        max_length: token budget of one row (DoIT: 2048).
        strategy: "ffd" (first-fit decreasing) or "greedy" (shuffled order, next row when full).
        overlong: "truncate" (keep the first max_length tokens) or "drop" samples longer than max_length.
        seed: shuffling seed (samples before packing, rows after).
        num_proc: tokenisation processes; does not change the result (not part of the cache key).
        batch_size: samples per tokenisation batch; does not change the result.
    """

    max_length: int = 2048
    strategy: Literal["ffd", "greedy"] = "ffd"
    overlong: Literal["truncate", "drop"] = "truncate"
    seed: int = 0
    num_proc: int = 1
    batch_size: int = 512

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {self.max_length}")
        if self.strategy not in ("ffd", "greedy"):
            raise ValueError(f"packing strategy must be 'ffd' or 'greedy', got {self.strategy!r}")
        if self.overlong not in ("truncate", "drop"):
            raise ValueError(f"overlong must be 'truncate' or 'drop', got {self.overlong!r}")

    def key_fields(self) -> dict[str, Any]:
        """The settings that change the packed rows (num_proc and batch_size do not)."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("num_proc", "batch_size")}
        return {**fields, "version": PACKING_FORMAT_VERSION}


@dataclass(frozen=True)
class PackStats:
    """What packing did: counts of samples and tokens, and how full the rows are."""

    num_samples: int
    num_truncated: int
    num_dropped_overlong: int
    num_dropped_untrained: int
    num_rows: int
    num_tokens: int
    num_trained_tokens: int
    max_length: int

    @property
    def real_token_fraction(self) -> float:
        """Real (non-pad) tokens over the row budget: what a fixed-shape batch of rows computes on."""
        return self.num_tokens / max(1, self.num_rows * self.max_length)


@dataclass(frozen=True)
class PackedData:
    """A packed mixture on disk: its folder, the loaded dataset, stats, and whether the cache had it."""

    path: Path
    dataset: Any  # datasets.Dataset
    stats: PackStats
    key: str
    cache_hit: bool


def mixture_content_hash(samples: Any) -> str:
    """Content hash of a mixture's conversations, in order (for callers without a manifest hash)."""
    h = hashlib.sha256()
    rows = samples["messages"] if _is_dataset(samples) else samples
    for record in rows:
        h.update(json.dumps(normalize_messages(record), ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def cache_key(mixture_hash: str, tok_hash: str, tmpl_hash: str, config: PackingConfig) -> str:
    """The cache identity of a packed mixture: all that determines its rows."""
    blob = json.dumps([mixture_hash, tok_hash, tmpl_hash, config.key_fields()], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def pack_mixture(
    samples: Any,
    tokenizer: Any,
    template: TemplateConfig | None = None,
    config: PackingConfig | None = None,
    cache_dir: str | Path | None = None,
    mixture_hash: str | None = None,
    encoder: Any = None,
) -> PackedData:
    """Tokenise and pack a mixture, or load it from the cache when the same key was packed before.

    Args:
        samples: records (`records.Sample`, DoIT dicts with "messages", or message lists), or a
            `datasets.Dataset` with a "messages" column.
        tokenizer: a loaded HF tokenizer; the DoIT template adds its special tokens to it in place.
        template: which chat template (its hash is part of the key).
        config: packing settings.
        cache_dir: where packed mixtures live, one folder per key (a study passes its own, e.g.
            `<study>/mixtures/<hash>/packed`); default `~/.cache/hpc_instruct/packed`.
        mixture_hash: the mixture manifest's content hash; computed from the conversations when omitted.
        encoder: replaces the chat template: anything with `encode_batch(values) -> [EncodedSample]` and
            `template_hash` (`hpc_instruct.data.plain_text` packs pretraining text with one).
    """
    config = config or PackingConfig()
    samples = samples if _is_dataset(samples) else list(samples)  # read twice: hash, then tokenise
    chat = encoder or ChatTemplate(tokenizer, template or TemplateConfig())
    parts = {
        "mixture": mixture_hash or mixture_content_hash(samples),
        "tokenizer": tokenizer_hash(tokenizer),
        "template": chat.template_hash,
    }
    key = cache_key(parts["mixture"], parts["tokenizer"], parts["template"], config)
    path = Path(cache_dir or cache_root() / "packed") / f"packed-{key[:24]}"
    cached = load_packed(path, key)
    if cached is not None:
        log.info("packed mixture cache hit: %s", path)
        return cached
    if path.exists():  # only a complete folder is ever renamed into place: this one was damaged by hand
        log.warning("removing incomplete packed mixture %s (no valid %s)", path, MANIFEST)
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        _progress_bars(log.isEnabledFor(logging.INFO)),
        tempfile.TemporaryDirectory(prefix=".work-", dir=path.parent) as work,
    ):
        table, stats = _pack_table(samples, chat, config, Path(work))
        log.info("packed into %s: %s", path, stats)
        manifest = {"key": key, "parts": parts, "config": config.key_fields(), "stats": asdict(stats)}
        _write_atomically(table, path, manifest)
    loaded = load_packed(path, key)
    assert loaded is not None, f"packed mixture {path} vanished after writing"
    return PackedData(loaded.path, loaded.dataset, loaded.stats, key, cache_hit=False)


def load_packed(path: str | Path, key: str | None = None) -> PackedData | None:
    """A packed mixture folder if it is complete (and has `key`, when given); None otherwise."""
    from datasets import load_from_disk

    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if key is not None and manifest.get("key") != key:
        return None
    stats = PackStats(**manifest["stats"])
    return PackedData(path, load_from_disk(str(path)), stats, manifest["key"], cache_hit=True)


# ------------------------------------------------------------------------------------------ tokenising
class _EncodeBatch:
    """The `datasets.map` function: a batch of conversations to ids/labels (truncated), as an Arrow table.

    Returning Arrow built from flat numpy arrays skips datasets' per-element conversion of nested lists.
    """

    def __init__(self, chat: ChatTemplate, max_length: int) -> None:
        self.chat, self.max_length = chat, max_length

    def __call__(self, batch: dict[str, list]) -> pa.Table:
        encoded = self.chat.encode_batch(batch["messages"])
        cap = self.max_length
        full = np.array([len(e.input_ids) for e in encoded], dtype=np.int64)
        lengths = np.minimum(full, cap)
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))

        def flat(name: str) -> pa.Array:
            values = chain.from_iterable(getattr(e, name)[:cap] for e in encoded)
            return pa.ListArray.from_arrays(offsets, np.fromiter(values, np.int32, int(lengths.sum())))

        trained = [e.num_trained if len(e.labels) <= cap else sum(t != IGNORE_INDEX for t in e.labels[:cap])
                   for e in encoded]  # fmt: skip
        return pa.table({
            "input_ids": flat("input_ids"), "labels": flat("labels"), "length": pa.array(lengths.astype(np.int32)),
            "overlong": pa.array(full > cap), "trained": pa.array(np.array(trained, dtype=np.int32)),
        })  # fmt: skip


def _tokenize(samples: Any, chat: ChatTemplate, config: PackingConfig, work: Path) -> pa.Table:
    """The encoded mixture as an Arrow table (row i = sample i: map keeps the order, also across processes),
    written by `datasets.map` under `work` (a temporary folder)."""
    from datasets import Dataset, Features, Sequence, Value

    if _is_dataset(samples):
        ds = samples.select_columns(["messages"])
    else:
        ds = Dataset.from_dict({"messages": [[{"role": r, "content": c} for r, c in normalize_messages(s)]
                                             for s in samples]})  # fmt: skip
    if len(ds) == 0:
        raise ValueError("the mixture has no samples to pack")
    features = Features({
        "input_ids": Sequence(Value("int32")), "labels": Sequence(Value("int32")), "length": Value("int32"),
        "overlong": Value("bool"), "trained": Value("int32"),
    })  # fmt: skip
    out = ds.map(
        _EncodeBatch(chat, config.max_length), batched=True, batch_size=config.batch_size,
        num_proc=config.num_proc if config.num_proc > 1 else None, remove_columns=["messages"], features=features,
        load_from_cache_file=False, cache_file_name=str(work / "encoded.arrow"), new_fingerprint="encoded",
        desc="tokenising",
    )  # fmt: skip
    return out.data.table


def _pack_table(
    samples: Any, chat: ChatTemplate, cfg: PackingConfig, work: Path
) -> tuple[pa.Table, PackStats]:
    """Tokenise, filter and pack. Rows are gathered from the flat token arrays with numpy (no per-row
    Python, no Arrow take/filter of list columns, which copy far more slowly)."""
    table = _tokenize(samples, chat, cfg, work)
    overlong = table.column("overlong").to_numpy(zero_copy_only=False)
    dropped = overlong & (cfg.overlong == "drop")
    untrained = (table.column("trained").to_numpy() == 0) & ~dropped
    kept = np.flatnonzero(~dropped & ~untrained)
    if len(kept) == 0:
        raise ValueError(f"nothing to train on: of {len(overlong)} samples {int(dropped.sum())} were over "
                         f"max_length={cfg.max_length} and {int(untrained.sum())} had no assistant token left")  # fmt: skip
    lengths = table.column("length").to_numpy().astype(np.int64)
    bins = pack_bins(lengths[kept], cfg.max_length, cfg.strategy, cfg.seed)
    order = kept[np.fromiter((i for b in bins for i in b), dtype=np.int64, count=len(kept))]  # table rows
    seg_len = lengths[order]
    seg_start = np.concatenate([[0], np.cumsum(seg_len)])  # flat token offset of every sample (+ the end)
    row_seg = np.concatenate([[0], np.cumsum([len(b) for b in bins], dtype=np.int64)])  # first sample of rows
    row_tok = seg_start[row_seg]  # flat token offset of every row (+ the end)
    if row_tok[-1] >= 2**31:
        raise ValueError(f"{row_tok[-1]} tokens exceed one Arrow list array (2**31); split the mixture")
    tok_seg = np.repeat(np.arange(len(seg_len)), seg_len)  # packed sample number of every token
    position = np.arange(row_tok[-1]) - seg_start[tok_seg]

    def gather(name: str) -> np.ndarray:  # a list column's tokens in packed order (a writable copy)
        column = table.column(name).combine_chunks()
        return np.asarray(column.values)[np.asarray(column.offsets)[order][tok_seg] + position]

    def rows(values: np.ndarray, offsets: np.ndarray = row_tok) -> pa.Array:  # cut flat values into rows
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))

    ids, labels = gather("input_ids"), gather("labels")
    labels[seg_start[:-1]] = IGNORE_INDEX  # a sample's first token is never a target (no cross-sample loss)
    seg_first = np.repeat(row_seg[:-1], np.diff(row_seg))  # first sample of the row of every sample
    local_start = seg_start[:-1] - seg_start[seg_first]  # sample offsets within their rows
    out = pa.table({
        "input_ids": rows(ids),
        "labels": rows(labels),
        "position_ids": rows(position.astype(np.int32)),
        "segment_ids": rows((tok_seg - seg_first[tok_seg]).astype(np.int32)),
        # [0, l0, l0+l1, ..., row length]: one more entry per row than it has samples
        "cu_seqlens": rows(np.insert(local_start, row_seg[1:], np.diff(row_tok)).astype(np.int32),
                           row_seg + np.arange(len(row_seg))),
        "sample_indices": rows(order, row_seg),
        "num_tokens": pa.array(np.diff(row_tok).astype(np.int32)),
    })  # fmt: skip
    stats = PackStats(
        num_samples=table.num_rows,
        num_truncated=int((overlong & ~dropped & ~untrained).sum()),
        num_dropped_overlong=int(dropped.sum()),
        num_dropped_untrained=int(untrained.sum()),
        num_rows=len(bins),
        num_tokens=int(len(ids)),
        num_trained_tokens=int((labels != IGNORE_INDEX).sum()),
        max_length=cfg.max_length,
    )
    return out, stats


def _write_atomically(table: pa.Table, path: Path, manifest: dict[str, Any]) -> None:
    """save_to_disk into a temporary sibling, add the manifest (with a data hash) last, rename into place."""
    from datasets import Dataset

    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()  # (not mkdtemp: its 0700 mode would hide the result from the rest of a shared study)
    try:
        Dataset(table).save_to_disk(str(tmp))
        h = hashlib.sha256()
        for f in sorted(tmp.glob("*.arrow")):
            with open(f, "rb") as fh:
                h.update(hashlib.file_digest(fh, "sha256").digest())
        (tmp / MANIFEST).write_text(json.dumps({**manifest, "data_sha256": h.hexdigest()}, indent=2) + "\n")
        try:
            os.rename(tmp, path)
        except OSError:  # another process finished the same key first: its result is identical
            if load_packed(path, manifest["key"]) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    """datasets' progress bars only when this module logs at INFO (quiet in tests and libraries)."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    if not show:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _is_dataset(x: Any) -> bool:
    return hasattr(x, "column_names") and hasattr(x, "map")


# ------------------------------------------------------------------------------------ batches (torch)
def collate_packed(rows: Sequence[dict[str, Any]], pad_id: int, pad_to: int | None = None) -> dict[str, Any]:
    """Right-pad packed rows into a batch of torch tensors; pads get label -100 and segment id -1."""
    import torch

    width = pad_to or max(len(r["input_ids"]) for r in rows)
    fills = {"input_ids": pad_id, "labels": IGNORE_INDEX, "position_ids": 0, "segment_ids": -1}
    batch = {}
    for name, fill in fills.items():
        t = torch.full((len(rows), width), fill, dtype=torch.long)
        for i, r in enumerate(rows):
            t[i, : len(r[name])] = torch.as_tensor(r[name], dtype=torch.long)
        batch[name] = t
    return batch


def block_causal_mask(segment_ids: Any, dtype: Any = None) -> Any:
    """Attention mask [B, 1, T, T]: causal and within the same sample only (block-diagonal causal).

    `segment_ids` is [B, T] (or [T]); negative ids mark padding, which no token attends to (a pad query
    attends only to itself so softmax never sees an all-masked row; its output is ignored anyway).
    Boolean (True = may attend) for SDPA-style kernels; with a float `dtype`, additive (0 or the dtype's
    minimum) for eager attention that adds the mask to the scores.
    """
    import torch

    seg = segment_ids if segment_ids.dim() == 2 else segment_ids.unsqueeze(0)
    t = seg.shape[-1]
    causal = torch.ones(t, t, dtype=torch.bool, device=seg.device).tril()
    valid = seg >= 0
    mask = (seg[:, :, None] == seg[:, None, :]) & causal & valid[:, None, :]
    eye = torch.eye(t, dtype=torch.bool, device=seg.device)
    mask = (mask | (eye & ~valid[:, :, None]))[:, None, :, :]
    if dtype is None:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=seg.device).masked_fill(~mask, torch.finfo(dtype).min)
