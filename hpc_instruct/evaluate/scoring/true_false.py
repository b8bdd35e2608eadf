"""True/false answers (DoIT history items): keyword sets read from the reply text.

`doit` is the paper's rule: the reply is true if it contains a word of {正确, 对, T, √, V} and none of
{错误, 错, F, ×, X}, false in the mirror case, and unanswered when it holds both or neither. The original parser
had a logit fallback for this format but ran with it switched off (text only), and so does this one.
Substring search has known blind spots that `doit` keeps on purpose: "不对" contains "对" and reads as true,
"True" contains "T". `lenient` reads negations first ("不正确", "不对" -> false; "没错" -> true), accepts ✓/✗,
"true"/"false" and "yes"/"no" as words, and takes the keyword that comes first in the reply.
"""

from __future__ import annotations

import re

from hpc_instruct.evaluate.scoring.letters import DOIT, check_mode
from hpc_instruct.evaluate.scoring.normalize import fold_width

TRUE_WORDS = ("正确", "对", "T", "√", "V")
FALSE_WORDS = ("错误", "错", "F", "×", "X")

# Longest and negated forms first so that "不正确" is not read as "正确".
_LENIENT = re.compile(
    r"(?P<false>不正确|不对|并不对|错误|错|[×✗✘]|(?<![A-Za-z])(?:F|X|false|no)(?![A-Za-z]))"
    r"|(?P<true>没错|没有错|正确|对|[√✓✔]|(?<![A-Za-z])(?:T|V|true|yes)(?![A-Za-z]))",
    re.IGNORECASE,
)


def parse_doit(text: str) -> str:
    """The reply as "T", "F" or "" by the paper's keyword rule (see module docstring)."""
    folded = fold_width(text).strip()
    has_true = any(word in folded for word in TRUE_WORDS)
    has_false = any(word in folded for word in FALSE_WORDS)
    if has_true and not has_false:
        return "T"
    if has_false and not has_true:
        return "F"
    return ""


def reference_truth(reference: str) -> str:
    """The reference as "T" or "F"; raises when it is neither (the DoIT labels are single keywords)."""
    truth = parse_doit(reference)
    if not truth:
        raise ValueError(f"true/false reference must be one of {TRUE_WORDS + FALSE_WORDS}, got {reference!r}")
    return truth


def parse_true_false(response: str, mode: str = DOIT) -> tuple[str, str]:
    """Parse a true/false reply; returns ("T" | "F" | "", method).

    Methods: "keywords" (doit rule decided), "ambiguous" (both sets present, doit), "none" (no keyword),
    "first_keyword" (lenient), "empty".
    """
    check_mode(mode)
    folded = fold_width(response).strip()
    if not folded:
        return "", "empty"
    if mode == DOIT:
        truth = parse_doit(folded)
        if truth:
            return truth, "keywords"
        has_any = any(word in folded for word in TRUE_WORDS + FALSE_WORDS)
        return "", "ambiguous" if has_any else "none"
    match = _LENIENT.search(folded)
    if match is None:
        return "", "none"
    return ("T" if match.group("true") else "F"), "first_keyword"
