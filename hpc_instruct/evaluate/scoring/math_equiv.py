"""MATH-style answer equivalence: normalise two LaTeX answers, then compare exactly or as numbers.

Normalisation removes what never changes an answer's value: spaces, `\\left`/`\\right`, thin spaces (`\\!`,
`\\,`), dollar signs, degree marks, percent signs ("50\\%" equals "50", as in the MATH grader), units in
`\\text{...}` or written after a number ("5 cm", "12元"), a leading "+", a trailing period, thousands separators
("1,000"), `\\dfrac`/`\\tfrac`, and shorthand such as `\\frac12` and `\\sqrt2`. An assignment "x = 3" is compared
by its right-hand side when the other answer is not itself an equation. Plain numbers are compared exactly as
fractions, so "0.5", ".5", "1/2", "\\frac{1}{2}" and "\\dfrac{2}{4}" are all equal, and so are "3" and "3.0".
Several answers are compared as a whole: a plain list ("3, 5", "x=3或x=5", "\\{3, 5\\}") is unordered, as
MATH's "enter all solutions" answers are; a bracketed tuple or interval ("(1, 2)", "[0, 1)") keeps its order and
its brackets; "\\pm" (or "±") stands for both signs ("x=\\pm 3" is "3, -3"). With `symbolic=True`, two
expressions that are still different are compared by sympy (`symbolic.py`): "2\\sqrt{2}" equals "\\sqrt{8}".
"""

from __future__ import annotations

import re
from fractions import Fraction

from hpc_instruct.evaluate.scoring.normalize import CJK_SPAN, fold_width

_DROP = (
    "\\left",
    "\\right",
    "\\!",
    "\\,",
    "\\;",
    "\\:",
    "\\ ",
    "~",
    "\\$",
    "$",
    "\\%",
    "%",
    "\\displaystyle",
)
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox|operatorname)\s*\{([^{}]*)\}")
# Unit words stripped after a number. One-letter units need a space before them ("5 m"), so that "5m" (five
# times m) and "2h" stay expressions.
_LONG_UNITS = (
    "cm|mm|km|meters?|metres?|inch(?:es)?|in|feet|foot|ft|yards?|yd|miles?|mi|grams?|kg|mg|pounds?|lbs?|oz|"
    "ounces?|seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|dollars?|cents?|degrees?|"
    "units?|square\\s*units?|sq\\s*units?|liters?|litres?|ml|mph|people|students|ways"
)
_UNIT_POWER = r"(?:\^\{?[23]\}?)?"
_TRAILING_UNIT = re.compile(
    rf"^(.*?\d)(?:\s*(?:{_LONG_UNITS})|\s+(?:m|g|s|h|l)){_UNIT_POWER}$", re.IGNORECASE
)
_SHORT_FRAC = re.compile(r"\\frac\s*(\d|\{[^{}]*\})\s*(\d|\{[^{}]*\})")
_SHORT_SQRT = re.compile(r"\\sqrt\s*(\d+|[a-zA-Z])")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_DECIMAL = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)$")
_SLASH = re.compile(r"^([-+]?\d+)/(\d+)$")
_FRAC = re.compile(r"^([-+]?)\\frac\{([-+]?(?:\d+\.?\d*|\.\d+))\}\{([-+]?(?:\d+\.?\d*|\.\d+))\}$")


def _unwrap_text(answer: str) -> str:
    """Drop a trailing `\\text{unit}` after a value; unwrap any other `\\text{...}` to its content."""
    trailing = re.match(r"^(.*\S)\s*" + _TEXT_CMD.pattern + r"\s*$", answer)
    if trailing and not _TEXT_CMD.search(trailing.group(1)) and re.search(r"[\d}]", trailing.group(1)):
        answer = trailing.group(1)
    return _TEXT_CMD.sub(lambda m: m.group(1), answer)


def _braces(part: str) -> str:
    return part if part.startswith("{") else "{" + part + "}"


def normalize_math(answer: str) -> str:
    """The canonical string form of an answer (see module docstring); "" for an empty answer."""
    text = fold_width(answer).strip()
    text = (
        text.replace("\n", " ")
        .replace("或", ",")
        .replace("±", "\\pm")
        .replace("\\dfrac", "\\frac")
        .replace("\\tfrac", "\\frac")
    )
    text = _DEGREES.sub("", text)
    text = _unwrap_text(text)
    for token in _DROP:
        text = text.replace(token, "")
    text = text.strip().rstrip(".。").strip()
    # Units after a number: "5 cm", "12 平方米", "3个".
    cjk_unit = re.match(rf"^(.*\d)\s*(?:{CJK_SPAN.pattern})$", text)
    if cjk_unit:
        text = cjk_unit.group(1)
    unit = _TRAILING_UNIT.match(text)
    if unit:
        text = unit.group(1)
    text = text.replace(" ", "")
    text = _SHORT_FRAC.sub(lambda m: "\\frac" + _braces(m.group(1)) + _braces(m.group(2)), text)
    text = _SHORT_SQRT.sub(lambda m: "\\sqrt{" + m.group(1) + "}", text)
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    if text.startswith("+"):
        text = text[1:]
    return text


