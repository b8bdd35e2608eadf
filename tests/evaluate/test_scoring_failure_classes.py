"""Issue 16, item 3: every failure class of the official parser, in both modes, with Chinese and English cases.

Each case gives the reply, the reference, and the verdict of each mode: `doit` keeps the official verdict
(the defect), `corrected` gives the verdict a careful grader gives. Written by hand for this test; the doit
verdicts were checked against the original `parse_utils.py` / `math_equivalence.py`.

Covers: hpc_instruct.evaluate.scoring.modes, hpc_instruct.evaluate.scoring.symbolic,
hpc_instruct.evaluate.scoring.math_equiv, hpc_instruct.evaluate.scoring.math_answer."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from hpc_instruct.evaluate.scoring import score, score_or_error


class Case(NamedTuple):
    fmt: str
    reply: str
    reference: str | None
    doit: bool  # the official verdict (defect kept)
    corrected: bool  # a grader's verdict
    parsed: str | None = None  # the answer the corrected reader must find, when it matters


MC, TF, CLOZE, MS, MATH = "mc", "true_false", "cloze", "multi_select", "math"

CLASSES: dict[str, list[Case]] = {
    # ---- multiple choice (the doit rows have no log-probs: the text rule decides, as in doit-text) ----------
    "mc: several letters given, the first one wins": [
        Case(MC, "A和C看似都对，但最终选C", "C", False, True, "C"),
        Case(MC, "Options A and B are distractors; the answer is D.", "D", False, True, "D"),
    ],
    "mc: capital letters inside words read as choices": [
        Case(MC, "DNA复制需要解旋酶，所以选B", "B", False, True, "B"),
        Case(MC, "ATP synthase sits in the inner membrane. Answer: C", "C", False, True, "C"),
    ],
    "mc: lowercase and full-width letters ignored": [
        Case(MC, "ｂ", "B", False, True, "B"),
        Case(MC, "Ｃ", "C", False, True, "C"),
        Case(MC, "the answer is (d).", "D", False, True, "D"),
    ],
    "mc: an option rejected before the answer taken as the answer": [
        Case(MC, "不是A，是D", "D", False, True, "D"),
        Case(MC, "Not A; it is D.", "D", False, True, "D"),
    ],
    # ---- true / false -------------------------------------------------------------------------------------
    "tf: negations read as true": [
        Case(TF, "不正确", "错误", False, True, "F"),
        Case(TF, "这个说法不是正确的。", "错", False, True, "F"),
        Case(TF, "并不对", "错误", False, True, "F"),
        Case(TF, "Not true.", "错误", False, True, "F"),
    ],
    "tf: vocabulary gaps": [
        Case(TF, "没错", "正确", False, True, "T"),  # "没错" holds "错": the official reads false
        Case(TF, "该说法有误", "错误", False, True, "F"),
        Case(TF, "✓", "对", False, True, "T"),
        Case(TF, "✔", "对", False, True, "T"),
        Case(TF, "✗", "错", False, True, "F"),
        Case(TF, "yes", "正确", False, True, "T"),
        Case(TF, "no", "错误", False, True, "F"),
        Case(TF, "true", "正确", False, True, "T"),
        Case(TF, "正 确", "正确", False, True, "T"),
    ],
    "tf: T/F/V/X inside English words": [
        Case(TF, "Xiang Yu really lost at Gaixia, so this is true.", "正确", False, True, "T"),  # X: false
        Case(TF, "Fe元素与此无关，该说法正确", "正确", False, True, "T"),  # F of "Fe" and 正确: both sets
        Case(TF, "Vietnam was never part of it: false.", "错误", False, True, "F"),  # V of "Vietnam": true
    ],
    "tf: both polarities present with a clear meaning": [
        Case(TF, "错误。正确的表述应该是秦朝统一了六国。", "错误", False, True, "F"),
        Case(TF, "正确，这句话没有错误。", "正确", False, True, "T"),
        Case(TF, "Correct - nothing wrong with it... answer: true", "正确", False, True, "T"),
    ],
    # ---- cloze ---------------------------------------------------------------------------------------------
    "cloze: span keeps trailing punctuation or brackets": [
        Case(CLOZE, "北京。", "北京", False, True, "北京"),
        Case(CLOZE, "北京（中国的首都）", "北京", False, True, "北京"),
        Case(CLOZE, "Answer: 北京!", "北京", False, True, "北京"),
    ],
    # ---- multi-select --------------------------------------------------------------------------------------
    "multi-select: only the last line is read": [
        Case(MS, "答案：A、C、D\n希望对你有帮助。", "ACD", False, True, "ACD"),
        Case(MS, "Answer: B, D\nHope this helps.", "BD", False, True, "BD"),
    ],
    "multi-select: letters inside words are counted": [
        Case(MS, "Answer: BD", "BD", False, True, "BD"),
        Case(MS, "DNA和RNA都相关，选BC", "BC", False, True, "BC"),
    ],
    "multi-select: letters the reply excludes are counted": [
        Case(MS, "ABD，不选C", "ABD", False, True, "ABD"),
        Case(MS, "A, B and D; C is wrong", "ABD", False, True, "ABD"),
    ],
    "multi-select: an empty label matches an empty reply": [
        Case(MS, "", "无", False, False),  # malformed in both modes: an error, never a match
        Case(MS, "  ", "none", False, False),
    ],
    # ---- math ----------------------------------------------------------------------------------------------
    "math: normalisation skipped for numeric answers": [
        Case(MATH, "\\boxed{5.0}", "5", False, True),
        Case(MATH, "\\boxed{12 cm}", "12", False, True),
        Case(MATH, "\\boxed{50\\%}", "50", False, True),
        Case(MATH, "\\boxed{30^\\circ}", "30", False, True),
        Case(MATH, "\\boxed{\\$18}", "18", False, True),
        Case(MATH, "\\boxed{ 7}", "7", False, True),
    ],
    "math: order of unordered answers": [
        Case(MATH, "\\boxed{5, 3}", "3, 5", False, True),  # the official's numeric set crashes: raw strings
        Case(MATH, "\\boxed{\\frac{1}{2}, -1}", "-1, \\frac{1}{2}", False, True),
    ],
    "math: multi-part answers": [
        Case(MATH, "解得 x=3或x=5。", "3, 5", False, True, "3, 5"),
        Case(MATH, "So x = \\pm 2.", "2, -2", False, True),
        Case(MATH, "$x=\\boxed{3}$ or $x=\\boxed{5}$", "3, 5", False, True, "3, 5"),
    ],
    "math: \\fbox": [
        Case(MATH, "最后 \\fbox{12}", "12", False, True, "12"),
        Case(MATH, "Final: \\fbox{\\frac{1}{4}}", "\\frac14", False, True),
    ],
    "math: the '=' fallback drags prose and units": [
        Case(MATH, "所以 x + 1 = 6 个苹果。\n验算无误。", "6", False, True, "6"),
        Case(MATH, "Total cost = 42 dollars, which is the answer.", "42", False, True),
    ],
    "math: greedy $...$ spans": [
        Case(MATH, "Since $x$ is even, the answer is $4$.", "4", False, True, "4"),
        Case(MATH, "$a$ 与 $b$ 之和为 $9$", "9", False, True, "9"),
    ],
    "math: a parenthesised group hijacks the answer": [
        Case(MATH, "共有 12 个 (其中 2 个坏了)", "12", False, True, "12"),
        Case(MATH, "The total is 40 (rounded)", "40", False, True, "40"),
    ],
    "math: numbers after CJK characters": [
        Case(MATH, "一共需要42个", "42", False, True, "42"),
        Case(MATH, "共计15元", "15", False, True, "15"),
    ],
    "math: a \\boxed answer before the word 答案": [
        Case(MATH, "\\boxed{8}\n以上就是答案。", "8", False, True, "8"),
        Case(MATH, "\\boxed{8} is the final 答案 here", "8", False, True, "8"),
    ],
    "math: fractions and thousands separators in prose": [
        Case(MATH, "总数是 1,250 元", "1250", False, True),
        Case(MATH, "The share is 3/4 of the cake", "\\frac{3}{4}", False, True),
    ],
    "math: None == None": [
        Case(MATH, "\\fbox{3}", None, True, False),  # no answer parsed and no label: the official says equal
    ],
}


def _verdict(case: Case, mode: str):
    return score_or_error(case.fmt, case.reply, case.reference, mode=mode)


@pytest.mark.parametrize("klass", sorted(CLASSES))
def test_failure_class_in_both_modes(klass):
    for case in CLASSES[klass]:
        official = _verdict(case, "doit")
        corrected = _verdict(case, "corrected")
        assert official.correct is case.doit, (klass, case.reply, "doit", official)
        assert corrected.correct is case.corrected, (klass, case.reply, "corrected", corrected)
        if case.parsed is not None:
            assert corrected.parsed == case.parsed, (klass, case.reply, corrected)
        if case.fmt == MC:  # without log-probs the paper's default reads text exactly as the text mode does
            assert _verdict(case, "doit-text").correct is case.doit


def test_every_class_has_chinese_and_english_or_symbol_cases():
    for klass, cases in CLASSES.items():
        assert cases, klass
        has_cjk = any(any("\u4e00" <= ch <= "\u9fff" for ch in c.reply) for c in cases)
        has_latin = any(any(ch.isascii() and ch.isalpha() for ch in c.reply) for c in cases)
        if klass not in (
            "mc: lowercase and full-width letters ignored",
            "math: None == None",
            "math: normalisation skipped for numeric answers",
            "math: order of unordered answers",
            "multi-select: an empty label matches an empty reply",
            "math: numbers after CJK characters",
        ):
            assert has_cjk and has_latin, klass


def test_empty_label_is_an_item_error_in_both_modes():
    for mode in ("doit", "doit-text", "corrected"):
        s = score_or_error(MS, "", "无", mode=mode)
        assert (s.correct, s.method) == (False, "error") and "letter" in s.error


def test_symbolic_option_proves_expressions_equal():
    assert not score(MATH, "\\boxed{2\\sqrt{2}}", "\\sqrt{8}", mode="corrected").correct
    assert score(MATH, "\\boxed{2\\sqrt{2}}", "\\sqrt{8}", mode="corrected", symbolic=True).correct
    assert score(MATH, "\\boxed{(x+1)^2}", "x^2+2x+1", mode="corrected", symbolic=True).correct
    assert not score(MATH, "\\boxed{(x+1)^2}", "x^2+1", mode="corrected", symbolic=True).correct
    # a reply that would be Python code never reaches sympy's parser
    assert not score(MATH, "\\boxed{__import__('os')}", "0", mode="corrected", symbolic=True).correct
