"""Hand-written cases for the DoIT answer formats: MC, true/false, cloze, multi-select, rank3, and `score`."""

from __future__ import annotations

import math

import pytest

from hpc_instruct.data.abilities import FORMATS
from hpc_instruct.evaluate.scoring import SCORER_VERSION, Score, chance, score
from hpc_instruct.evaluate.scoring.letters import argmax_letter, parse_choice, parse_letter_set
from hpc_instruct.evaluate.scoring.normalize import first_cjk_span, fold_width, strip_punctuation

LOGITS_C = {"A": -3.0, "B": -2.5, "C": -0.1, "D": -4.0}


# ---- normalisation ----------------------------------------------------------------------------------------


def test_fold_width_and_strip_punctuation():
    assert fold_width("Ａ（Ｂ）：１２") == "A(B):12"
    assert strip_punctuation(" **B**。") == "B"
    assert strip_punctuation(fold_width("（Ｃ）")) == "C"
    assert strip_punctuation("【D】，") == "D"
    assert strip_punctuation("。，！") == ""


def test_first_cjk_span():
    assert first_cjk_span("答：北京。上海") == "答"
    assert first_cjk_span("  北京，") == "北京"
    assert first_cjk_span("123 abc") is None


# ---- multiple choice --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response", ["B", " B ", "B。", "B.", "（B）", "(B)", "Ｂ", "**B**", "\nB\n", "「B」", "B！"]
)
def test_mc_one_character_reply_is_the_letter(response):
    result = score("mc", response, "B", letter_logprobs=LOGITS_C)
    assert result == Score("mc", "B", True, 0.25, "one_char", "doit")


def test_mc_full_width_reference():
    assert score("mc", "B", "Ｂ").correct


def test_mc_prose_falls_back_to_logits_in_doit_mode():
    # The paper's rule: anything but a one-character reply is answered by the answer-letter log-probs.
    result = score("mc", "答案是B。", "B", letter_logprobs=LOGITS_C)
    assert (result.parsed, result.method, result.correct) == ("C", "logits", False)
    result = score("mc", "我认为应该选C，因为……", "C", letter_logprobs=LOGITS_C)
    assert (result.parsed, result.method, result.correct) == ("C", "logits", True)


@pytest.mark.parametrize(
    ("response", "method"),
    [
        ("答案是B。", "answer_phrase"),
        ("答案：（Ｂ）", "answer_phrase"),
        ("正确答案为B，因为A错误。", "answer_phrase"),
        ("故选B", "answer_phrase"),
        ("The answer is B.", "answer_phrase"),
        ("B. 因为细胞膜具有选择透过性", "leading_letter"),
        ("(B) 线粒体", "leading_letter"),
        ("我觉得是B吧", "single_letter"),
        ("b", "one_char"),
    ],
)
def test_mc_lenient_reads_prose(response, method):
    result = score("mc", response, "B", mode="lenient", letter_logprobs=LOGITS_C)
    assert (result.parsed, result.correct, result.method, result.mode) == ("B", True, method, "lenient")


def test_mc_lenient_ambiguous_prose_falls_back_to_logits():
    result = score("mc", "A和B都有道理", "C", mode="lenient", letter_logprobs=LOGITS_C)
    assert (result.parsed, result.method, result.correct) == ("C", "logits", True)


def test_mc_doit_keeps_case_and_non_letters():
    # The original compares the raw character: lower-case or a non-letter one-character reply is wrong.
    assert score("mc", "b", "B").correct is False
    result = score("mc", "是", "A", letter_logprobs=LOGITS_C)
    assert (result.parsed, result.method, result.correct) == ("是", "one_char", False)


def test_mc_empty_reply_uses_logits_or_is_unanswered():
    assert score("mc", "", "C", letter_logprobs=LOGITS_C).correct
    result = score("mc", "   ", "C")
    assert (result.parsed, result.method, result.correct) == ("", "no_logits", False)


