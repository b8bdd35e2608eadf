"""Math answers, `corrected` mode: extraction from chain-of-thought replies and MATH-style equivalence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpc_instruct.evaluate.scoring import is_equivalent, normalize_math, score
from hpc_instruct.evaluate.scoring.math_answer import extract_math_answer, last_boxed

# ---- extraction -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "answer", "method"),
    [
        ("所以答案是 $\\boxed{5}$。", "5", "boxed"),
        ("先得 \\boxed{3}，验算后改为 \\boxed{4}", "4", "boxed"),  # several boxes: the last
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", "boxed"),  # nested braces
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}", "boxed"),  # escaped braces are not grouping
        ("\\fbox{7}", "7", "boxed"),
        ("答案为 \\boxed 9$ 好", "9", "boxed"),
        ("设 $x=2$，则 $y = x^2 = 4$。", "y = x^2 = 4", "dollar"),
        ("面积是 \\(12\\) 平方米", "12", "dollar"),
        ("答案\n$\\frac{3}{4}$或$-\\frac{3}{4}$", "\\frac{3}{4}, -\\frac{3}{4}", "dollar"),  # joined spans
        ("所以 x + 1 = 6。", "6", "equals"),
        ("一共有 12 个苹果，又买了 30 个，共 42 个", "42", "last_number"),
        ("共需 1,250.5 元", "1,250.5", "last_number"),
        ("我不知道", "", "none"),
        ("", "", "none"),
    ],
)
def test_extract_math_answer(response, answer, method):
    assert extract_math_answer(response) == (answer, method)


def test_unclosed_box_falls_back():
    assert last_boxed("\\boxed{3") is None
    assert extract_math_answer("结果 = 8 \\boxed{3") == ("8 \\boxed{3", "equals")


def test_text_after_answer_marker_is_preferred():
    # Without a box, only the text after the last "答案" is searched (as in the original parser).
    assert extract_math_answer("过程中 $x=3$ ……\n答案：5") == ("5", "last_number")


# ---- equivalence ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("0.5", "\\frac{1}{2}"),
        ("1/2", "\\frac{1}{2}"),
        ("\\dfrac{1}{2}", "\\frac12"),
        ("\\tfrac12", "0.5"),
        (".5", "0.50"),
        ("\\frac{2}{4}", "1/2"),
        ("-\\frac{1}{2}", "-0.5"),
        ("50\\%", "50"),
        ("50%", "50"),
        ("3.0", "3"),
        ("1,000", "1000"),
        ("1，000", "1000"),  # full-width comma
        ("x=3", "3"),
        ("x = 3", "3"),
        ("+5", "5"),
        ("5.", "5"),
        ("5\\text{ cm}", "5"),
        ("5 cm", "5"),
        ("12 平方米", "12"),
        ("8个", "8"),
        ("30^\\circ", "30"),
        ("30^{\\circ}", "30"),
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("\\frac{\\sqrt3}{2}", "\\frac{\\sqrt{3}}{2}"),
        ("\\sqrt{2}\\!", "\\sqrt2"),
        ("\\text{(A)}", "(A)"),
        ("1, \\frac12", "1,0.5"),
        ("3或-3", "3, -3"),
        ("y = 2x + 3", "y=2x+3"),
        ("$5$", "5"),
        ("１２", "12"),
    ],
)
def test_equivalent(prediction, reference):
    assert is_equivalent(prediction, reference)
    assert is_equivalent(reference, prediction)


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("2", "3"),
        ("0.33", "\\frac{1}{3}"),
        ("5m", "5"),  # "5m" is an expression, a unit needs a space
        ("3x", "3"),
        ("(1,2)", "[1,2]"),
        ("(1,2)", "(2,1)"),  # a tuple keeps its order
        ("", "0"),
        ("1/0", "0"),
        ("y=3", "x=4"),
    ],
)
def test_not_equivalent(prediction, reference):
    assert not is_equivalent(prediction, reference)


def test_none_prediction():
    assert not is_equivalent(None, "3")


@pytest.mark.parametrize(
    ("response", "reference", "correct"),
    [
        ("……所以 \\boxed{\\dfrac{1}{2}}", "0.5", True),
        ("先算出 \\boxed{2}，不对，应为 \\boxed{3}", "3", True),
        ("\\boxed{x=3}", "3", True),
        ("答案：$\\frac{3}{4}$", "0.75", True),
        ("答案：$\\frac{3}{4}$ 或 $-\\frac34$", "\\frac{3}{4}, -\\frac{3}{4}", True),
        ("共 1,200 元", "1200", True),
        ("答案是 42", "41", False),
        ("", "0", False),
    ],
)
def test_score_math(response, reference, correct):
    result = score("math", response, reference, mode="corrected")
    assert result.correct is correct
    assert result.chance == 0.0


_numbers = st.fractions(min_value=-1000, max_value=1000, max_denominator=50)


@given(_numbers)
def test_fraction_forms_agree(value):
    slash = f"{value.numerator}/{value.denominator}"
    latex = f"\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"
    latex = ("-" if value < 0 else "") + latex
    assert is_equivalent(slash, latex)


@given(st.text(max_size=30))
def test_normalize_is_idempotent_on_its_output_and_never_raises(text):
    once = normalize_math(text)
    assert isinstance(once, str)
    is_equivalent(text, once)  # must not raise
