"""Symbolic equivalence of two math answers with sympy (optional: `is_equivalent(..., symbolic=True)`).

For answers that are still different after `math_equiv`'s normalisation: "2\\sqrt{2}" and "\\sqrt{8}",
"\\frac{x+1}{2}" and "0.5x+0.5", "(x+1)^2" and "x^2+2x+1". A small LaTeX subset is translated to sympy syntax
(fractions, roots, powers, \\cdot/\\times/\\div, \\pi, e, common functions, implicit multiplication); anything
else (an unknown command, text) is "not provably equal". The translation is checked against a closed
vocabulary before sympy sees it, because sympy's parser evaluates Python: a model's reply never reaches `eval`
with anything but digits, operators, parentheses, single-letter symbols and the listed function names.
sympy is imported on first use only (it takes a second), so scoring without this option never loads it.
"""

from __future__ import annotations

import functools
import re

MAX_LENGTH = 200  # longer answers are not simplified (simplify can take very long on large expressions)
_FUNCTIONS = ("sqrt", "sin", "cos", "tan", "log", "ln", "exp", "pi", "oo")
_COMMANDS = {
    "\\cdot": "*", "\\times": "*", "\\div": "/", "\\pi": "pi", "\\infty": "oo", "\\ln": "log", "\\log": "log",
    "\\sin": "sin", "\\cos": "cos", "\\tan": "tan", "\\exp": "exp",
}  # fmt: skip
_SAFE = re.compile(r"^[0-9A-Za-z+\-*/().,^ ]*$")
_IDENT = re.compile(r"[A-Za-z]+")


def _group(text: str, start: int) -> tuple[str, int]:
    """(content, end) of the `{...}` at `start`, or of the single character there (`\\frac12`)."""
    if start >= len(text):
        raise ValueError("missing argument")
    if text[start] != "{":
        return text[start], start + 1
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i], i + 1
    raise ValueError("unbalanced braces")


def latex_to_sympy_syntax(latex: str) -> str:
    """The sympy-parsable form of a LaTeX answer; ValueError for anything outside the supported subset."""
    out, i = [], 0
    while i < len(latex):
        if latex.startswith("\\frac", i):
            num, i = _group(latex, i + 5)
            den, i = _group(latex, i)
            out.append(f"(({latex_to_sympy_syntax(num)})/({latex_to_sympy_syntax(den)}))")
        elif latex.startswith("\\sqrt", i):
            i += 5
            if i < len(latex) and latex[i] == "[":
                end = latex.index("]", i)
                root = latex_to_sympy_syntax(latex[i + 1 : end])
                arg, i = _group(latex, end + 1)
                out.append(f"(({latex_to_sympy_syntax(arg)})**(1/({root})))")
            else:
                arg, i = _group(latex, i)
                out.append(f"sqrt({latex_to_sympy_syntax(arg)})")
        elif latex[i] == "\\":
            command = re.match(r"\\[A-Za-z]+", latex[i:])
            if command is None or command.group(0) not in _COMMANDS:
                raise ValueError(f"unsupported command {latex[i : i + 12]!r}")
            out.append(f" {_COMMANDS[command.group(0)]} ")
            i += len(command.group(0))
        elif latex[i] == "^":
            power, i = _group(latex, i + 1)
            out.append(f"**({latex_to_sympy_syntax(power)})")
        elif latex[i] in "{}":
            out.append("(" if latex[i] == "{" else ")")
            i += 1
        else:
            out.append(latex[i])
            i += 1
    text = "".join(out)
    if not _SAFE.match(text):
        raise ValueError("characters outside the supported subset")
    # Multi-letter words other than the known functions are products of single-letter symbols ("xy" -> x*y).
    return _IDENT.sub(lambda m: m.group(0) if m.group(0) in _FUNCTIONS else "*".join(m.group(0)), text)


@functools.lru_cache(maxsize=4096)
def _to_expr(latex: str):
    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    syntax = latex_to_sympy_syntax(latex).replace("ln", "log")
    symbols = {c: sympy.Symbol(c) for c in set(re.findall(r"(?<![A-Za-z])[A-Za-z](?![A-Za-z])", syntax))}
    symbols.update(e=sympy.E, pi=sympy.pi, oo=sympy.oo)
    transformations = standard_transformations + (implicit_multiplication_application, convert_xor)
    return parse_expr(
        syntax,
        local_dict=symbols,
        global_dict={"__builtins__": {}, **vars(sympy)},
        transformations=transformations,
        evaluate=True,
    )


def symbolic_equal(a: str, b: str) -> bool:
    """True when sympy proves the two (normalised LaTeX) answers equal; False when it cannot or they differ.
    Equations are compared side by side ("y=2x+1" and "y=1+2x")."""
    if len(a) > MAX_LENGTH or len(b) > MAX_LENGTH or a.count("=") != b.count("=") or a.count("=") > 1:
        return False
    try:
        import sympy

        sides = zip(a.split("="), b.split("="), strict=True)
        return all(sympy.simplify(_to_expr(x) - _to_expr(y)) == 0 for x, y in sides)
    except Exception:  # noqa: BLE001 - any parse or simplify failure means "not provably equal"
        return False
