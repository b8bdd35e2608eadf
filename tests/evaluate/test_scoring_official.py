"""`doit` and `doit-text` reproduce the official DoIT rules: hand-written cases, each naming the official rule
(function of `evaluate/parse_utils.py`, `utils.py`, `math_equivalence.py` or `scorer.py`) it exercises.

The expected values were checked against the original code; they include its defects on purpose.
"""

from __future__ import annotations

import math

import pytest

from hpc_instruct.evaluate.scoring import ItemError, score, score_or_error
from hpc_instruct.evaluate.scoring.official import official_argmax
from hpc_instruct.evaluate.scoring.official_math import doit_math_answer, doit_math_equiv

LOGITS_C = [-3.0, -2.5, -0.1, -4.0]  # A, B, C, D: C is the argmax

# (official rule, reply, label, letter scores, mode, parsed, correct)
MC_CASES = [
    (
        "parse_four_choices_candidates_tasks/both: one character after strip() is the letter",
        " B\n",
        "B",
        LOGITS_C,
        "doit",
        "B",
        True,
    ),
    (
        "parse_four_choices_candidates_tasks/both: one non-letter character parses as 'E'",
        "是",
        "A",
        LOGITS_C,
        "doit",
        "E",
        False,
    ),
    (
        "parse_four_choices_candidates_tasks/both: lower case is not a letter",
        "b",
        "B",
        LOGITS_C,
        "doit",
        "E",
        False,
    ),
    (
        "parse_four_choices_candidates_tasks/both: full width is not a letter",
        "Ｂ",
        "B",
        LOGITS_C,
        "doit",
        "E",
        False,
    ),
    (
        "parse_four_choices_candidates_tasks/both: 'B。' is two characters: logits",
        "B。",
        "B",
        LOGITS_C,
        "doit",
        "C",
        False,
    ),
    (
        "parse_four_choices_candidates_tasks/both: prose goes to the argmax of A-D",
        "我选B",
        "C",
        LOGITS_C,
        "doit",
        "C",
        True,
    ),
    (
        "parse_four_choices_candidates_tasks/both: an empty reply goes to the logits",
        "",
        "C",
        LOGITS_C,
        "doit",
        "C",
        True,
    ),
    (
        "parse_four_choices_candidates_tasks/both, no logits stored: the text rule (issue 16)",
        "我选B",
        "B",
        None,
        "doit",
        "B",
        True,
    ),
    (
        "parse_four_choices_candidates_tasks/text: the first A-D character",
        "DNA, so B",
        "B",
        LOGITS_C,
        "doit-text",
        "D",
        False,
    ),
    (
        "parse_four_choices_candidates_tasks/text: 'Answer: B' reads the A of Answer",
        "Answer: B",
        "B",
        None,
        "doit-text",
        "A",
        False,
    ),
    (
        "parse_four_choices_candidates_tasks/text: no A-D anywhere is 'E'",
        "不知道",
        "A",
        None,
        "doit-text",
        "E",
        False,
    ),
]


@pytest.mark.parametrize(
    ("rule", "reply", "label", "scores", "mode", "parsed", "correct"), MC_CASES, ids=[c[0] for c in MC_CASES]
)
def test_official_mc(rule, reply, label, scores, mode, parsed, correct):
    s = score("mc", reply, label, mode=mode, letter_logprobs=scores)
    assert (s.parsed, s.correct) == (parsed, correct), rule


def test_official_logit_argmax_float32_ties_and_nan():
    # np.argmax over torch.softmax of float32 logits: a tie in float32 goes to the first letter ...
    assert official_argmax([1.0, 1.0 + 1e-9, 0.0, 0.0]) == "A"
    # ... and one NaN makes every probability NaN, where np.argmax answers index 0.
    assert official_argmax([-1.0, math.nan, 5.0, 0.0]) == "A"
    assert official_argmax([0.0, 0.0, 0.0, 9.0]) == "D"


