"""Batched inference on a causal LM: greedy generation with answer-letter log-probs, and candidate ranking.

Two modes, both on any transformers causal LM (Llama, Qwen2, ...) with a `ChatTemplate`:

- `generate`: prompts are left padded into batches (longest first), one prefill forward fills the KV cache,
  then one forward per new token, greedy, until every row has produced a stop token (eos, `<eot>`, `<user>`,
  `<assistant>` for the DoIT template; the turn end for a tokenizer's own template) or `max_new_tokens`.
  Rows that stopped are dropped from the batch and the KV cache once they are half of it (masked until
  then), so one rambling item does not keep a batch of finished ones busy. The loop itself
  (`hpc_instruct.evaluate.generation`) checks for finished rows every `sync_every` tokens, not every token. The option letters'
  log-probabilities are read from the prefill's last position, which predicts the first answer token: the
  *answer position* (the original code kept the logits of the last generation step, after the answer).
- `rank`: every candidate of every item is scored as the row `prompt + candidate + end-of-turn`, encoded
  exactly as training encodes an assistant turn (`ChatTemplate.encode_batch(..., train_on="last")`: the
  tokens whose loss counts are the candidate's content and its `<eot>`, the context masked). Candidates of
  many items share one forward (items of similar lengths chunked together, up to `rank_batch_tokens` padded
  tokens). The rows of an item share the prompt, and often their first candidate tokens: that common prefix
  runs once (left padded, KV cache kept), then every row's remainder runs on a copy of its item's cache
  (right padded). Only hidden states of scored tokens go through the output layer, so no
  [rows x length x vocabulary] logit tensor is built. Perplexity = exp(mean cross-entropy), as
  `hpc_instruct.evaluate.scoring.perplexity` defines it; the numbers equal a full forward per candidate up
  to floating-point summation order (tested).

Timings: `latency_s` of an item is its batch's wall time divided by the batch's items (amortised).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hpc_instruct.data.template import IGNORE_INDEX, ChatTemplate
from hpc_instruct.evaluate.generation import (
    DecodeSettings,
    KvCache,
    batch_for_memory,
    greedy_batch,
    kv_bytes_per_token,
)

OPTION_LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class InferenceConfig:
    """How inference batches. `batch_size` items per generation batch (None: from free GPU memory, 16 on the
    CPU); ranking rows are bounded by tokens. `sync_every`, `kv_cache`: see `hpc_instruct.evaluate.generation`."""

    batch_size: int | None = 16
    max_new_tokens: int = 1024
    rank_batch_tokens: int | None = None  # padded tokens per ranking forward; None: 2048 on CPU, 32768 on GPU
    compact_fraction: float = 0.5  # drop finished rows when they are at least this fraction of a batch
    sync_every: int = 8  # decode steps between host checks for finished rows
    kv_cache: KvCache = "dynamic"  # or "static": transformers' StaticCache, written in place


@dataclass(frozen=True)
class Generated:
    """A greedy reply to one prompt."""

    text: str  # decoded reply without the stop token and special tokens
    prompt_tokens: int
    response_tokens: int  # tokens generated before the stop token (the stop token is not counted)
    stopped: bool  # True: ended by a stop token; False: cut at max_new_tokens
    letter_logprobs: tuple[float, ...]  # log-prob of each asked option letter at the answer position
    latency_s: float


@dataclass(frozen=True)
class Ranked:
    """Perplexities of one item's candidates (in the order given, reference first)."""

    perplexities: tuple[float, ...]
    prompt_tokens: int
    candidate_tokens: tuple[int, ...]  # scored tokens per candidate (content + end of turn)
    latency_s: float


