"""The official DoIT parsers for letters, true/false, cloze and multi-select, reproduced verdict for verdict.

Written from a reading of the original `evaluate/parse_utils.py` and `evaluate/utils.py` (not copied); each
function names the official rule it reproduces. The defects are kept on purpose, because `doit` is the
reproduction mode (see `/work/shared/study/DOIT.md` and the `corrected` parsers for the fixes):
- MC (`parse_four_choices_candidates_tasks`): the reply is only `str.strip()`-ed, so "B。" is two characters and
  goes to the logits; a one-character reply that is not A-D parses as "E"; in text mode the first character
  of the reply that is one of A-D wins, so "DNA", "Answer: B" and "不是A，是D" all pick the wrong letter.
- true/false (`parse_tf_choice`, text mode): substring search, so "不正确" is true and "True" holds "T"; both
  polarities or neither parse as "E".
- cloze (`parse_single_cloze_zh`): the first CJK run plus the punctuation after it ("北京。" is not "北京").
- multi-select (`parse_multi_choices_tasks`): every A-F on the last non-empty line, inside words too.
- rank3 (`scorer.py`): correct iff `min(ppl) == ppl[0]`, so a tie with the reference counts as correct.
Labels are checked as the official asserts check them; a failed assert is an `ItemError` (a per-item error).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from hpc_instruct.evaluate.scoring.modes import DOIT, ItemError

OFFICIAL_LETTERS = "ABCD"  # the official MC parser always compares exactly these four
UNPARSED = "E"  # what the official parsers return when nothing is found
TRUE_WORDS = ("正确", "对", "T", "√", "V")
FALSE_WORDS = ("错误", "错", "F", "×", "X")
MULTI_LETTERS = "ABCDEF"
# The token ids of "A".."D" (`tokenizer.encode(letter, add_special_tokens=False)`, i.e. "▁A".."▁D") in the
# official eval tokenizer (`models/eval-tokenizer/tokenizer.model`, Chinese-LLaMA, 49,953 pieces), read with
# sentencepiece: index a full-vocabulary `generated_score` vector with these.
DOIT_LETTER_TOKEN_IDS = (319, 350, 315, 360)
_CLOZE = re.compile(r"[\u4e00-\u9fff]+[^\w\s]*")  # the official pattern's lazy `.*?` always matches nothing


def official_argmax(scores: Sequence[float]) -> str:
    """The official logit rule: argmax of softmax(float32 scores of A-D), ties and NaN going to the first
    letter as `np.argmax` does on torch's softmax output (a NaN anywhere makes every probability NaN).

    Computed with numpy rather than torch (no torch on a login node): the two agree except where two float32
    logits are one unit in the last place apart, which torch's softmax may round to a tie.
    """
    import numpy as np  # here, not at the top: the code sandbox imports the scorers with a bare interpreter

    values = np.asarray(list(scores)[: len(OFFICIAL_LETTERS)], dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = np.exp(values - values.max())
        probs = shifted / shifted.sum()
    return OFFICIAL_LETTERS[int(np.argmax(probs))]


def doit_choice_label(label: str) -> str:
    """The official MC label check (`assert label in ['A','B','C','D']`): the label itself, else `ItemError`."""
    if label not in tuple(OFFICIAL_LETTERS):  # exactly one of "A".."D" (a string test would accept "AB")
        raise ItemError(f"the official MC scorer asserts the label is one of A, B, C, D; got {label!r}")
    return label


def parse_doit_choice(reply: str, letter_scores: Sequence[float] | None, mode: str) -> tuple[str, str]:
    """(letter, rule) by `parse_four_choices_candidates_tasks`.

    `doit` (choice_parse_mode 'both'): a stripped reply of one character is read as text ("one_char"; "E"
    unless it is A-D), anything else by the letter scores ("logits"). Without scores the text rule reads it
    ("first_letter_no_logits") rather than marking it wrong. `doit-text`: the first A-D character ("first_letter").
    """
    answer = reply.strip()
    if mode == DOIT and len(answer) != 1:
        if letter_scores is not None and len(letter_scores) >= 2:
            return official_argmax(letter_scores), "logits"
        rule = "first_letter_no_logits"
    else:
        rule = "one_char" if len(answer) == 1 else "first_letter"
    for char in answer:
        if char in OFFICIAL_LETTERS:
            return char, rule
    return UNPARSED, rule


def doit_truth_label(label: str) -> str:
    """The official true/false label: one of the ten keywords exactly, mapped to "T" or "F"; else `ItemError`."""
    if label in TRUE_WORDS:
        return "T"
    if label in FALSE_WORDS:
        return "F"
    raise ItemError(
        f"the official true/false scorer asserts the label is one of {TRUE_WORDS + FALSE_WORDS}; got {label!r}"
    )


def parse_doit_true_false(reply: str) -> tuple[str, str]:
    """("T" | "F" | "E", rule) by `parse_tf_choice` in text mode: substring presence of either keyword set."""
    answer = reply.strip()
    has_true = any(word in answer for word in TRUE_WORDS)
    has_false = any(word in answer for word in FALSE_WORDS)
    if has_true != has_false:
        return ("T" if has_true else "F"), "keywords"
    return UNPARSED, "both_keywords" if has_true else "no_keyword"


def parse_doit_cloze(reply: str) -> tuple[str, str]:
    """(answer, rule) by `parse_single_cloze_zh`: the first CJK run with the punctuation right after it."""
    answer = reply.strip()
    match = _CLOZE.search(answer)
    if match is None:
        return answer, "whole_reply"
    return match.group(0).strip(), "cjk_span"


def doit_last_line(text: str) -> str:
    """The official `extract_last_line`: the last line (split on "\\n") that is not blank, else the text."""
    for line in reversed(text.split("\n")):
        if line.strip() != "":
            return line
    return text


def doit_letter_set(text: str) -> frozenset[str]:
    """The official `parse_multi_choices_tasks`: every A-F on the last non-blank line (used for labels too)."""
    return frozenset(char for char in doit_last_line(text) if char in MULTI_LETTERS)


def doit_multi_select_chance(label_letters: frozenset[str]) -> float:
    """The official expected score `1 / comb(4, len(label))`; a label of five or six letters divides by zero
    there (the rescore crash of issue 16), and a label without letters is malformed: both are `ItemError`."""
    if not label_letters:
        raise ItemError("the multi-select label holds no letter A-F on its last line")
    if len(label_letters) > 4:
        raise ItemError(
            f"the official scorer divides by comb(4, {len(label_letters)}) = 0 for the label "
            f"{''.join(sorted(label_letters))!r} (it assumes four options)"
        )
    return 1.0 / math.comb(4, len(label_letters))


def doit_mc_chance(n_options: int) -> float:
    """The official expected score of an MC item: 0.25, and 0.33 (sic) for a three-option dialogue item."""
    return 0.33 if n_options == 3 else 0.25


def doit_rank3(perplexities: Sequence[float]) -> tuple[bool, str]:
    """(correct, rule) by `scorer.py`: `min(ppl) == ppl[0]` with Python's `min`, so ties count as correct and a
    NaN wins or loses by its position, exactly as there."""
    if not perplexities:
        raise ItemError("a ranking item without perplexities")
    values = list(perplexities)
    return min(values) == values[0], "min_equals_first"
