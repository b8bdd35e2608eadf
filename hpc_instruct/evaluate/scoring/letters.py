"""Option letters, `corrected` mode: single-answer multiple choice and multi-select sets, read as a grader would.

The official parsers (`official.py`) take the first A-D character or every A-F of the last line. A grader
reads the reply instead; this module does, in this order:
- MC: a reply that is one letter once punctuation, markdown, `$`, `\\text{}`/`\\boxed{}` wrappers and
  full-width forms are removed ("b", "Ｂ", "**B**", "\\text{B}") is that letter; else the last letter stated
  after an answer phrase ("答案是B", "故选C", "Answer: d") that is not rejected ("答案不是A"); else a letter
  declared right ("D正确", "D is correct"); else a reply that opens with its letter ("B. 因为..."); else the
  only option letter standing alone (never inside a word: DNA, ATP, "Answer") that the reply does not reject
  ("不是A，是D" -> D; "A、B、C都不对" rejects three). Several letters left and none designated is a hedge and
  stays unanswered ("ambiguous"); a reply naming no option at all falls back to the answer-letter log-probs
  when they were recorded, as the paper does for every long reply.
- multi-select: the letters after the last answer phrase, else the last line holding a group of option
  letters standing alone ("A、C、D", "ACD", "(A)(C)"), less the letters the reply rejects ("C不对", "不选C");
  "除C外都对" is every option but C. A reference without letters is malformed (`ItemError`), so an empty
  label can never match an empty reply, and five- or six-letter answers count their options from the letters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from hpc_instruct.evaluate.scoring.modes import CORRECTED, DOIT, DOIT_TEXT, MODES, ItemError, check_mode
from hpc_instruct.evaluate.scoring.normalize import (
    ANSWER_INTRO,
    fold_width,
    last_nonempty_line,
    strip_punctuation,
)

__all__ = ["CORRECTED", "DOIT", "DOIT_TEXT", "MODES", "check_mode"]

OPTION_LETTERS = "ABCDEFGHIJ"
MULTI_SELECT_LETTERS = "ABCDEF"  # DoIT's ethics parser accepts A-F

_OPEN, _CLOSE = r"[(\[【<《]", r"[)\]】>》]"
# A letter not inside a word; `[A-J]` upper-case only (a lower-case "a" in prose is an article).
_ALONE = r"(?<![A-Za-z])([A-J])(?![A-Za-z])"
_SEP = r"(?:\s*(?:[、,，/]|和|与|及|或|以及|and|or)\s*|\s+)"
# A run of letters standing alone, joined by separators ("A、B和C", "(A)(C)", "A, B or C", "ACD" as a word).
_RUN = re.compile(
    rf"(?<![A-Za-z]){_OPEN}?[A-J]{{1,10}}{_CLOSE}?(?:{_SEP}?{_OPEN}?[A-J]{{1,10}}{_CLOSE}?)*(?![A-Za-z])"
)
_REJECT_BEFORE = re.compile(
    r"(?:不是|不选|不应选|不应该选|不能选|并非|并不是|排除|而非|而不是|除了|除|"
    r"\bnot|isn't|rather than|exclude|excluding|except)\s*(?:选项|option)?\s*$",
    re.IGNORECASE,
)
_REJECT_AFTER = re.compile(
    r"^\s*(?:选项|项|option)?\s*(?:都|均|也|都是|是|显然|明显)?\s*"
    r"(?:不对|不正确|错误|错的|错了|不符合|不是答案|不成立|排除|"
    r"(?:is|are)\s+(?:wrong|incorrect|false|not\s+(?:correct|right|the\s+answer)))",
    re.IGNORECASE,
)
_AFFIRM_AFTER = re.compile(
    r"^\s*(?:选项|项|option)?\s*(?:是|才是|为)?\s*(?:正确|对的|符合题意|当选|"
    r"(?:is|are)\s+(?:correct|right|the\s+(?:correct\s+)?answer))",
    re.IGNORECASE,
)
_ALL_BUT = re.compile(
    r"除了?\s*([A-J](?:\s*[、,，和]?\s*[A-J])*)\s*(?:以外|之外|外)\s*(?:其[余他]\S{0,2})?\s*(?:都|均)"
)
_INTRO_LETTERS = re.compile(
    rf"(?:{ANSWER_INTRO.pattern}){_OPEN}?\s*([A-Ja-j](?:{_SEP}?[A-Ja-j])*)(?![A-Za-z])", re.IGNORECASE
)
_LEADING = re.compile(rf"^{_OPEN}?\s*([A-Ja-j])(?:$|\s|{_CLOSE}|[.、,，:：;；。!！]|选项|项)")
_OPTION_LINE = re.compile(r"^\s*[(（]?([A-J])\s*[.．、:：)）]\s*(.*)$", re.MULTILINE)
_LINE_TRUE = re.compile(r"(?<!不)(?:正确|是对的|对)|(?<!in)correct|\btrue\b", re.IGNORECASE)
_LINE_FALSE = re.compile(r"错误|不正确|不对|错|incorrect|wrong|\bfalse\b", re.IGNORECASE)
_WRAPPERS = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|boxed|fbox)\s*\{\s*([^{}]*?)\s*\}")


def option_letters(n_options: int) -> str:
    """The first `n_options` letters ("ABCD" for a 4-way question)."""
    if not 2 <= n_options <= len(OPTION_LETTERS):
        raise ValueError(f"n_options must be between 2 and {len(OPTION_LETTERS)}, got {n_options}")
    return OPTION_LETTERS[:n_options]


def reference_letter(reference: str, n_options: int) -> str:
    """The reference answer of an MC item as one upper-case letter; `ItemError` if it is not an option."""
    letter = strip_punctuation(fold_width(reference)).upper()
    if len(letter) != 1 or letter not in option_letters(n_options):
        raise ItemError(f"MC reference must be one of {option_letters(n_options)}, got {reference!r}")
    return letter


def argmax_letter(letter_logprobs: Mapping[str, float] | None, n_options: int) -> str | None:
    """The option letter with the highest log-probability, or None when no usable values were supplied.

    Only the item's own options compete; ties go to the earliest letter; NaN values are ignored.
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


