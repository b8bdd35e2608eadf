"""The official DoIT math rules, reproduced verdict for verdict: answer extraction (`parse_math_tasks` in
`evaluate/parse_utils.py`) and equivalence (`is_equiv` in `evaluate/math_equivalence.py`).

Written from a reading of the original (not copied). Its defects are kept, since `doit` is the reproduction
mode; the `corrected` scorer (`math_answer`, `math_equiv`) fixes each of them:
- everything before the last "答案" is dropped first, so a `\\boxed{}` written before that word is lost;
- `\\fbox{...}` is found but then unwrapped as if it were `\\boxed{`, which fails: no answer at all;
- `$...$` is greedy within a line ("$x$ and $y$" gives "x$ and $y"), then "$" is deleted;
- without `$`, the last parenthesised group wins ("12 (twelve)" gives "(twelve)"); else text after the last
  "=" up to a literal backslash-n (never a real newline), dragging prose and units along; else the last
  number not followed by a word character;
- in `is_equiv`, a string of digits, commas and `-./:;<=>?` becomes a set inside `_strip_string`, which then
  raises on a regex match, and the fallback compares the two raw strings: numeric answers are never
  normalised ("5.0" is not "5", " 5" is not "5"); plain "%" is kept; `None == None` is true.
"""

from __future__ import annotations

import re

_ANSWER_WORD = "答案"
_DOLLAR = re.compile(r"\$(.*)\$")
_PLAIN_NUMBER = re.compile(r"(?:\$)?(?:-)?\d+(?:\.\d+)?(?![\w\d])")
_NUMERIC_RUN = re.compile(r"^[,-?\d]+$")  # the official class: "," to "?" (",-./0-9:;<=>?") plus digits
_SQRT_CALL = re.compile(r"(sqrt\([^)]*\))")
_BRACKETED = re.compile(r"(\[.*?\]|\(.*?\))")
_NON_ALNUM = re.compile(r"[^a-zA-Z0-9]")


def _last_box(text: str) -> str | None:
    """`last_boxed_only_string`: from the last "\\boxed" (else "\\fbox") to the brace that balances the count."""
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def _unbox(box: str) -> str | None:
    """`remove_boxed`: the inside of "\\boxed{...}" (its right-hand side after an "="), else None (\\fbox too)."""
    left = "\\boxed{"
    if not (box.startswith(left) and box.endswith("}")):
        return None
    inner = box[len(left) : -1]
    return inner.split("=")[-1].lstrip(" ") if "=" in inner else inner


def _dollar_answer(text: str) -> str | None:
    """`get_answer_with_dollar_sign`: the last greedy `$...$` match, its right-hand side after an "="."""
    matches = _DOLLAR.findall(text)
    if not matches:
        return None
    last = matches[-1]
    return last.split("=")[-1].lstrip(" ") if "=" in last else last


def _special_case(text: str) -> str | None:
    """`get_answer_special_case`: "a/b", a numeric run, the last "sqrt(...)", else the last bracketed group."""
    text = text.strip()
    halves = text.split("/")
    if len(halves) == 2:
        return None if _NON_ALNUM.search(halves[0]) or _NON_ALNUM.search(halves[1]) else text
    text = text.replace("，", ",")
    if _NUMERIC_RUN.match(text):
        return text
    text = text.replace(" ", "")
    sqrt = _SQRT_CALL.findall(text)
    if sqrt:
        return sqrt[-1]
    groups = _BRACKETED.findall(text)
    return groups[-1] if groups else None


def _plain_answer(text: str) -> str | None:
    """`get_answer_without_dollar_sign`: after the last "=" (cut at a literal "\\n"), else the last number."""
    if "=" in text:
        tail = text.split("=")[-1].lstrip(" ").rstrip(".")
        return tail.split("\\n")[0] if "\\n" in tail else tail
    numbers = _PLAIN_NUMBER.findall(text)
    return numbers[-1].strip("$") if numbers else None


