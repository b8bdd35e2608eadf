"""Single-blank Chinese cloze (DoIT chinese items): exact match of the first CJK span.

The reply's first run of CJK ideographs is its answer, compared exactly with the reference's first run (a
reference without CJK characters, e.g. a number, is compared as its stripped text, and so is such a reply). The
original regex also swallowed the punctuation after the span, so "北京。" never matched "北京"; matching the span
alone is what the paper describes and what this module does in both modes. `lenient` additionally skips an
answer introduction ("答案是北京" -> "北京", "我认为答案：北京" -> "北京").
"""

from __future__ import annotations

import re

from hpc_instruct.evaluate.scoring.letters import LENIENT, check_mode
from hpc_instruct.evaluate.scoring.normalize import first_cjk_span, fold_width

# Narrower than normalize.ANSWER_INTRO on purpose: "选择" can itself be a cloze answer.
_CLOZE_INTRO = re.compile(r"(?:正确)?答案(?:应该|应)?(?:是|为)?\s*[:：]?\s*")


def cloze_answer(text: str) -> tuple[str, str]:
    """(answer, method): the first CJK span ("cjk_span"), else the stripped text ("no_cjk"), else "empty"."""
    folded = fold_width(text).strip()
    if not folded:
        return "", "empty"
    span = first_cjk_span(folded)
    if span is None:
        return folded, "no_cjk"
    return span, "cjk_span"


def parse_cloze(response: str, mode: str = "doit") -> tuple[str, str]:
    """Parse a cloze reply; returns (answer, method) as `cloze_answer`, after the lenient intro skip."""
    check_mode(mode)
    if mode == LENIENT:
        intros = list(_CLOZE_INTRO.finditer(fold_width(response)))
        if intros:
            rest = fold_width(response)[intros[-1].end() :]
            if rest.strip():
                answer, method = cloze_answer(rest)
                return answer, f"answer_phrase+{method}"
    return cloze_answer(response)