def test_official_mc_label_asserts_and_chance():
    # utils.*_score: `assert label in ['A','B','C','D']`
    for label in ("E", "AB", "", " B"):
        s = score_or_error("mc", "A", label)
        assert s.method == "error" and "A, B, C, D" in s.error
    # utils.understanding_score: 0.25 with four option lines, else 0.33 (sic)
    assert score("mc", "A", "A", n_options=3, letter_logprobs=[0, -1, -2]).chance == 0.33
    assert score("mc", "A", "A").chance == 0.25


TF_CASES = [
    ("parse_tf_choice/text: a true keyword only", "这是对的", "正确", "T", True),
    ("parse_tf_choice/text: substring, so '不正确' is true", "不正确", "错误", "T", False),
    ("parse_tf_choice/text: 'True' holds 'T'", "True", "对", "T", True),
    ("parse_tf_choice/text: both sets present is 'E'", "正确还是错误", "正确", "E", False),
    ("parse_tf_choice/text: neither set is 'E'", "不好说", "错", "E", False),
    ("parse_tf_choice/text: '×' is false", " × ", "错", "F", True),
]


@pytest.mark.parametrize(
    ("rule", "reply", "label", "parsed", "correct"), TF_CASES, ids=[c[0] for c in TF_CASES]
)
def test_official_true_false(rule, reply, label, parsed, correct):
    for mode in ("doit", "doit-text"):  # tf_parse_mode='text' in both (the paper's default)
        s = score("true_false", reply, label, mode=mode)
        assert (s.parsed, s.correct, s.chance) == (parsed, correct, 0.5), rule


def test_official_true_false_label_assert():
    # utils.history_score: `assert label in ['正确','对','T','√','V','错误','错','F','×','X']`, exactly
    with pytest.raises(ItemError):
        score("true_false", "对", "对的")


CLOZE_CASES = [
    ("parse_single_cloze_zh: the first CJK run", "北京", "北京", "北京", True),
    ("parse_single_cloze_zh: plus the punctuation after it", "北京。是首都", "北京", "北京。", False),
    ("parse_single_cloze_zh: no CJK: the stripped reply", " 1949 ", "1949", "1949", True),
    ("parse_single_cloze_zh: the run starts at the first CJK character", "A: 长城", "长城", "长城", True),
    ("evaluate_single_sample: exact comparison with the raw label", "北京", "北京 ", "北京", False),
]


@pytest.mark.parametrize(
    ("rule", "reply", "label", "parsed", "correct"), CLOZE_CASES, ids=[c[0] for c in CLOZE_CASES]
)
def test_official_cloze(rule, reply, label, parsed, correct):
    s = score("cloze", reply, label)
    assert (s.parsed, s.correct) == (parsed, correct), rule


def test_official_multi_select():
    # parse_multi_choices_tasks: every A-F of the last non-blank line, brackets allowed
    assert score("multi_select", "分析\n(A)(C)D\n\n", "ACD").correct
    assert score("multi_select", "ACD\n以上", "ACD").parsed == ""
    assert score("multi_select", "Answer: CD", "ACD").correct  # the A of "Answer" completes the set
    # ethics_score: score_expected = 1 / comb(4, len(label))
    assert score("multi_select", "AB", "AB").chance == pytest.approx(1 / 6)
    # ... which divides by zero for five letters: a per-item error, not an abort (issue 16)
    s = score_or_error("multi_select", "ABCDE", "ABCDE")
    assert s.method == "error" and "comb(4, 5)" in s.error


MATH_PARSE = [
    ("parse_math_tasks: text after the last '答案' only", "\\boxed{1} 答案：\\boxed{2}", "2"),
    ("last_boxed_only_string: the last \\boxed, braces balanced", "\\boxed{\\frac{1}{2}} or \\boxed{3}", "3"),
    ("remove_boxed: the right-hand side of '='", "\\boxed{x = 4}", "4"),
    ("remove_boxed: \\fbox is found but not unwrapped", "\\fbox{4}", None),
    ("get_answer_with_dollar_sign: greedy within a line, then '$' removed", "$a$ and $b$", "a and b"),
    ("get_answer_with_dollar_sign: right-hand side of '='", "so $y = 2x = 6$", "6"),
    ("get_answer_special_case: 'a/b' with alphanumeric halves", "3/4", "3/4"),
    ("get_answer_special_case: a numeric run (no spaces)", "1,2,3", "1,2,3"),
    ("get_answer_special_case: the last sqrt(...)", "x is sqrt(2) or sqrt(3)", "sqrt(3)"),
    ("get_answer_special_case: the last parenthesised group", "12 (twelve)", "(twelve)"),
    (
        "get_answer_without_dollar_sign: after '=', cut only at a literal backslash-n",
        "x = 5 cm\nbye",
        "5 cm\nbye",
    ),
    ("get_answer_without_dollar_sign: the last number not followed by a word character", "共5个，即5", "5"),
    ("get_answer_without_dollar_sign: a number followed by CJK is skipped", "共42个", None),
    ("poset_process_special_case: '或' becomes ', '", "$3或4$", "3, 4"),
]


