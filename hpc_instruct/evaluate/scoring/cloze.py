"""Single-blank Chinese cloze (DoIT chinese items), `corrected` mode: the answer span a grader would read.

The official rule (`official.parse_doit_cloze`) keeps the punctuation after the first CJK run, so "北京。",
"北京（首都）" and "“北京”" never match "北京", and "答案是北京" is read as all four characters. Here:
- an answer introduction is skipped ("答案是北京", "答：北京", "应填：北京", "Answer: 北京");
- the answer is the first run of CJK ideographs after it, without quotes, brackets or punctuation;
- a reference without CJK (a number, a Latin word) is compared with the reply's first token that has no CJK
  and no punctuation ("1949年" answers "1949").
The comparison is exact otherwise: "北京市" is not "北京".
"""

from __future__ import annotations

import re

from hpc_instruct.evaluate.scoring.modes import ItemError
from hpc_instruct.evaluate.scoring.normalize import CJK_CHARS, first_cjk_span, fold_width, strip_punctuation

# Narrower than normalize.ANSWER_INTRO on purpose: "选择" can itself be a cloze answer.
_CLOZE_INTRO = re.compile(
    r"(?:(?:正确)?答案(?:应该|应)?(?:是|为)?|^答|应填(?:入|写)?|填(?:入|写)?|answer\s*(?:is)?)\s*[:：]\s*"
    r"|(?:正确)?答案(?:应该|应)?(?:是|为)\s*|应填(?:入|写)?\s*",
    re.IGNORECASE,
)
_NON_CJK_TOKEN = re.compile(rf"[^\s{CJK_CHARS}]+")


def cloze_answer(text: str) -> tuple[str, str]:
    """(answer, rule) of a reference: its first CJK span ("cjk_span"), else its stripped text ("no_cjk"),
    else "" ("empty"). Eval sets use it to tell a cloze item."""
    folded = fold_width(text).strip()
    if not folded:
        return "", "empty"
    span = first_cjk_span(folded)
    if span is None:
        return folded, "no_cjk"
    return span, "cjk_span"


def cloze_reference(reference: str) -> tuple[str, bool]:
    """(answer, has_cjk) of a cloze reference; `ItemError` when it is empty."""
    answer, rule = cloze_answer(reference)
    if not answer:
        raise ItemError("cloze reference is empty")
    return (answer, True) if rule == "cjk_span" else (strip_punctuation(answer), False)


def parse_cloze(response: str, cjk_reference: bool = True) -> tuple[str, str]:
    """Parse a cloze reply the `corrected` way; returns (answer, rule).

    Rules: "cjk_span" / "token" (no intro), "answer_phrase+cjk_span" / "answer_phrase+token", "none", "empty".
    `cjk_reference` says which kind of answer the reference is (see the module docstring).
    """
    text = fold_width(response).strip()
    if not text:
        return "", "empty"
    rule = ""
    intros = list(_CLOZE_INTRO.finditer(text))
    if intros and text[intros[-1].end() :].strip():
        text, rule = text[intros[-1].end() :], "answer_phrase+"
    if cjk_reference:
        span = first_cjk_span(text)
        return (span, rule + "cjk_span") if span else ("", "none")
    for token in _NON_CJK_TOKEN.findall(text):
        token = strip_punctuation(token)
        if token:
            return token, rule + "token"
    return "", "none"
