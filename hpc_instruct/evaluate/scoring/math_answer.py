"""Extract the final answer of a chain-of-thought math reply (DoIT math items, PRM800K problems).

Order, as in the paper: the last `\\boxed{...}` (or `\\fbox{...}`), with nested braces matched; else the last
inline math `$...$` (or `\\(...\\)`); else what follows the last "="; else the last number. Inline spans joined
only by "或", "和" or commas form one answer ("$\\frac34$或$-\\frac34$"), as in the original's special case.
When there is no box, the search is limited to the text after the last "答案" ("answer"), because Chinese replies
usually state the result there and the original parser did the same. Comparison is `math_equiv`'s job.
"""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_INLINE_MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)", re.DOTALL)
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?%?")
_TRAILING = " \t.。,，;；:：!！"
_CONNECTOR = re.compile(r"\s*(?:或|和|、|,|，|or|and)\s*")


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the `{...}` that opens at `start`, braces balanced; None if it never closes."""
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


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}`/`\\fbox{...}` (or `\\boxed 5`), or None."""
    starts = sorted((m.start(), cmd) for cmd in _BOX_COMMANDS for m in re.finditer(re.escape(cmd), text))
    for start, cmd in reversed(starts):
        after = start + len(cmd)
        rest = text[after:]
        stripped = rest.lstrip()
        if stripped.startswith("{"):
            found = _braced(text, after + len(rest) - len(stripped))
            if found is not None:
                return found[0]
        elif rest[:1].isspace() and stripped:
            return re.split(r"[\s$]", stripped, maxsplit=1)[0]  # "\boxed 5$" (MATH's unbraced form)
    return None


def _after_equals(text: str) -> str:
    """What follows the last "=", up to the end of its line, without trailing punctuation."""
    tail = text.rsplit("=", 1)[1]
    return tail.strip().split("\n", 1)[0].strip().rstrip(_TRAILING)


def _last_inline_group(text: str) -> str:
    """The last inline math span; spans joined only by "或", "和", "、" or commas form one answer
    ("$\\frac34$或$-\\frac34$" -> "\\frac34, -\\frac34"), as the original's special case did."""
    matches = [m for m in _INLINE_MATH.finditer(text) if next(g for g in m.groups() if g is not None).strip()]
    if not matches:
        return ""
    group = [matches[-1]]
    for earlier in reversed(matches[:-1]):
        if not _CONNECTOR.fullmatch(text[earlier.end() : group[0].start()]):
            break
        group.insert(0, earlier)
    return ", ".join(next(g for g in m.groups() if g is not None).strip() for m in group)


def extract_math_answer(response: str) -> tuple[str, str]:
    """(answer text, method) with method in "boxed", "dollar", "equals", "last_number", "none"."""
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed.strip(), "boxed"
    region = response.rsplit("答案", 1)[1] if "答案" in response else response
    inline = _last_inline_group(region)
    if inline:
        return inline, "dollar"
    if "=" in region:
        tail = _after_equals(region)
        if tail:
            return tail, "equals"
    numbers = _NUMBER.findall(region)
    if numbers:
        return numbers[-1], "last_number"
    return "", "none"
