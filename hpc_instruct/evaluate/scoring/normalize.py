"""Text normalisation shared by the answer parsers: full-width forms, Chinese punctuation, CJK spans.

Model replies to Chinese exam questions mix half- and full-width characters ("Ａ", "（B）", "答案：C。"). Every
parser first folds them to one form so that a rule such as "a one-character reply is the letter" means the same
thing whatever keyboard the reference or the model used. Pure functions, no dependencies.
"""

from __future__ import annotations

import re
import unicodedata

# Unicode blocks of CJK ideographs: the unified block, extension A and the compatibility block. DoIT's original
# parser used only U+4E00..U+9FFF; the two extra blocks hold rare characters that cannot change a match between
# common words, so they are included to keep a span from breaking in the middle of a rare character.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_CHARS = _CJK  # for use inside a character class
CJK_SPAN = re.compile(f"[{_CJK}]+")

# Punctuation that NFKC leaves full-width (it folds （）：，！？ but not the ideographic ones below).
_CJK_PUNCT = "。、，；：？！（）【】《》〈〉「」『』〔〕“”‘’…—～·￥"


def fold_width(text: str) -> str:
    """NFKC-fold full-width letters, digits and punctuation to ASCII ("Ａ" -> "A", "（" -> "(", "：" -> ":")."""
    return unicodedata.normalize("NFKC", text)


def is_punctuation(char: str) -> bool:
    """True for ASCII and Unicode punctuation (category P*) and the Chinese marks NFKC does not fold."""
    return unicodedata.category(char).startswith("P") or char in _CJK_PUNCT


def strip_punctuation(text: str) -> str:
    """Strip whitespace and punctuation from both ends ("**B**。" -> "B", " （Ｃ） " -> "C" after folding)."""
    start, end = 0, len(text)
    while start < end and (text[start].isspace() or is_punctuation(text[start])):
        start += 1
    while end > start and (text[end - 1].isspace() or is_punctuation(text[end - 1])):
        end -= 1
    return text[start:end]


def last_nonempty_line(text: str) -> str:
    """The last line that holds something other than whitespace (DoIT parses multi-select answers from it)."""
    for line in reversed(text.splitlines()):
        if line.strip():
            return line
    return ""


def first_cjk_span(text: str) -> str | None:
    """The first maximal run of CJK ideographs, or None when the text has none."""
    match = CJK_SPAN.search(text)
    return match.group(0) if match else None


# Prose that introduces an answer: "答案是", "答案为：", "正确答案：", "故选", "Answer:", "the answer is".
# Used only by the `corrected` readers, never by the official (`doit`) rules.
ANSWER_INTRO = re.compile(
    r"(?:正确)?答案(?:应该|应)?(?:是|为|选)?\s*[:：]?\s*|故选\s*|应选\s*|选择?\s*[:：]?\s*"
    r"|(?:the\s+)?(?:correct\s+)?answer\s*(?:is|:)\s*",
    re.IGNORECASE,
)
