"""Extract the final answer of a chain-of-thought math reply, `corrected` mode (DoIT math, PRM800K problems).

Order: the boxed answer (`\\boxed{...}` or `\\fbox{...}`, braces balanced, searched in the whole reply so a box
written before the word 答案 counts; boxes joined only by "或", "和", commas or "x=" form one answer, any other
text between them is a change of mind and the last box wins); else, in the text after the last "答案" or
"answer", the last inline math (`$...$`, `\\(...\\)`, never greedy across spans, spans joined by connectors
forming one answer); else alternatives written out ("x=3或x=5", "x = 3 or x = -3"); else the value right after
the last "=" (up to the end of its clause: prose, CJK units and a following sentence are dropped); else the
last number, read with its sign, thousands separators, a fraction ("3/4", "\\frac{3}{4}") or a percent sign,
also right after a CJK character ("共42个"), and ignoring numbers inside a parenthesised aside when there are
others. Comparison is `math_equiv`'s job.
"""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_INLINE_MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)", re.DOTALL)
_CONNECT = r"(?:或者?|和|以及|、|,|，|;|；|or|and)"
_BOX_JOIN = re.compile(rf"^\s*\$?\s*(?:{_CONNECT})?\s*\$?\s*(?:[A-Za-z]\w*\s*=\s*)?\$?\s*$")
_INLINE_JOIN = re.compile(rf"\s*{_CONNECT}\s*")
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_.\\])[-+]?(?:\\frac\{\d+\}\{\d+\}|(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?%?)"
)
_VALUE = r"[-+]?\s*(?:\\pm\s*|±\s*)?(?:\\frac\{[^{}]+\}\{[^{}]+\}|\\sqrt\{?\w+\}?|\d+(?:\.\d+)?(?:/\d+)?)"
_ALTERNATIVES = re.compile(
    rf"(?:[A-Za-z]\w*\s*=\s*)?{_VALUE}(?:\s*{_CONNECT}\s*(?:[A-Za-z]\w*\s*=\s*)?{_VALUE})+\s*[.。]?\s*$"
)
_ASSIGNED = re.compile(r"[A-Za-z]\w*\s*=\s*")
# After the last "=": a value made of math characters, stopping at CJK, sentence punctuation or a prose word.
_EQ_VALUE = re.compile(
    r"^\s*([-+]?[\w\\{}^()\[\]./*+\-√π°%' ]*?)\s*(?=$|[，,。；;：:!！?？\n]|[^\x00-\x7f√π°]|\s[A-Za-z]{3,})"
)
_ASIDE = re.compile(r"\([^()]*\)|（[^（）]*）")
_REGION_MARK = re.compile(r"答案|answer", re.IGNORECASE)


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """(content, end) of the `{...}` that opens at `start`, braces balanced; None if it never closes."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # an escaped character: "\{" and "\}" are literal braces (sets), not grouping
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    return None


def boxes(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every `\\boxed{...}`/`\\fbox{...}` (also `\\boxed 5`), in order."""
    found = []
    for start in sorted(m.start() for cmd in _BOX_COMMANDS for m in re.finditer(re.escape(cmd), text)):
        cmd = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
        after = start + len(cmd)
        rest = text[after:]
        stripped = rest.lstrip()
        if stripped.startswith("{"):
            inside = _braced(text, after + len(rest) - len(stripped))
            if inside is not None:
                found.append((start, inside[1], inside[0]))
        elif rest[:1].isspace() and stripped:
            value = re.split(r"[\s$]", stripped, maxsplit=1)[0]  # "\boxed 5$" (MATH's unbraced form)
            found.append((start, after + len(rest) - len(stripped) + len(value), value))
    return found


def last_boxed(text: str) -> str | None:
    """The content of the last box, or None."""
    found = boxes(text)
    return found[-1][2] if found else None


def _joined_boxes(text: str) -> str | None:
    """The last box, with the boxes before it that only connectors separate from it ("\\boxed{3}或\\boxed{5}")."""
    found = boxes(text)
    if not found:
        return None
    group = [found[-1]]
    for earlier in reversed(found[:-1]):
        if not _BOX_JOIN.match(text[earlier[1] : group[0][0]]):
            break
        group.insert(0, earlier)
    return ", ".join(content.strip() for _, _, content in group)


def _last_inline_group(text: str) -> str:
    """The last inline math span; spans joined only by connectors form one answer."""
    matches = [m for m in _INLINE_MATH.finditer(text) if next(g for g in m.groups() if g is not None).strip()]
    if not matches:
        return ""
    group = [matches[-1]]
    for earlier in reversed(matches[:-1]):
        if not _INLINE_JOIN.fullmatch(text[earlier.end() : group[0].start()]):
            break
        group.insert(0, earlier)
    return ", ".join(next(g for g in m.groups() if g is not None).strip() for m in group)


def _last_clause(text: str) -> str:
    clauses = [c for c in re.split(r"[\n。；;：:]|(?<![\d])\.(?!\d)", text) if c.strip()]
    return clauses[-1] if clauses else ""


def _alternatives(text: str) -> str:
    """ "x=3或x=5" / "x = 3 or x = -3" at the end of the last clause as "3, 5"; "" when absent."""
    match = _ALTERNATIVES.search(_last_clause(text).strip())
    if match is None:
        return ""
    parts = re.split(rf"\s*{_CONNECT}\s*", match.group(0).strip().rstrip(".。"))
    return ", ".join(_ASSIGNED.sub("", part).strip() for part in parts if part.strip())


def _after_equals(text: str) -> str:
    """The value right after the last "=", without the prose, units or sentences that follow it."""
    tail = text.rsplit("=", 1)[1]
    match = _EQ_VALUE.match(tail)
    return match.group(1).strip() if match else ""


def _last_number(text: str) -> str:
    """The last number, preferring numbers outside parenthesised asides."""
    outside = _NUMBER.findall(_ASIDE.sub(" ", text))
    numbers = outside or _NUMBER.findall(text)
    return numbers[-1].lstrip("+") if numbers else ""


def extract_math_answer(response: str) -> tuple[str, str]:
    """(answer text, rule) with rule in "boxed", "dollar", "alternatives", "equals", "last_number", "none"."""
    boxed = _joined_boxes(response)
    if boxed is not None and boxed.strip():
        return boxed.strip(), "boxed"
    marks = list(_REGION_MARK.finditer(response))
    after = response[marks[-1].end() :] if marks else ""
    region = after if re.search(r"[\d$\\]", after) else response  # "... which is the answer." says nothing
    inline = _last_inline_group(region)
    if inline:
        return inline, "dollar"
    alternatives = _alternatives(region)
    if alternatives:
        return alternatives, "alternatives"
    if "=" in region:
        value = _after_equals(region)
        if value:
            return value, "equals"
    number = _last_number(region)
    if number:
        return number, "last_number"
    return "", "none"