@pytest.mark.parametrize(("rule", "reply", "parsed"), MATH_PARSE, ids=[c[0] for c in MATH_PARSE])
def test_official_math_parse(rule, reply, parsed):
    assert doit_math_answer(reply)[0] == parsed, rule


MATH_EQUIV = [
    ("_strip_string: \\dfrac and \\left/\\right", "\\left(\\dfrac{1}{2}\\right)", "(\\frac{1}{2})", True),
    (
        "_remove_right_units: '\\text{ ' and what follows",
        "5\\text{ cm}",
        "5",
        False,
    ),  # then numeric: raw compare
    ("_remove_right_units: a unit after a non-numeric answer", "x\\text{ cm}", "x", True),
    ("_strip_string: '\\%' removed, plain '%' kept", "a\\%", "a", True),
    ("_strip_string: plain % kept", "a%", "a", False),
    ("_strip_string: 'k = ' prefix of at most two characters dropped", "k = \\frac{1}{3}", "\\frac13", True),
    ("_fix_sqrt: \\sqrt2 is \\sqrt{2}", "\\sqrt2", "\\sqrt{2}", True),
    ("_fix_fracs: \\frac12 is \\frac{1}{2}", "\\frac12", "\\frac{1}{2}", True),
    ("_strip_string: '0.5' is \\frac{1}{2}", "0.5", "\\frac{1}{2}", True),
    ("_fix_a_slash_b: '-1/2' is -\\frac{1}{2}", "-1/2", "-\\frac{1}{2}", True),
    ("_strip_string: \\frac{-1}{2} is -\\frac{1}{2}", "\\frac{-1}{2}", "-\\frac{1}{2}", True),
    ("_strip_string: \\text{(B)} is B", "\\text{(B)} 蛋白质", "B", True),
    ("is_equiv: a numeric string crashes into the raw comparison", "5.0", "5", False),
    ("is_equiv: a numeric string crashes into the raw comparison (equal raw)", "12", "12", True),
    ("is_equiv: spaces are not normalised for numbers", " 7", "7", False),
    ("is_equiv: both None is equal", None, None, True),
    ("is_equiv: one None is unequal", None, "3", False),
]


@pytest.mark.parametrize(("rule", "prediction", "label", "equal"), MATH_EQUIV, ids=[c[0] for c in MATH_EQUIV])
def test_official_math_equivalence(rule, prediction, label, equal):
    assert doit_math_equiv(prediction, label) is equal, rule


def test_official_math_end_to_end():
    assert score("math", "所以答案是 $\\boxed{\\dfrac{1}{2}}$", "\\frac{1}{2}").correct
    assert not score("math", "\\fbox{7}", "7").correct
    assert score("math", "\\fbox{7}", None).correct  # None == None


def test_official_rank3_ties_and_nan():
    # scorer.py: `min(generated_ppl) == generated_ppl[0]`
    assert score("rank3", None, None, perplexities=[2.0, 2.0, 3.0]).correct
    assert not score("rank3", None, None, perplexities=[2.5, 2.0, 3.0]).correct
    assert not score(
        "rank3", None, None, perplexities=[math.nan, 1.0, 2.0]
    ).correct  # min() keeps the NaN: nan != nan
    assert score("rank3", None, None, perplexities=[1.0, math.nan, 2.0]).correct