class Inference:
    """Greedy generation and candidate ranking for one model and template (see the module docstring)."""

    def __init__(
        self, model: Any, template: ChatTemplate, config: InferenceConfig = InferenceConfig()
    ) -> None:
        self.model = model.eval()
        self.template = template
        self.tokenizer = template.tokenizer
        self.config = config
        self.device = model.get_input_embeddings().weight.device  # where inputs go (first device of a split)
        self.rank_batch_tokens = config.rank_batch_tokens or (32768 if self.device.type == "cuda" else 2048)
        self.stop_ids = torch.tensor(template.stop_token_ids(), device=self.device)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else int(self.stop_ids[0])
        params = inspect.signature(model.forward).parameters
        self._keep_last = next(({k: 1} for k in ("logits_to_keep", "num_logits_to_keep") if k in params), {})
        self._cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x
        self._decoder, self._head = _decoder_and_head(model)
        self._shares_prefix = (
            self._decoder is not None
            and self._cache_arg in inspect.signature(self._decoder.forward).parameters
        )

    # ------------------------------------------------------------------------------------------ letters
    def letter_ids(self, letters: str) -> list[int]:
        """Token id of each option letter as the first token of a reply (how the template encodes "B")."""
        return letter_token_ids(self.template, letters)

    # --------------------------------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(self, prompts: Sequence[Any], letters: Sequence[str] | None = None) -> list[Generated]:
        """Greedy replies; `letters[i]` (e.g. "ABCD", or "") names the options whose log-probs item i records."""
        letters = list(letters) if letters is not None else [""] * len(prompts)
        encoded = [self.template.encode_prompt(p) for p in prompts]
        letter_ids = {s: self.letter_ids(s) for s in set(letters) if s}
        order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))
        results: list[Generated | None] = [None] * len(encoded)
        size = self.batch_size(len(encoded[order[0]])) if order else 1
        for b in range(0, len(order), size):
            batch = order[b : b + size]
            started = time.perf_counter()
            replies, stopped, logprobs = self._generate_batch(
                [encoded[i] for i in batch], [letter_ids.get(letters[i], []) for i in batch]
            )
            latency = (time.perf_counter() - started) / len(batch)
            for k, i in enumerate(batch):
                text = self.tokenizer.decode(replies[k], skip_special_tokens=True)
                results[i] = Generated(
                    text, len(encoded[i]), len(replies[k]), stopped[k], logprobs[k], latency
                )
        return [r for r in results if r is not None]

    def _generate_batch(self, prompts: list[list[int]], letter_ids: list[list[int]]):
        n, width = len(prompts), max(len(p) for p in prompts)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p) :] = 1
        settings = DecodeSettings(self.config.max_new_tokens, self.config.compact_fraction,
                                  self.config.sync_every, self.config.kv_cache)
        out = greedy_batch(self.model, self._cache_arg, self._keep_last, ids.to(self.device), mask.to(self.device),
                           self.stop_ids, self.pad_id, letter_ids, settings)
        return out.replies, out.stopped, out.logprobs

    def batch_size(self, longest_prompt: int) -> int:
        """Prompts per generation batch: the configured number, or on a GPU (`batch_size=None`) as many as the
        free memory holds KV cache and logits for (`generation.batch_for_memory`); 16 on the CPU."""
        if self.config.batch_size is not None:
            return self.config.batch_size
        if self.device.type != "cuda":
            return 16
        free, _ = torch.cuda.mem_get_info(self.device)
        return batch_for_memory(free, kv_bytes_per_token(self.model), longest_prompt + self.config.max_new_tokens,
                                self.model.config.vocab_size)

    # ------------------------------------------------------------------------------------------ ranking
    @torch.inference_mode()
    def rank(self, prompts: Sequence[Any], candidates: Sequence[Sequence[str]]) -> list[Ranked]:
        """Perplexity of each candidate reply given its prompt; all candidates of many items per forward."""
        groups: list[list[Any]] = []
        convs = []
        for prompt, cands in zip(prompts, candidates, strict=True):
            base = [(m[0], m[1]) for m in prompt]
            convs.extend(base + [("assistant", c)] for c in cands)
        encoded = self.template.encode_batch(convs, train_on="last")
        k = 0
        for cands in candidates:
            groups.append(encoded[k : k + len(cands)])
            k += len(cands)
        prefix = {i: _common_prefix(rows) for i, rows in enumerate(groups) if rows}
        tail = {i: max(len(r.input_ids) for r in rows) - prefix[i] for i, rows in enumerate(groups) if rows}
        # Items with similar prefix and remainder lengths share a chunk, so little of a forward is padding.
        order = sorted(prefix, key=lambda i: (-prefix[i], -tail[i], i))
        ppl: dict[int, list[float]] = {i: [] for i in range(len(groups))}
        spent = [0.0] * len(groups)
        start = 0
        while start < len(order):  # chunks of about rank_batch_tokens padded tokens (both passes)
            first = order[start]
            chunk, widest_prefix, widest_tail, rows = [first], prefix[first], tail[first], len(groups[first])
            for i in order[start + 1 :]:
                p, t, r = max(widest_prefix, prefix[i]), max(widest_tail, tail[i]), rows + len(groups[i])
                if (p + t) * r > self.rank_batch_tokens:
                    break
                chunk.append(i)
                widest_prefix, widest_tail, rows = p, t, r
            started = time.perf_counter()
            if self._shares_prefix:
                values = self._shared_prefix_perplexities(
                    [groups[i] for i in chunk], [prefix[i] for i in chunk]
                )
            else:
                flat = self._perplexities([r for i in chunk for r in groups[i]])
                values, k = [], 0
                for i in chunk:
                    values.append(flat[k : k + len(groups[i])])
                    k += len(groups[i])
            elapsed = time.perf_counter() - started
            for i, v in zip(chunk, values, strict=True):
                ppl[i], spent[i] = v, elapsed / len(chunk)
            start += len(chunk)
        out = []
        for i, rows in enumerate(groups):
            prompt_tokens = len(rows[0].input_ids) - rows[0].num_trained if rows else 0
            out.append(Ranked(tuple(ppl[i]), prompt_tokens, tuple(r.num_trained for r in rows), spent[i]))
        return out

    def _shared_prefix_perplexities(
        self, groups: list[list[Any]], prefix_len: list[int]
    ) -> list[list[float]]:
        """Perplexities of each group's rows, computing the rows' common token prefix once per group.

        The candidates of an item share the prompt, and often their first tokens too (a distractor that
        changes one operator or the last character). Pass 1 runs each group's common prefix (left padded) and
        keeps the KV cache; pass 2 runs every row's remainder (right padded) on a copy of its group's cache.
        Cross-entropies of scored tokens inside the prefix are computed once and added to every row of the
        group; the first remainder token is predicted from the prefix's last hidden state. The numbers equal
        a full forward per row up to floating-point summation order.
        """
        n, width = len(groups), max(prefix_len)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for g, (rows, p) in enumerate(zip(groups, prefix_len, strict=True)):
            ids[g, width - p :] = torch.tensor(rows[0].input_ids[:p])
            labels[g, width - p :] = torch.tensor(rows[0].labels[:p])
            mask[g, width - p :] = 1
        ids, labels, mask = ids.to(self.device), labels.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._decoder(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        hidden, cache = out.last_hidden_state, getattr(out, self._cache_arg)
        shared_sum, shared_count = self._summed_ce(hidden[:, :-1], labels[:, 1:], n)
        last = hidden[:, -1]  # predicts each row's first remainder token
        # pass 2: every row's remainder, after its group's prefix
        owner = [g for g, rows in enumerate(groups) for _ in rows]
        tails = [
            (r.input_ids[p:], r.labels[p:]) for rows, p in zip(groups, prefix_len, strict=True) for r in rows
        ]
        m, tail_width = len(tails), max(len(t) for t, _ in tails)
        t_ids = torch.full((m, tail_width), self.pad_id, dtype=torch.long)
        t_labels = torch.full((m, tail_width), IGNORE_INDEX, dtype=torch.long)
        t_mask = torch.zeros((m, tail_width), dtype=torch.long)
        for r, (tid, tlab) in enumerate(tails):
            t_ids[r, : len(tid)], t_labels[r, : len(tlab)], t_mask[r, : len(tid)] = (
                torch.tensor(tid),
                torch.tensor(tlab),
                1,
            )
        index = torch.tensor(owner, device=self.device)
        t_ids, t_labels, t_mask = t_ids.to(self.device), t_labels.to(self.device), t_mask.to(self.device)
        cache.batch_select_indices(index)
        full_mask = torch.cat([mask[index], t_mask], dim=-1)
        t_pos = positions[index, -1:] + 1 + torch.arange(tail_width, device=self.device)[None]
        t_hidden = self._decoder(
            input_ids=t_ids,
            attention_mask=full_mask,
            position_ids=t_pos,
            use_cache=True,
            **{self._cache_arg: cache},
        ).last_hidden_state
        predictors = torch.cat([last[index][:, None], t_hidden[:, :-1]], dim=1)
        tail_sum, tail_count = self._summed_ce(predictors, t_labels, m)
        index = index.to(tail_sum.device)
        totals = (tail_sum + shared_sum[index]) / (tail_count + shared_count[index]).clamp(min=1)
        values = [math.exp(v) if v < 700 else math.inf for v in totals.tolist()]
        result, k = [], 0
        for rows in groups:
            result.append(values[k : k + len(rows)])
            k += len(rows)
        return result

    def _summed_ce(
        self, hidden: torch.Tensor, targets: torch.Tensor, n: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row: the sum and count of cross-entropies of `targets` (IGNORE_INDEX skipped) predicted by
        `hidden` at the same positions; the output layer runs on the scored positions only."""
        targets = targets.to(hidden.device)  # a model split over devices ends on its last one
        where = (targets != IGNORE_INDEX).nonzero(as_tuple=True)
        ce = torch.nn.functional.cross_entropy(
            self._head(hidden[where]).float(), targets[where], reduction="none"
        )
        total = torch.zeros(n, dtype=torch.float64, device=hidden.device).index_add_(0, where[0], ce.double())
        count = torch.zeros(n, dtype=torch.float64, device=hidden.device).index_add_(
            0, where[0], torch.ones_like(ce, dtype=torch.float64)
        )
        return total, count

    def _perplexities(self, rows: list[Any]) -> list[float]:
        n, width = len(rows), max(len(r.input_ids) for r in rows)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for k, r in enumerate(rows):
            ids[k, : len(r.input_ids)] = torch.tensor(r.input_ids)
            labels[k, : len(r.labels)] = torch.tensor(r.labels)
            mask[k, : len(r.input_ids)] = 1
        ids, labels, mask = ids.to(self.device), labels.to(self.device), mask.to(self.device)
        targets = labels[:, 1:]
        where = (targets != IGNORE_INDEX).nonzero(as_tuple=True)  # (row, position predicting position + 1)
        if self._decoder is not None:
            hidden = self._decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            logits = self._head(hidden[:, :-1][where])
        else:  # models whose head is more than one linear layer (logit scaling, soft-capping)
            logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1][where]
        ce = torch.nn.functional.cross_entropy(logits.float(), targets[where], reduction="none")
        totals = torch.zeros(n, dtype=torch.float64, device=ce.device).index_add_(0, where[0], ce.double())
        counts = torch.zeros(n, dtype=torch.float64, device=ce.device).index_add_(
            0, where[0], torch.ones_like(ce, dtype=torch.float64)
        )
        means = (totals / counts.clamp(min=1)).tolist()
        return [math.exp(m) if m < 700 else math.inf for m in means]


def letter_token_ids(template: ChatTemplate, letters: str) -> list[int]:
    """Token id of each option letter as the first token of a reply (how the template encodes "B")."""
    ids = []
    for letter in letters:
        tokens = template.encode_batch([[("user", "?"), ("assistant", letter)]], train_on="last")[0]
        scored = [t for t, label in zip(tokens.input_ids, tokens.labels, strict=True) if label != IGNORE_INDEX]
        if not scored:
            raise ValueError(f"the template encodes the reply {letter!r} to no tokens")
        ids.append(scored[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"option letters {letters} share first tokens {ids}: letter log-probs would tie")
    return ids


def _common_prefix(rows: list[Any]) -> int:
    """Tokens all rows start with, leaving every row at least one token of its own (at least 1)."""
    p, shortest = 0, min(len(r.input_ids) for r in rows)
    while p < shortest - 1 and all(r.input_ids[p] == rows[0].input_ids[p] for r in rows):
        p += 1
    return max(p, 1)


def _decoder_and_head(model: Any) -> tuple[Any, Any]:
    """The decoder stack and output layer of a plain causal LM, or (None, None) when logits need more than
    `head(hidden)` (soft-capping, logit scaling): ranking then takes the model's own logits."""
    config = getattr(model, "config", None)
    for extra in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
        if getattr(config, extra, None) not in (None, 1, 1.0):
            return None, None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    decoder = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if head is None or decoder is None or decoder is model:
        return None, None
    return decoder, head
