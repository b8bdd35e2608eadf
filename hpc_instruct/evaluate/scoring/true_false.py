"""True/false answers (DoIT history items), `corrected` mode: verdict words read with their negations.

The official rule (`official.parse_doit_true_false`) looks for substrings of {正确,对,T,√,V} and {错误,错,F,×,X}:
"不正确" reads as true, "True" holds "T" and "False" holds "F", "对于" holds "对", and a reply holding both
sets is unanswered. This module tokenises verdicts instead, longest and negated forms first:
- negations: 不正确, 不是正确的, 并不对, 不成立 and 有误 are false; 没错, 没有错误, 无误, 不是错的 are true;
- the vocabulary a grader accepts: ✓ ✔ ✅ / ✗ ✘ ❌, true/false, correct/incorrect, wrong; yes/no and right only
  where a reply opens with them; T/F/V/X only as a letter standing alone, never inside an English word;
- spaces inside Chinese verdicts ("正 确") are ignored; 对 and 错 inside other words (对于, 相对, 错过) are not
  verdicts; "正确的说法是……" introduces a correction and is not a verdict either;
- the verdict after an answer phrase ("答案：错误", "判断：对", "Answer: false") wins; else all verdicts agreeing
  decide; else, both polarities present, the first verdict (replies open with their judgement:
  "错误。正确的表述应该是……").
"""

from __future__ import annotations

import re

from hpc_instruct.evaluate.scoring.modes import ItemError
from hpc_instruct.evaluate.scoring.normalize import fold_width
from hpc_instruct.evaluate.scoring.official import FALSE_WORDS, TRUE_WORDS

_CJK = "\u3400-\u4dbf\u4e00-\u9fff"
_WORD = r"(?<![A-Za-z])(?:{})(?![A-Za-z])"  # an English word or letter standing alone
_FALSE = "|".join(
    (
        r"不是正确的|不正确|不完全正确|并不正确|不准确|不是对的|并不对|不对|不成立|有误|有错|是错的|错误",
        r"(?<![交过])错(?![过落综开觉])|[×✗✘✕❌]",
        _WORD.format(r"(?:not|isn't|is\s+not)\s+(?:true|correct|right)|incorrect|false|wrong|F|X"),
    )
)
_TRUE = "|".join(
    (
        r"没有错误|没有错|并没有错|没错|无误|并无错误|不是错误的|不是错的|并非错误|不错|正确|是对的|成立",
        r"(?<![相针绝面反核应比配])对(?![于比应待象方话称照手立抗外内])|[√✓✔✅]",
        _WORD.format("correct|true|T|V"),
    )
)
_OPENING = re.compile(r"^\W*(?:(?P<true>yes|right)|(?P<false>no))(?![A-Za-z])", re.IGNORECASE)
_VERDICT = re.compile(rf"(?P<false>{_FALSE})|(?P<true>{_TRUE})", re.IGNORECASE)
# "正确的说法是", "正确答案", "正确的是": a correction follows; the words are not a verdict.
_NOT_A_VERDICT = re.compile(
    r"正确的?(?:说法|表述|答案|做法|理解|观点|应该|应为|是)|正确答案|correct (?:answer|statement) is",
    re.IGNORECASE,
)
_INTRO = re.compile(
    r"(?:答案|判断|结论|结果|answer|verdict)\s*(?:是|为|应为|应该是|is)?\s*[:：]?\s*", re.IGNORECASE
)
_CHOICE = re.compile(r"还是|或者?|(?<![A-Za-z])or(?![A-Za-z])|/", re.IGNORECASE)
_CJK_SPACES = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")


def reference_truth(reference: str) -> str:
    """The reference as "T" or "F" (one of the ten DoIT keywords, full-width folded); `ItemError` otherwise."""
    folded = fold_width(reference).strip()
    has_true = any(word in folded for word in TRUE_WORDS)
    has_false = any(word in folded for word in FALSE_WORDS)
    if has_true == has_false:
        raise ItemError(f"true/false reference must be one of {TRUE_WORDS + FALSE_WORDS}, got {reference!r}")
    return "T" if has_true else "F"


def _verdicts(text: str) -> list[tuple[int, str]]:
    """(position, "T" | "F") of every verdict word, corrections' introductions masked out."""
    masked = _NOT_A_VERDICT.sub(lambda m: " " * len(m.group(0)), text)
    return [(m.start(), "T" if m.group("true") else "F") for m in _VERDICT.finditer(masked)]


def parse_true_false(response: str) -> tuple[str, str]:
    """Parse a true/false reply the `corrected` way; returns ("T" | "F" | "", rule).

    Rules: "answer_phrase", "opening_word" (yes/no/right), "consistent", "first_verdict", "ambiguous" (the
    two verdicts offered as a choice), "none", "empty".
    """
    text = _CJK_SPACES.sub("", fold_width(response)).strip()
    if not text:
        return "", "empty"
    found = _verdicts(text)
    intros = [m.end() for m in _INTRO.finditer(text)]
    for end in reversed(intros):
        after = [truth for pos, truth in found if end <= pos <= end + 2]
        if after:
            return after[0], "answer_phrase"
    opening = _OPENING.match(text)
    if opening:
        return ("T" if opening.group("true") else "F"), "opening_word"
    if not found:
        return "", "none"
    truths = {truth for _, truth in found}
    if len(truths) == 1:
        return truths.pop(), "consistent"
    second = next(pos for pos, truth in found if truth != found[0][1])
    if _CHOICE.search(text[found[0][0] : second]):
        return "", "ambiguous"  # "正确还是错误？", "true or false": a question, not a verdict
    return found[0][1], "first_verdict"