def doit_math_answer(reply: str) -> tuple[str | None, str]:
    """(answer or None, rule) by the official `parse_math_tasks`."""
    if _ANSWER_WORD in reply:
        reply = reply.split(_ANSWER_WORD)[-1].strip()
    box = _last_box(reply)
    if box is not None:
        answer, rule = _unbox(box), "boxed"
    else:
        answer, rule = _dollar_answer(reply), "dollar"
        if not answer:
            answer, rule = _special_case(reply), "special_case"
        if not answer:
            answer, rule = _plain_answer(reply), "equals" if "=" in reply else "last_number"
    if answer is None:
        return None, f"{rule}_none"
    return answer.replace("或", ", ").replace("$", ""), rule


# ---- is_equiv ---------------------------------------------------------------------------------------------


class _NumericSet(Exception):
    """Raised where the official `_strip_string` turns a numeric string into a set and then crashes."""


def _fix_fracs(text: str) -> str:
    """`_fix_fracs`: "\\frac12" -> "\\frac{1}{2}", "\\frac1{2}" -> "\\frac{1}{2}"; IndexError on a bare "\\frac"."""
    parts = text.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part[0] == "{":  # an empty part raises IndexError, as in the original
            out += part
            continue
        if len(part) < 2:
            return text
        a, b, rest = part[0], part[1], part[2:]
        out += "{" + a + "}{" + b + "}" + rest if b != "{" else "{" + a + "}" + b + rest
    return out


def _fix_slash(text: str) -> str:
    """`_fix_a_slash_b`: "3/4" -> "\\frac{3}{4}", "-3/4" -> "-\\frac{3}{4}"; IndexError on "/4"."""
    halves = text.split("/")
    if len(halves) != 2:
        return text
    a, b = halves
    negative = a[0] == "-"
    if negative:
        a = a[1:]
    try:
        num, den = int(a), int(b)
    except ValueError:
        return text
    if negative:
        return "-\\frac{" + str(num) + "}{" + str(den) + "}"
    if text != f"{num}/{den}":
        return text
    return "\\frac{" + str(num) + "}{" + str(den) + "}"


def _fix_sqrt(text: str) -> str:
    """`_fix_sqrt`: "\\sqrt3" -> "\\sqrt{3}"; IndexError on a trailing "\\sqrt"."""
    if "\\sqrt" not in text:
        return text
    parts = text.split("\\sqrt")
    out = parts[0]
    for part in parts[1:]:
        out += "\\sqrt" + part if part[0] == "{" else "\\sqrt{" + part[0] + "}" + part[1:]
    return out


def _strip(text: str) -> str:
    """The official `_strip_string`, up to the point where a numeric string becomes a set (`_NumericSet`)."""
    text = text.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    text = text.replace("tfrac", "frac").replace("dfrac", "frac")
    text = text.replace("\\left", "").replace("\\right", "")
    text = text.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    if "\\text{ " in text:  # units on the right; an AssertionError when there are two of them
        parts = text.split("\\text{ ")
        if len(parts) != 2:
            raise AssertionError("two '\\text{ ' units")
        text = parts[0]
    text = text.replace("\\%", "")
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    if not text:
        return text
    if text[0] == ".":
        text = "0" + text
    sides = text.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        text = sides[1]
    text = _fix_sqrt(text).replace(" ", "")
    text = _fix_fracs(text)
    if text == "0.5":
        text = "\\frac{1}{2}"
    text = _fix_slash(text)
    if _NUMERIC_RUN.match(text):
        raise _NumericSet(text)
    if "\\frac{" in text:
        text = re.sub(r"\\frac{(-)(\d+)}{(\d+)}", r"-\\frac{\2}{\3}", text)
    letter = re.findall(r"\\text\{\((A|B|C|D|E|F)\)", text)
    if re.match(r"\\text\{\((A|B|C|D|E|F)\)", text):
        text = letter[-1]
    return text


def doit_math_equiv(prediction: str | None, label: str | None) -> bool:
    """The official `is_equiv(prediction, label)`: both None is true; any exception inside the normalisation
    (including the numeric-set crash) falls back to comparing the raw strings."""
    if prediction is None and label is None:
        return True
    if prediction is None or label is None:
        return False
    try:
        return _strip(prediction) == _strip(label)
    except Exception:  # noqa: BLE001 - the official code catches everything here, and so must a reproduction
        return prediction == label
