"""Greedy generation with vLLM (continuous batching, paged KV cache, tensor parallel over the task's GPUs),
giving exactly the evidence the native loop gives (`inference.Generated`).

What keeps the two engines' rows comparable:
- prompt rendering: vLLM gets token ids, not text (`TokensPrompt`), encoded by our `ChatTemplate` exactly as
  the native loop encodes them; vLLM's own tokenizer is not even loaded (`skip_tokenizer_init`), and replies
  are decoded by our tokenizer (`skip_special_tokens`, as native);
- stopping: greedy (temperature 0), `max_tokens = max_new_tokens`, `stop_token_ids` = the template's stop
  tokens (eos, `<eot>`, `<user>`, `<assistant>` for DoIT); the reply is cut before the first stop token;
- answer-letter log-probs at the answer position: vLLM returns top-k log-probs of sampled positions only, so
  each letter is asked for as a one-token continuation: the request `prompt + [letter]` with
  `prompt_logprobs=0` returns the log-prob of that last prompt token given the prompt, over the full
  vocabulary (the same number the native prefill reads). Prefix caching makes these requests cheap.
Request building (`generation_requests`, `letter_requests`) and reading the outputs (`assemble`) need no vLLM
and are tested on the CPU; `VllmEngine` needs vLLM and a GPU (tests marked `gpu`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc_instruct.evaluate.inference import Generated, letter_token_ids


@dataclass(frozen=True)
class Request:
    """One vLLM request: the prompt's token ids and the `SamplingParams` keyword arguments."""

    prompt_token_ids: tuple[int, ...]
    sampling: dict[str, Any] = field(hash=False)
    item: int  # index of the eval item it belongs to
    letter: int = -1  # letter requests: the letter's token id


def generation_requests(encoded: Sequence[Sequence[int]], stop_ids: Sequence[int], max_new_tokens: int) -> list[Request]:
    """Greedy replies, stopped at the template's stop tokens or after `max_new_tokens` tokens."""
    sampling = {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "max_tokens": max_new_tokens,
                "stop_token_ids": list(stop_ids), "ignore_eos": False, "detokenize": False, "seed": 0}
    return [Request(tuple(ids), dict(sampling), i) for i, ids in enumerate(encoded)]


def letter_requests(encoded: Sequence[Sequence[int]], letter_ids: Sequence[Sequence[int]]) -> list[Request]:
    """Per item and option letter: `prompt + [letter]`, one token generated, the prompt tokens' log-probs asked."""
    sampling = {"temperature": 0.0, "max_tokens": 1, "prompt_logprobs": 0, "detokenize": False}
    return [Request(tuple(ids) + (letter,), dict(sampling), i, letter)
            for i, (ids, letters) in enumerate(zip(encoded, letter_ids, strict=True)) for letter in letters]


def assemble(encoded: Sequence[Sequence[int]], generations: Sequence[Any], letters: Sequence[Request],
             letter_outputs: Sequence[Any], stop_ids: Sequence[int], decode, latency_s: float) -> list[Generated]:
    """`Generated` per item from vLLM's `RequestOutput`s (in request order).

    A generation output's `outputs[0].token_ids` are the reply's tokens (vLLM keeps a stop token id it stopped
    on); the reply is cut before the first stop token. A letter output's `prompt_logprobs[-1]` maps the last
    prompt token (the letter) to its `Logprob`.
    """
    stops = set(stop_ids)
    by_item: dict[int, list[float]] = {}
    for request, output in zip(letters, letter_outputs, strict=True):
        last = output.prompt_logprobs[-1]
        by_item.setdefault(request.item, []).append(float(last[request.letter].logprob))
    out = []
    for i, (ids, gen) in enumerate(zip(encoded, generations, strict=True)):
        tokens = list(gen.outputs[0].token_ids)
        cut = next((k for k, t in enumerate(tokens) if t in stops), None)
        reply = tokens if cut is None else tokens[:cut]
        out.append(Generated(decode(reply), len(ids), len(reply), cut is not None, tuple(by_item.get(i, ())),
                             latency_s))
    return out


class VllmEngine:
    """vLLM over `tensor_parallel` GPUs for one model folder; `generate` as `Inference.generate`."""

    def __init__(self, folder: str | Path, template: Any, max_new_tokens: int, tensor_parallel: int = 1,
                 max_model_len: int | None = None, gpu_memory_utilization: float = 0.85) -> None:
        from vllm import LLM

        self.template = template
        self.max_new_tokens = max_new_tokens
        self.llm = LLM(model=str(folder), skip_tokenizer_init=True, tensor_parallel_size=tensor_parallel,
                       dtype="bfloat16", seed=0, enable_prefix_caching=True, max_model_len=max_model_len,
                       gpu_memory_utilization=gpu_memory_utilization)

    def generate(self, prompts: Sequence[Any], letters: Sequence[str] | None = None) -> list[Generated]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        letters = list(letters) if letters is not None else [""] * len(prompts)
        encoded = [self.template.encode_prompt(p) for p in prompts]
        stop_ids = self.template.stop_token_ids()
        gen = generation_requests(encoded, stop_ids, self.max_new_tokens)
        asked = letter_requests(encoded, [letter_token_ids(self.template, s) if s else [] for s in letters])
        started = time.perf_counter()
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(r.prompt_token_ids)) for r in gen + asked],
                                    [SamplingParams(**r.sampling) for r in gen + asked], use_tqdm=False)
        latency = (time.perf_counter() - started) / max(1, len(prompts))
        decode = lambda ids: self.template.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
        return assemble(encoded, outputs[: len(gen)], asked, outputs[len(gen):], stop_ids, decode, latency)
