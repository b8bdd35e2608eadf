"""The greedy decode loop of the native engine, with few host synchronisations, and its batch size.

One batch: a prefill forward over the left-padded prompts fills the KV cache and gives the answer-position
letter log-probs; then one forward per new token. What keeps a GPU busy:
- every generated token is written into a device buffer and each row's first stop step is tracked on the
  device, so a step issues no host synchronisation; the host looks (one `.item()`) every `sync_every` steps
  to end the batch when every row has stopped and to drop finished rows (the old loop synchronised about six
  times per token). Rows keep decoding for at most `sync_every - 1` steps past their stop; those tokens are
  discarded, so replies are those of a per-token check, token for token;
- `kv_cache="static"`: transformers' `StaticCache`, allocated once for prompt + `max_new_tokens`, written in
  place (the dynamic cache concatenates every layer's keys and values at every step). Finished rows are
  then masked, not dropped (a static cache keeps its batch);
- `batch_for_memory`: on a GPU the batch is as large as the free memory holds the KV cache and logits for,
  instead of a constant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

KvCache = Literal["dynamic", "static"]


@dataclass(frozen=True)
class DecodeSettings:
    max_new_tokens: int
    compact_fraction: float = 0.5  # drop finished rows when they are at least this fraction of the batch
    sync_every: int = 8  # steps between host checks (1 = check every token, as the first loop did)
    kv_cache: KvCache = "dynamic"


@dataclass(frozen=True)
class DecodedBatch:
    replies: list[list[int]]  # per row: tokens before its stop token
    stopped: list[bool]  # True: ended by a stop token; False: cut at max_new_tokens
    logprobs: list[tuple[float, ...]]  # per row: log-probs of its letter ids at the answer position


def batch_for_memory(free_bytes: int, kv_bytes_per_token: int, tokens_per_row: int, vocab: int,
                     cap: int = 256, reserve: float = 0.2) -> int:
    """Rows whose KV cache (`tokens_per_row` tokens) and fp32 last-position logits fit `free_bytes` less a
    `reserve` share (prefill activations, allocator slack); at least 1, at most `cap`.

    Example: 40 GiB free, 13B Llama (40 layers x 5120 keys and values x 2 bytes = 800 KiB per token),
    2048 + 1024 tokens: 0.8 x 40 GiB / (2.34 GiB + 128 KiB) = 13 rows.
    """
    per_row = kv_bytes_per_token * tokens_per_row + 4 * vocab
    return max(1, min(cap, int(free_bytes * (1 - reserve)) // max(1, per_row)))


def kv_bytes_per_token(model: Any) -> int:
    """Keys + values of every layer for one token on this rank (local heads under tensor parallelism)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    size = getattr(model, "tp_size", None) or 1
    dtype = next(model.parameters()).dtype
    return 2 * config.num_hidden_layers * kv_heads * head_dim * dtype.itemsize // size


def greedy_batch(model: Any, cache_arg: str, keep_last: dict, ids: torch.Tensor, mask: torch.Tensor,
                 stop_ids: torch.Tensor, pad_id: int, letter_ids: list[list[int]],
                 settings: DecodeSettings) -> DecodedBatch:
    """Greedy replies of one left-padded batch (`ids`, `mask` on the model's input device)."""
    n, width = ids.shape
    device, limit = ids.device, settings.max_new_tokens
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    extra: dict[str, Any] = {}
    if settings.kv_cache == "static":
        from transformers import StaticCache

        extra = {cache_arg: StaticCache(config=model.config, max_cache_len=width + limit),
                 "cache_position": torch.arange(width, device=device)}
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **keep_last, **extra)
    first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
    logprobs = [tuple(first[r, letter_ids[r]].tolist()) if letter_ids[r] else () for r in range(n)]
    cache = getattr(out, cache_arg)
    can_compact = settings.kv_cache == "dynamic" and hasattr(cache, "batch_select_indices")
    token = first.argmax(-1).to(device)
    tokens = torch.full((n, limit), pad_id, dtype=torch.long, device=device)  # generated, per original row
    stop_step = torch.full((n,), limit, dtype=torch.long, device=device)  # first stop token's step; limit: none
    rows = torch.arange(n, device=device)  # batch row -> original row
    done = torch.zeros(n, dtype=torch.bool, device=device)
    last_pos = positions[:, -1]
    every = max(1, settings.sync_every)
    for step in range(limit):
        tokens[rows, step] = token
        is_stop = torch.isin(token, stop_ids) & ~done
        stop_step[rows] = torch.where(is_stop, step, stop_step[rows])
        done = done | is_stop
        if step == limit - 1:
            break
        if (step + 1) % every == 0:
            finished = int(done.sum())  # the one host synchronisation of `every` steps
            if finished == len(rows):
                break
            if can_compact and finished >= settings.compact_fraction * len(rows):
                index = (~done).nonzero().squeeze(-1)  # finished rows leave the batch and the cache
                cache.batch_select_indices(index)
                rows, token, mask, last_pos, done = rows[index], token[index], mask[index], last_pos[index], done[index]
        token = token.masked_fill(done, pad_id)
        mask = torch.cat([mask, (~done).long()[:, None]], dim=-1)
        last_pos = last_pos + 1
        if settings.kv_cache == "static":
            extra["cache_position"] = torch.tensor([width + step], device=device)
        extra[cache_arg] = cache
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=last_pos[:, None], use_cache=True,
                    **extra)
        cache = getattr(out, cache_arg)
        token = out.logits[:, -1, :].argmax(-1).to(device)
    cut = stop_step.tolist()
    generated = tokens.tolist()
    return DecodedBatch([generated[r][: cut[r]] for r in range(n)], [c < limit for c in cut], logprobs)