def math_value(normalized: str) -> Fraction | None:
    """The exact value of a normalised plain number ("0.5", "-3", "1/2", "\\frac{1}{2}"), else None."""
    try:
        if _DECIMAL.match(normalized):
            return Fraction(normalized)
        slash = _SLASH.match(normalized)
        if slash and int(slash.group(2)) != 0:
            return Fraction(int(slash.group(1)), int(slash.group(2)))
        frac = _FRAC.match(normalized)
        if frac and Fraction(frac.group(3)) != 0:
            value = Fraction(frac.group(2)) / Fraction(frac.group(3))
            return -value if frac.group(1) == "-" else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside braces, brackets or parentheses."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "{([":
            depth += 1
        elif char in "})]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p]


def _expand_pm(parts: list[str]) -> list[str]:
    """Each element holding one "\\pm" as two elements: "\\pm3" -> "3", "-3"; "2\\pm\\sqrt{3}" -> "2+…", "2-…"."""
    out = []
    for part in parts:
        if part.count("\\pm") != 1:
            out.append(part)
            continue
        left, right = part.split("\\pm")
        lhs = left[: left.rfind("=") + 1] if "=" in left else ""
        base = left[len(lhs) :]
        out += [lhs + (base + "+" + right if base else right), lhs + base + "-" + right]
    return out


def _bracketed(text: str) -> tuple[str, str, str] | None:
    """(open, inside, close) of an answer wrapped in one pair of brackets ("(1,2)", "[0,1)", "\\{1,2\\}")."""
    for opening, closings in (("\\{", ("\\}",)), ("(", (")", "]")), ("[", ("]", ")"))):
        for closing in closings:
            if (
                text.startswith(opening)
                and text.endswith(closing)
                and len(text) > len(opening) + len(closing)
            ):
                inside = text[len(opening) : -len(closing)]
                if _split_top_level(inside) and inside.count("(") == inside.count(")"):
                    return opening, inside, closing
    return None


def _rhs(part: str) -> str:
    return part.rsplit("=", 1)[-1]


def _same_atom(a: str, b: str, symbolic: bool) -> bool:
    """One answer against one answer: as strings, as exact numbers, or (optionally) symbolically."""
    if a == b:
        return True
    va, vb = math_value(a), math_value(b)
    if va is not None and vb is not None:
        return va == vb
    if ("=" in a) != ("=" in b):  # "x=3" against "3": the right-hand side
        return _same_atom(_rhs(a), _rhs(b), symbolic) if _rhs(a) and _rhs(b) else False
    if symbolic and va is None and vb is None:
        from hpc_instruct.evaluate.scoring.symbolic import symbolic_equal

        return symbolic_equal(a, b)
    return False


def _same(a: str, b: str, symbolic: bool = False) -> bool:
    """Equal answers: single values, unordered lists, ordered tuples and intervals (see module docstring)."""
    if a == b:
        return True
    ba, bb = _bracketed(a), _bracketed(b)
    if ba and bb and len(_split_top_level(ba[1])) > 1:
        if ba[0] == "\\{" and bb[0] == "\\{":  # sets: unordered
            return _same_multiset(_split_top_level(ba[1]), _split_top_level(bb[1]), symbolic)
        if (ba[0], ba[2]) != (bb[0], bb[2]):
            return False
        pa, pb = _split_top_level(ba[1]), _split_top_level(bb[1])
        return len(pa) == len(pb) and all(_same_atom(x, y, symbolic) for x, y in zip(pa, pb, strict=True))
    pa, pb = _expand_pm(_split_top_level(a)), _expand_pm(_split_top_level(b))
    if len(pa) > 1 or len(pb) > 1:
        return _same_multiset(pa, pb, symbolic)
    return _same_atom(a, b, symbolic)


def _same_multiset(pa: list[str], pb: list[str], symbolic: bool) -> bool:
    """Every element of one list pairs with a distinct equal element of the other (order ignored)."""
    if len(pa) != len(pb):
        return False
    left = list(pb)
    for x in pa:
        match = next((i for i, y in enumerate(left) if _same_atom(x, y, symbolic)), None)
        if match is None:
            return False
        left.pop(match)
    return True


def is_equivalent(prediction: str | None, reference: str | None, *, symbolic: bool = False) -> bool:
    """True when `prediction` and `reference` denote the same answer (see module docstring). None or an empty
    answer on either side is never equivalent (the official `None == None` is a defect)."""
    if prediction is None or reference is None:
        return False
    a, b = normalize_math(prediction), normalize_math(reference)
    if not a or not b:
        return False
    return _same(a, b, symbolic)