def test_mc_logits_only_over_the_items_options():
    # A 3-option dialogue item never predicts D, even when D has the highest log-prob.
    logprobs = {"A": -2.0, "B": -1.0, "C": -3.0, "D": -0.1}
    result = score("mc", "不知道", "B", n_options=3, letter_logprobs=logprobs)
    assert (result.parsed, result.correct, result.chance) == ("B", True, pytest.approx(1 / 3))
    assert argmax_letter(logprobs, 4) == "D"


def test_mc_logit_ties_go_to_the_first_letter_and_nan_is_ignored():
    assert argmax_letter({"A": -1.0, "B": -1.0, "C": -2.0, "D": -3.0}, 4) == "A"
    assert argmax_letter({"A": math.nan, "B": -1.0, "C": -2.0, "D": -3.0}, 4) == "B"
    assert argmax_letter({"Ａ": -5.0, "b": -1.0, "C": -2.0, "D": -3.0}, 4) == "B"  # keys are folded
    assert argmax_letter({k: math.nan for k in "ABCD"}, 4) is None
    assert parse_choice("长回答", 4, {k: math.nan for k in "ABCD"}) == ("", "no_logits")


def test_mc_missing_logit_letters_and_bad_reference_are_errors():
    with pytest.raises(ValueError, match="lacks options"):
        score("mc", "长回答", "A", letter_logprobs={"A": -1.0, "B": -2.0})
    with pytest.raises(ValueError, match="MC reference"):
        score("mc", "A", "E")


# ---- true / false -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("response", ["正确", "对", "T", "√", "V", "这句话是正确的。", "Ｔ"])
def test_true_false_true_words(response):
    assert score("true_false", response, "正确").parsed == "T"
    assert score("true_false", response, "对").correct


@pytest.mark.parametrize("response", ["错误", "错", "F", "×", "X", "这个说法错误。"])
def test_true_false_false_words(response):
    result = score("true_false", response, "错误")
    assert (result.parsed, result.correct, result.chance) == ("F", True, 0.5)


def test_true_false_doit_blind_spots_are_kept():
    # Substring search as in the paper: both sets present is unanswered; "不对" contains "对".
    assert score("true_false", "正确还是错误？", "对").method == "ambiguous"
    assert score("true_false", "不对", "错").correct is False
    assert score("true_false", "不知道", "错").method == "none"
    assert score("true_false", "", "错").method == "empty"


@pytest.mark.parametrize(
    ("response", "parsed"),
    [
        ("不对", "F"),
        ("不正确。", "F"),
        ("没错，是对的", "T"),
        ("✓", "T"),
        ("✗", "F"),
        ("True", "T"),
        ("false", "F"),
    ],
)
def test_true_false_lenient(response, parsed):
    assert score("true_false", response, "对", mode="lenient").parsed == parsed


def test_true_false_bad_reference():
    with pytest.raises(ValueError, match="true/false reference"):
        score("true_false", "对", "也许")


# ---- cloze ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("response", ["北京", "北京。", " 北京，是首都", "北京\n解释……", "北京（首都）"])
def test_cloze_first_cjk_span(response):
    result = score("cloze", response, "北京")
    assert (result.parsed, result.correct, result.chance, result.method) == ("北京", True, 0.0, "cjk_span")


def test_cloze_exact_match_only():
    assert score("cloze", "北京市", "北京").correct is False
    assert score("cloze", "答案是北京", "北京").correct is False  # doit: the first span is "答案是北京"
    assert score("cloze", "", "北京").method == "empty"


def test_cloze_lenient_skips_answer_phrase():
    result = score("cloze", "我认为答案是：北京。", "北京", mode="lenient")
    assert (result.parsed, result.correct, result.method) == ("北京", True, "answer_phrase+cjk_span")


def test_cloze_without_cjk_compares_text():
    assert score("cloze", " 1949 ", "1949").correct
    assert score("cloze", "1949年", "1949").correct is False


