"""Option letters: single-answer multiple choice (with the answer-letter logit fallback) and multi-select sets.

Two parse modes, recorded in every score:
- `doit` (default) is the paper's rule. MC: a reply that is one character once whitespace and punctuation are
  stripped is the answer; any other reply (prose, empty) is answered by the argmax over the log-probabilities of
  the option letters at the answer position. Multi-select: every letter A-F on the last non-empty line.
- `lenient` additionally reads an answer out of prose ("答案是B。", "故选（C）", "Answer: D", "B. 因为...") before
  falling back to the log-probabilities, and ignores letters inside words on the multi-select line.
Both modes fold full-width forms first ("Ａ" is "A"); the original code would have scored a full-width reply as
wrong (it compared the raw character), which is a formatting accident rather than a wrong answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from hpc_instruct.evaluate.scoring.normalize import (
    ANSWER_INTRO,
    fold_width,
    last_nonempty_line,
    strip_punctuation,
)

DOIT = "doit"
LENIENT = "lenient"
MODES = (DOIT, LENIENT)
OPTION_LETTERS = "ABCDEFGHIJ"
MULTI_SELECT_LETTERS = "ABCDEF"  # DoIT's ethics parser accepts A-F


def option_letters(n_options: int) -> str:
    """The first `n_options` letters ("ABCD" for a 4-way question)."""
    if not 2 <= n_options <= len(OPTION_LETTERS):
        raise ValueError(f"n_options must be between 2 and {len(OPTION_LETTERS)}, got {n_options}")
    return OPTION_LETTERS[:n_options]


def check_mode(mode: str) -> None:
    """Raise a clear error for an unknown parse mode."""
    if mode not in MODES:
        raise ValueError(f"unknown parse mode {mode!r}; valid modes: {', '.join(MODES)}")


def reference_letter(reference: str, n_options: int) -> str:
    """The reference answer of an MC item as one upper-case letter; raises if it is not one of the options."""
    letter = strip_punctuation(fold_width(reference)).upper()
    if len(letter) != 1 or letter not in option_letters(n_options):
        raise ValueError(f"MC reference must be one of {option_letters(n_options)}, got {reference!r}")
    return letter


def argmax_letter(letter_logprobs: Mapping[str, float] | None, n_options: int) -> str | None:
    """The option letter with the highest log-probability, or None when no usable values were supplied.

    Only the item's own options compete (a 3-way dialogue question never predicts "D"; the original code always
    compared A-D). Ties go to the earliest letter, as numpy's argmax did in the original. NaN values are ignored.
    """
    if not letter_logprobs:
        return None
    values = {fold_width(k).strip().upper(): float(v) for k, v in letter_logprobs.items()}
    letters = option_letters(n_options)
    missing = [c for c in letters if c not in values]
    if missing:
        raise ValueError(f"letter_logprobs lacks options {missing}; supply one value per letter of {letters}")
    best: str | None = None
    for letter in letters:
        value = values[letter]
        if math.isnan(value):
            continue
        if best is None or value > values[best]:
            best = letter
    return best


# "答案是（B）", "故选C", "Answer: D": an answer introduction, optional bracket, then one letter not inside a word.
_INTRO_LETTER = re.compile(rf"(?:{ANSWER_INTRO.pattern})[(\[【]?\s*([A-J])(?![A-Za-z])", re.IGNORECASE)
# A reply that opens with its letter and a separator: "B.", "(B)", "B、因为...", "B选项" (not "A和B都对").
_LEADING_LETTER = re.compile(r"^[(\[【]?\s*([A-J])(?:$|\s|[)\]】.、,，:：;；。!！]|选项|项)")
_STANDALONE_LETTER = re.compile(r"(?<![A-Za-z])([A-J])(?![A-Za-z])")


def _letter_from_prose(text: str, letters: str) -> tuple[str, str] | None:
    """Lenient reading of prose; returns (letter, method) or None. Uses only upper-case letters in prose."""
    hits = [m.group(1) for m in _INTRO_LETTER.finditer(text) if m.group(1) in letters]
    if hits:
        return hits[-1], "answer_phrase"
    lead = _LEADING_LETTER.match(text.strip())
    if lead and lead.group(1) in letters:
        return lead.group(1), "leading_letter"
    standalone = {m.group(1) for m in _STANDALONE_LETTER.finditer(text) if m.group(1) in letters}
    if len(standalone) == 1:
        return standalone.pop(), "single_letter"
    return None


def parse_choice(
    response: str,
    n_options: int = 4,
    letter_logprobs: Mapping[str, float] | None = None,
    mode: str = DOIT,
) -> tuple[str, str]:
    """Parse a single-answer MC reply; returns (parsed letter or "", method).

    Methods: "one_char" (the stripped reply is one character; it is returned as is, so a one-character reply that
    is not an option letter is simply wrong, like the original's "E"), "answer_phrase" / "leading_letter" /
    "single_letter" (lenient only), "logits" (argmax of `letter_logprobs`), "no_logits" (a longer reply and no
    log-probabilities to fall back on: unanswered).
    """
    check_mode(mode)
    letters = option_letters(n_options)
    folded = fold_width(response)
    stripped = strip_punctuation(folded)
    if len(stripped) == 1:
        return (stripped.upper() if mode == LENIENT else stripped), "one_char"
    if mode == LENIENT:
        found = _letter_from_prose(folded, letters)
        if found:
            return found
    best = argmax_letter(letter_logprobs, n_options)
    if best is None:
        return "", "no_logits"
    return best, "logits"


def letter_set(text: str) -> frozenset[str]:
    """Every letter A-F on the last non-empty line: the DoIT multi-select rule, used for references too."""
    line = last_nonempty_line(fold_width(text))
    return frozenset(re.findall(f"[{MULTI_SELECT_LETTERS}]", line))


_WORD = re.compile(r"[A-Za-z]+")


def parse_letter_set(response: str, mode: str = DOIT) -> tuple[frozenset[str], str]:
    """Parse a multi-select reply; returns (set of letters, method "last_line" or "empty").

    `doit` takes every A-F on the last line, so the "A" of "Answer: B" counts (as in the original). `lenient`
    drops the answer introduction and keeps only words made entirely of A-F ("ABD", "A、C、D", "A, B").
    """
    check_mode(mode)
    if not response.strip():
        return frozenset(), "empty"
    if mode == DOIT:
        return letter_set(response), "last_line"
    line = ANSWER_INTRO.sub(" ", last_nonempty_line(fold_width(response)))
    found: set[str] = set()
    for word in _WORD.findall(line):
        if set(word) <= set(MULTI_SELECT_LETTERS):
            found.update(word)
    return frozenset(found), "last_line"