def clean_reply(response: str) -> str:
    """Full-width folded, `$` and markdown emphasis dropped, `\\text{B}`-style wrappers unwrapped."""
    text = fold_width(response).replace("$", "").replace("**", "").replace("`", "")
    return _WRAPPERS.sub(lambda m: m.group(1), text)


def _runs(text: str) -> list[tuple[int, int, str]]:
    """(start, end, letters) of every run of standalone letters, rejected runs' letters dropped."""
    out = []
    for m in _RUN.finditer(text):
        letters = "".join(c for c in m.group(0) if c in OPTION_LETTERS)
        if letters == "A" and re.match(r"\s+[a-z]", text[m.end() :]):
            continue  # the English article: "A cell needs energy"
        if _REJECT_BEFORE.search(text[max(0, m.start() - 12) : m.start()]) or _REJECT_AFTER.match(
            text[m.end() :]
        ):
            letters = ""
        out.append((m.start(), m.end(), letters))
    return out


def _rejected(text: str) -> set[str]:
    """Letters the reply rejects anywhere ("不是A", "C不对", "A、B都错误", "not B")."""
    found = set()
    for m in _RUN.finditer(text):
        if _REJECT_BEFORE.search(text[max(0, m.start() - 12) : m.start()]) or _REJECT_AFTER.match(
            text[m.end() :]
        ):
            found.update(c for c in m.group(0) if c in OPTION_LETTERS)
    return found


def _stated(text: str, letters: str) -> tuple[str, str] | None:
    """The letter the reply states (MC), or None: answer phrase, affirmation, leading letter, sole letter."""
    rejected = _rejected(text)
    phrases = []
    for m in _INTRO_LETTERS.finditer(text):
        chosen = m.group(1).upper()
        if m.group(1) != chosen and re.match(r"\s+[a-z]", text[m.end() :]):
            continue  # "the answer is a bit unclear": a lower-case letter followed by more prose
        if len(set(chosen) & set(OPTION_LETTERS)) == 1 and not _REJECT_BEFORE.search(
            text[: m.start(1)][-12:]
        ):
            phrases.append(chosen.strip()[0])
    phrases = [c for c in phrases if c in letters and c not in rejected]
    if phrases:
        return phrases[-1], "answer_phrase"
    affirmed = [
        m.group(1)
        for m in re.finditer(_ALONE, text)
        if m.group(1) in letters and _AFFIRM_AFTER.match(text[m.end() :])
    ]
    if affirmed:
        return affirmed[-1], "affirmed"
    lead = _LEADING.match(text.strip())
    if (
        lead
        and len(_OPTION_LINE.findall(text)) <= 1
        and lead.group(1).upper() in letters
        and lead.group(1).upper() not in rejected
    ):
        return lead.group(1).upper(), "leading_letter"
    alone = []
    for _, _, run in _runs(text):
        alone += [c for c in run if c in letters and c not in rejected and c not in alone]
    if len(alone) == 1:
        return alone[0], "single_letter"
    if len(alone) > 1:
        return "", "ambiguous"
    return None


