"""Answering eval items with a loaded model: rank3 items by candidate perplexity, every other format by
greedy generation (with answer-letter log-probs for letter formats), in two batched passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpc_instruct.data.abilities import RANK3
from hpc_instruct.evaluate.checkpoints import LoadedModel
from hpc_instruct.evaluate.sets import LETTER_FORMATS, EvalItem


@dataclass(frozen=True)
class Evidence:
    """What the model produced for one item."""

    response: str
    letter_logprobs: tuple[float, ...] | None
    candidate_ppl: tuple[float, ...] | None
    prompt_tokens: int
    response_tokens: int
    latency_s: float


def answer_items(
    loaded: LoadedModel, items: tuple[EvalItem, ...] | list[EvalItem], batch_size: int, max_new_tokens: int
) -> list[Evidence]:
    """Rank the rank3 items and generate for the others, in two batched passes; evidence in item order."""
    from hpc_instruct.evaluate.inference import Inference, InferenceConfig

    engine = Inference(
        loaded.model, loaded.template, InferenceConfig(batch_size=batch_size, max_new_tokens=max_new_tokens)
    )
    out: list[Evidence | None] = [None] * len(items)
    ranked = [i for i, it in enumerate(items) if it.format == RANK3]
    generated = [i for i, it in enumerate(items) if it.format != RANK3]
    if ranked:
        results = engine.rank([items[i].prompt for i in ranked], [items[i].candidates for i in ranked])
        for i, r in zip(ranked, results, strict=True):
            out[i] = Evidence("", None, r.perplexities, r.prompt_tokens, 0, r.latency_s)
    if generated:
        letters = [items[i].option_letters if items[i].format in LETTER_FORMATS else "" for i in generated]
        results = engine.generate([items[i].prompt for i in generated], letters)
        for i, g in zip(generated, results, strict=True):
            out[i] = Evidence(
                g.text, g.letter_logprobs or None, None, g.prompt_tokens, g.response_tokens, g.latency_s
            )
    return [e for e in out if e is not None]