# ---- multi-select -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    ["ACD", "A、C、D", "A,C,D", "A，C，D", "Ａ Ｃ Ｄ", "（A）（C）（D）", "分析……\n\nD C A\n", "ACD。"],
)
def test_multi_select_set_from_last_line(response):
    result = score("multi_select", response, "ACD")
    assert (result.parsed, result.correct, result.method) == ("ACD", True, "last_line")


def test_multi_select_exact_set_and_chance():
    assert score("multi_select", "AC", "ACD").correct is False
    assert score("multi_select", "ABCD", "ACD").correct is False
    assert score("multi_select", "ACD\n", "ACD").chance == pytest.approx(1 / 4)  # 1 / C(4, 3)
    assert score("multi_select", "AB", "AB").chance == pytest.approx(1 / 6)  # 1 / C(4, 2)
    assert score("multi_select", "A", "A", n_options=6).chance == pytest.approx(1 / 6)


def test_multi_select_only_the_last_line_counts():
    assert score("multi_select", "ACD\n但也可能是B", "ACD").parsed == "B"


def test_multi_select_doit_counts_letters_inside_words_lenient_does_not():
    assert parse_letter_set("Answer: BD") == (frozenset("ABD"), "last_line")
    assert parse_letter_set("Answer: BD", mode="lenient") == (frozenset("BD"), "last_line")
    assert score("multi_select", "答案：B、D", "BD", mode="lenient").correct


def test_multi_select_empty_reply_and_bad_reference():
    assert score("multi_select", "", "AB").method == "empty"
    with pytest.raises(ValueError, match="no letter"):
        score("multi_select", "A", "无")


# ---- rank3 and dispatch -----------------------------------------------------------------------------------


def test_rank3_reference_must_be_strictly_lowest():
    assert score("rank3", None, None, perplexities=[2.0, 3.0, 4.0]) == Score(
        "rank3", "0", True, pytest.approx(1 / 3), "lowest_perplexity", "doit"
    )
    assert score("rank3", "", "", perplexities=[5.0, 3.0, 4.0]).parsed == "1"
    tie = score("rank3", None, None, perplexities=[2.0, 2.0, 4.0])
    assert (tie.correct, tie.parsed) == (False, "0")  # ties are incorrect (documented)
    nan = score("rank3", None, None, perplexities=[2.0, math.nan, 4.0])
    assert (nan.correct, nan.parsed, nan.method) == (False, "", "nan_perplexity")


def test_chance_values():
    assert chance("mc") == 0.25 and chance("mc", n_options=3) == pytest.approx(1 / 3)
    assert chance("true_false") == 0.5
    assert chance("cloze") == 0.0 and chance("math") == 0.0
    assert chance("multi_select", n_options=4, n_correct=2) == pytest.approx(1 / 6)
    assert chance("rank3") == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        chance("multi_select", n_options=4, n_correct=5)


def test_every_format_is_dispatched():
    cases = {
        "mc": ("A", "A", {}),
        "true_false": ("对", "正确", {}),
        "cloze": ("北京", "北京", {}),
        "multi_select": ("AB", "AB", {}),
        "math": ("\\boxed{2}", "2", {}),
        "rank3": (None, None, {"perplexities": [1.0, 2.0, 3.0]}),
    }
    assert set(cases) == set(FORMATS)
    for fmt, (response, reference, extras) in cases.items():
        result = score(fmt, response, reference, **extras)
        assert result.format == fmt and result.correct, fmt
        assert result.mode == "doit"


def test_dispatch_errors_are_actionable():
    with pytest.raises(ValueError, match="did you mean 'multi_select'"):
        score("multiselect", "A", "A")
    with pytest.raises(TypeError, match="did you mean 'letter_logprobs'"):
        score("mc", "A", "A", letter_logprob={})
    with pytest.raises(TypeError, match="perplexities"):
        score("rank3", None, None)
    with pytest.raises(ValueError, match="parse mode"):
        score("mc", "A", "A", mode="strict")


def test_scores_are_frozen_and_versioned():
    result = score("mc", "A", "A")
    with pytest.raises(AttributeError):
        result.correct = False  # type: ignore[misc]
    assert SCORER_VERSION