def parse_choice(
    response: str, n_options: int = 4, letter_logprobs: Mapping[str, float] | None = None
) -> tuple[str, str]:
    """Parse a single-answer MC reply the `corrected` way (module docstring); returns (letter or "", rule).

    Rules: "one_char", "answer_phrase", "affirmed", "leading_letter", "single_letter", "ambiguous" (several
    letters, none designated: unanswered), "logits" (no letter in the reply; argmax of the log-probs),
    "no_answer" (no letter and no log-probs).
    """
    letters = option_letters(n_options)
    text = clean_reply(response)
    stripped = strip_punctuation(text)
    if len(stripped) == 1 and stripped.upper() in letters:
        return stripped.upper(), "one_char"
    stated = _stated(text, letters)
    if stated is not None:
        return stated
    best = argmax_letter(letter_logprobs, n_options)
    return ("", "no_answer") if best is None else (best, "logits")


def letter_set(text: str) -> frozenset[str]:
    """Every letter A-F on the last non-empty line, full-width folded: how eval sets read a multi-select
    reference to classify an item (the DoIT rule; the corrected reader is `parse_letter_set`)."""
    line = last_nonempty_line(fold_width(text))
    return frozenset(re.findall(f"[{MULTI_SELECT_LETTERS}]", line))


def parse_letter_set(response: str, n_options: int = 6) -> tuple[frozenset[str], str]:
    """Parse a multi-select reply the `corrected` way; returns (letters, rule).

    Rules: "whole_reply" (only letters, any case), "answer_phrase", "all_but" ("除C外都对"), "letter_line" (the last line with a letter group),
    "none", "empty". Only letters of the item's options (A.. up to `n_options`, at most F) count.
    """
    allowed = OPTION_LETTERS[: max(2, min(n_options, len(MULTI_SELECT_LETTERS)))]
    text = clean_reply(response)
    if not text.strip():
        return frozenset(), "empty"
    bare = strip_punctuation(text)
    if re.fullmatch(r"[A-Fa-f](?:[\s、,，]*[A-Fa-f])*", bare) and set(bare.upper()) & set(allowed):
        return frozenset(c for c in bare.upper() if c in allowed), "whole_reply"  # "acd", "a, c, d"
    rejected = _rejected(text)
    everything = frozenset(allowed)
    all_but = list(_ALL_BUT.finditer(text))
    if all_but:
        return everything - set(all_but[-1].group(1)), "all_but"
    phrases = [
        m for m in _INTRO_LETTERS.finditer(text) if not _REJECT_BEFORE.search(text[: m.start(1)][-12:])
    ]
    if phrases:
        chosen = frozenset(c for c in phrases[-1].group(1).upper() if c in allowed) - rejected
        if chosen:
            return chosen, "answer_phrase"
    verdicts = _option_verdicts(text, allowed)
    if verdicts is not None:
        return verdicts, "option_verdicts"
    for line in reversed(text.splitlines()):
        chosen = frozenset(c for _, _, run in _runs(line) for c in run if c in allowed) - rejected
        if chosen:
            return chosen, "letter_line"
    return frozenset(), "none"


def _option_verdicts(text: str, allowed: str) -> frozenset[str] | None:
    """The options judged right when the reply judges each option on its own line ("A. 正确…\nB. 错误…"),
    else None (fewer than two such lines, or one without a verdict)."""
    lines = [(m.group(1), m.group(2)) for m in _OPTION_LINE.finditer(text) if m.group(1) in allowed]
    if len(lines) < 2:
        return None
    chosen = set()
    for letter, rest in lines:
        is_false, is_true = bool(_LINE_FALSE.search(rest)), bool(_LINE_TRUE.search(rest))
        if is_true == is_false:
            return None
        if is_true:
            chosen.add(letter)
    return frozenset(chosen)


def multi_select_reference(reference: str, n_options: int = 6) -> frozenset[str]:
    """The letters of a multi-select reference (corrected reader); `ItemError` when it holds none."""
    letters, _ = parse_letter_set(reference, max(n_options, len(MULTI_SELECT_LETTERS)))
    if not letters:
        raise ItemError(f"multi-select reference holds no option letter A-F: {reference!r}")
    return letters
