"""Score one record of DoIT's own prediction files (`evaluate/pred.py` output), in any scoring mode.

A prediction record is a DoIT record (`messages`, `idx`, `type`, `question_format`, `choices`, `answer`) plus
what the model produced: `generated_response` (question_format 0; `generated_score`, the logits of one
generation step, where present) or `generated_ppl` (question_format 1, one perplexity per candidate).

- `doit` / `doit-text` dispatch as the official `scorer.py` and `utils.py` do: by `type` (math, ethics,
  understanding, reasoning, history, biology, chinese, the three `ceval_*_fshot` sets), history and chinese
  items by whether the label is one of A-D; the official asserts (two messages, a label in A-D, a
  true/false keyword, the option lines of a dialogue item) are checked, and a failed one is a per-item error.
- `corrected` reads the record with the toolkit's own parser and classifier (`data.records`,
  `evaluate.sets.classify`), which tell the format from the content for any ability.

`generated_score` is either a full-vocabulary vector (indexed with the letter token ids, by default those of
the official eval tokenizer) or, when it has at most ten values, the option letters' scores in order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hpc_instruct.data.abilities import CLOZE, MATH, MC, MULTI_SELECT, RANK3, TRUE_FALSE
from hpc_instruct.data.records import EVAL, Sample, parse_record
from hpc_instruct.evaluate.scoring import Score, score_or_error
from hpc_instruct.evaluate.scoring.modes import CORRECTED, ItemError
from hpc_instruct.evaluate.scoring.official import DOIT_LETTER_TOKEN_IDS, OFFICIAL_LETTERS
from hpc_instruct.evaluate.sets import classify

_SINGLE_MC_TYPES = ("biology", "reasoning")
_CEVAL_TYPES = (
    "ceval_physician_fshot",
    "ceval_teacher_qualification_fshot",
    "ceval_urban_and_rural_planner_fshot",
)
_THREE_OPTIONS = re.compile(r"\nA\..*\nB\..*\nC\.")
_FOUR_OPTIONS = re.compile(r"\nA\..*\nB\..*\nC\..*\nD\.")


class MalformedRow(ValueError):
    """A row that cannot even be identified as an item (bad JSON, no `type`, no generated output): skipped."""


@dataclass(frozen=True)
class ScoredRecord:
    """One prediction record and its verdict."""

    idx: int | None
    ability: str
    response: str
    reference: str
    score: Score


def letter_scores(
    generated: Any, n: int, token_ids: Sequence[int] = DOIT_LETTER_TOKEN_IDS
) -> list[float] | None:
    """The scores of the first `n` option letters from a `generated_score` value, or None when absent."""
    if generated is None:
        return None
    if not isinstance(generated, list) or not generated:
        raise ItemError("generated_score is not a non-empty list of numbers")
    values = generated[0] if isinstance(generated[0], list) else generated  # a [1, |V|] vector
    if len(values) <= 10:
        return [float(v) for v in values[:n]]
    ids = list(token_ids)[:n]
    if max(ids) >= len(values):
        raise ItemError(
            f"generated_score has {len(values)} values; letter token id {max(ids)} is out of range"
        )
    return [float(values[i]) for i in ids]


def _text(obj: dict, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise MalformedRow(f"{key}: expected a string, got {type(value).__name__}")
    return value


def _identify(obj: Any) -> tuple[str, int, int | None]:
    """(type, question_format, idx), or `MalformedRow`."""
    if not isinstance(obj, dict):
        raise MalformedRow(f"expected a JSON object, got {type(obj).__name__}")
    type_ = obj.get("type")
    if not isinstance(type_, str) or not type_:
        raise MalformedRow("type: missing or not a string")
    qf = obj.get("question_format")
    if qf not in (0, 1) or isinstance(qf, bool):
        raise MalformedRow(f"question_format: expected 0 or 1, got {qf!r}")
    if qf == 0:
        _text(obj, "generated_response")
    elif not isinstance(obj.get("generated_ppl"), list):
        raise MalformedRow(
            "generated_ppl: a ranking record (question_format 1) needs its candidate perplexities"
        )
    if not isinstance(obj.get("messages"), list) or not obj["messages"]:
        raise MalformedRow("messages: missing or empty")
    idx = obj.get("idx")
    return type_, qf, idx if isinstance(idx, int) and not isinstance(idx, bool) else None


def _label(obj: dict) -> str:
    last = obj["messages"][-1]
    if not isinstance(last, dict) or not isinstance(last.get("content"), str):
        raise ItemError("messages[-1].content: not a string (the official label)")
    return last["content"]


def _official(obj: dict, type_: str, mode: str, token_ids: Sequence[int]) -> tuple[str, str, Score]:
    """(response, reference, score) by the official dispatch (module docstring); raises `ItemError`."""
    response = obj["generated_response"]
    messages = obj["messages"]
    if type_ == MATH:
        if len(messages) != 2:
            raise ItemError(f"the official math scorer asserts two messages, got {len(messages)}")
        if "answer" not in obj:
            raise ItemError("the official math scorer reads sample['answer'], which is missing")
        answer = obj["answer"]
        return (
            response,
            "" if answer is None else str(answer),
            score_or_error(MATH, response, answer, mode=mode),
        )
    label = _label(obj)
    if type_ == "ethics":
        _expect_messages(messages, 2, type_)
        return response, label, score_or_error(MULTI_SELECT, response, label, mode=mode)
    if type_ in ("history", "chinese") and label not in tuple(OFFICIAL_LETTERS):
        _expect_messages(messages, 2, type_)
        fmt = TRUE_FALSE if type_ == "history" else CLOZE
        return response, label, score_or_error(fmt, response, label, mode=mode)
    n_options = 4
    if type_ == "understanding":
        prompt = (
            messages[-2].get("content", "") if len(messages) > 1 and isinstance(messages[-2], dict) else ""
        )
        if not _THREE_OPTIONS.search(prompt):
            raise ItemError(
                "the official dialogue scorer asserts option lines '\\nA.', '\\nB.', '\\nC.' in the question"
            )
        n_options = 4 if _FOUR_OPTIONS.search(prompt) else 3
    elif type_ in _CEVAL_TYPES:
        _expect_messages(messages, 12, type_)
    elif type_ in (*_SINGLE_MC_TYPES, "history", "chinese"):
        _expect_messages(messages, 2, type_)
    else:
        raise ItemError(f"the official scorer has no rule for type {type_!r} with question_format 0")
    scores = letter_scores(obj.get("generated_score"), 4, token_ids)
    s = score_or_error(MC, response, label, mode=mode, n_options=n_options, letter_logprobs=scores)
    return response, label, s


def _expect_messages(messages: list, n: int, type_: str) -> None:
    if len(messages) != n:
        raise ItemError(f"the official {type_} scorer asserts {n} messages, got {len(messages)}")


def _corrected(
    obj: dict, path: str, line: int, symbolic: bool, token_ids: Sequence[int]
) -> tuple[str, str, Score]:
    """(response, reference, score) through the toolkit's own record parser and classifier."""
    sample = parse_record(obj, path=path, line=line, split="test", purpose=EVAL, expected_ability=None)
    if not isinstance(sample, Sample):
        raise ItemError("; ".join(f"{issue.field}: {issue.problem}" for issue in sample))
    fmt, reference, n_options = classify(sample)
    if fmt == RANK3:
        return (
            "",
            reference,
            score_or_error(RANK3, None, None, mode=CORRECTED, perplexities=obj["generated_ppl"]),
        )
    response = obj["generated_response"]
    extras: dict[str, Any] = {}
    if fmt == MC:
        extras = {
            "n_options": n_options,
            "letter_logprobs": letter_scores(obj.get("generated_score"), n_options, token_ids),
        }
    elif fmt == MULTI_SELECT:
        extras = {"n_options": n_options}
    elif fmt == MATH:
        extras = {"symbolic": symbolic}
    return response, reference, score_or_error(fmt, response, reference, mode=CORRECTED, **extras)


def score_doit_record(
    obj: Any,
    *,
    mode: str,
    path: str = "-",
    line: int = 0,
    symbolic: bool = False,
    token_ids: Sequence[int] = DOIT_LETTER_TOKEN_IDS,
) -> ScoredRecord:
    """Score one decoded prediction record; `MalformedRow` when it cannot be identified (it is skipped), a
    `Score` with `error` set when it is identified but cannot be judged."""
    type_, qf, idx = _identify(obj)
    ability = type_.removesuffix("_fshot") if type_.startswith("ceval_") else type_
    try:
        if mode == CORRECTED:
            response, reference, s = _corrected(obj, path, line, symbolic, token_ids)
        elif qf == 1:
            response, reference = "", ""
            s = score_or_error(
                RANK3, None, None, mode=mode, perplexities=[float(v) for v in obj["generated_ppl"]]
            )
        else:
            response, reference, s = _official(obj, type_, mode, token_ids)
    except (ItemError, ValueError, TypeError) as exc:
        response = obj.get("generated_response") if isinstance(obj.get("generated_response"), str) else ""
        s = Score("", "", False, 0.0, "error", mode, str(exc))
        reference = ""
    return ScoredRecord(idx, ability, response, reference, s)
