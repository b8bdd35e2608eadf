"""Hand-written cases for the DoIT answer formats (MC, true/false, cloze, multi-select, rank3) and `score`.

Mostly the `corrected` readers; the official rules are pinned in test_scoring_official.py and the failure
classes of issue 16 in test_scoring_failure_classes.py.

Covers: hpc_instruct.evaluate.scoring.scorers, hpc_instruct.evaluate.scoring.letters,
hpc_instruct.evaluate.scoring.true_false, hpc_instruct.evaluate.scoring.cloze."""

from __future__ import annotations

import math

import pytest

from hpc_instruct.data.abilities import FORMATS
from hpc_instruct.evaluate.scoring import SCORER_VERSION, ItemError, Score, chance, score
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


# ---- multiple choice (corrected mode; the official rules are in test_scoring_official.py) ----------------


@pytest.mark.parametrize(
    "response", ["B", " B ", "B。", "B.", "（B）", "(B)", "Ｂ", "**B**", "\nB\n", "「B」", "B！", "b", "$B$"]
)
def test_mc_one_character_reply_is_the_letter(response):
    result = score("mc", response, "B", letter_logprobs=LOGITS_C, mode="corrected")
    assert result == Score("mc", "B", True, 0.25, "one_char", "corrected")


def test_mc_full_width_reference():
    assert score("mc", "B", "Ｂ", mode="corrected").correct


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
        ("选项B正确", "affirmed"),
    ],
)
def test_mc_corrected_reads_prose(response, method):
    result = score("mc", response, "B", mode="corrected", letter_logprobs=LOGITS_C)
    assert (result.parsed, result.correct, result.method, result.mode) == ("B", True, method, "corrected")


def test_mc_corrected_hedge_is_unanswered_and_no_letter_falls_back_to_logits():
    result = score("mc", "A和B都有道理", "A", mode="corrected", letter_logprobs=LOGITS_C)
    assert (result.parsed, result.method, result.correct) == ("", "ambiguous", False)
    result = score("mc", "我也不太确定", "C", mode="corrected", letter_logprobs=LOGITS_C)
    assert (result.parsed, result.method, result.correct) == ("C", "logits", True)
    result = score("mc", "我也不太确定", "C", mode="corrected")
    assert (result.parsed, result.method, result.correct) == ("", "no_answer", False)


def test_mc_logits_only_over_the_items_options():
    # A 3-option dialogue item never predicts D in corrected mode, even when D has the highest log-prob.
    logprobs = {"A": -2.0, "B": -1.0, "C": -3.0, "D": -0.1}
    result = score("mc", "不知道", "B", n_options=3, letter_logprobs=logprobs, mode="corrected")
    assert (result.parsed, result.correct, result.chance) == ("B", True, pytest.approx(1 / 3))
    assert argmax_letter(logprobs, 4) == "D"


def test_mc_logit_ties_go_to_the_first_letter_and_nan_is_ignored():
    assert argmax_letter({"A": -1.0, "B": -1.0, "C": -2.0, "D": -3.0}, 4) == "A"
    assert argmax_letter({"A": math.nan, "B": -1.0, "C": -2.0, "D": -3.0}, 4) == "B"
    assert argmax_letter({"Ａ": -5.0, "b": -1.0, "C": -2.0, "D": -3.0}, 4) == "B"  # keys are folded
    assert argmax_letter({k: math.nan for k in "ABCD"}, 4) is None
    assert parse_choice("长回答", 4, {k: math.nan for k in "ABCD"}) == ("", "no_answer")


def test_mc_missing_logit_letters_and_bad_reference_are_errors():
    with pytest.raises(ValueError, match="lacks options"):
        score("mc", "长回答", "A", letter_logprobs={"A": -1.0, "B": -2.0}, mode="corrected")
    with pytest.raises(ItemError, match="MC reference"):
        score("mc", "A", "E", mode="corrected")
    with pytest.raises(ItemError, match="one of A, B, C, D"):
        score("mc", "A", "E", n_options=5)  # the official scorer asserts a label in A-D


# ---- true / false -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["doit", "corrected"])
@pytest.mark.parametrize("response", ["正确", "对", "T", "√", "V", "这句话是正确的。"])
def test_true_false_true_words(response, mode):
    assert score("true_false", response, "正确", mode=mode).parsed == "T"
    assert score("true_false", response, "对", mode=mode).correct


@pytest.mark.parametrize("mode", ["doit", "corrected"])
@pytest.mark.parametrize("response", ["错误", "错", "F", "×", "X", "这个说法错误。"])
def test_true_false_false_words(response, mode):
    result = score("true_false", response, "错误", mode=mode)
    assert (result.parsed, result.correct, result.chance) == ("F", True, 0.5)


@pytest.mark.parametrize(
    ("response", "parsed"),
    [("不对", "F"), ("不正确。", "F"), ("没错，是对的", "T"), ("✓", "T"), ("✗", "F"), ("True", "T"), ("false", "F"),
     ("Ｔ", "T")],
)
def test_true_false_corrected(response, parsed):
    assert score("true_false", response, "对", mode="corrected").parsed == parsed


def test_true_false_bad_reference():
    with pytest.raises(ItemError, match="true/false reference"):
        score("true_false", "对", "也许", mode="corrected")
    with pytest.raises(ItemError, match="true/false scorer asserts"):
        score("true_false", "对", "也许")


# ---- cloze ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("response", ["北京", "北京。", " 北京，是首都", "北京\n解释……", "北京（首都）"])
def test_cloze_first_cjk_span(response):
    result = score("cloze", response, "北京", mode="corrected")
    assert (result.parsed, result.correct, result.chance, result.method) == ("北京", True, 0.0, "cjk_span")


def test_cloze_exact_match_only():
    assert score("cloze", "北京市", "北京", mode="corrected").correct is False
    assert score("cloze", "", "北京", mode="corrected").method == "empty"


def test_cloze_corrected_skips_answer_phrase():
    result = score("cloze", "我认为答案是：北京。", "北京", mode="corrected")
    assert (result.parsed, result.correct, result.method) == ("北京", True, "answer_phrase+cjk_span")


def test_cloze_without_cjk_compares_text():
    assert score("cloze", " 1949 ", "1949", mode="corrected").correct
    assert score("cloze", " 1949 ", "1949").correct  # official: the stripped reply
    assert score("cloze", "1949年", "1949").correct is False  # official: the span "年"


# ---- multi-select -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    ["ACD", "A、C、D", "A,C,D", "A，C，D", "Ａ Ｃ Ｄ", "（A）（C）（D）", "分析……\n\nD C A\n", "ACD。", "acd"],
)
def test_multi_select_set_from_the_reply(response):
    result = score("multi_select", response, "ACD", mode="corrected")
    assert (result.parsed, result.correct) == ("ACD", True)


def test_multi_select_exact_set_and_chance():
    for mode in ("doit", "corrected"):
        assert score("multi_select", "AC", "ACD", mode=mode).correct is False
        assert score("multi_select", "ABCD", "ACD", mode=mode).correct is False
        assert score("multi_select", "ACD\n", "ACD", mode=mode).chance == pytest.approx(1 / 4)  # 1 / C(4, 3)
        assert score("multi_select", "AB", "AB", mode=mode).chance == pytest.approx(1 / 6)  # 1 / C(4, 2)
    assert score("multi_select", "A", "A", n_options=6, mode="corrected").chance == pytest.approx(1 / 6)


def test_multi_select_doit_reads_only_the_last_line():
    assert score("multi_select", "ACD\n但也可能是B", "ACD").parsed == "B"


def test_multi_select_doit_counts_letters_inside_words_corrected_does_not():
    assert score("multi_select", "Answer: BD", "BD").parsed == "ABD"
    assert parse_letter_set("Answer: BD") == (frozenset("BD"), "answer_phrase")
    assert score("multi_select", "答案：B、D", "BD", mode="corrected").correct


def test_multi_select_empty_reply_and_bad_reference():
    assert score("multi_select", "", "AB", mode="corrected").method == "empty"
    with pytest.raises(ItemError, match="no option letter"):
        score("multi_select", "A", "无", mode="corrected")
    with pytest.raises(ItemError, match="no letter"):
        score("multi_select", "", "无")


# ---- rank3 and dispatch -----------------------------------------------------------------------------------


def test_rank3_reference_must_be_strictly_lowest():
    assert score("rank3", None, None, perplexities=[2.0, 3.0, 4.0], mode="corrected") == Score(
        "rank3", "0", True, pytest.approx(1 / 3), "lowest_perplexity", "corrected"
    )
    assert score("rank3", "", "", perplexities=[5.0, 3.0, 4.0], mode="corrected").parsed == "1"
    tie = score("rank3", None, None, perplexities=[2.0, 2.0, 4.0], mode="corrected")
    assert (tie.correct, tie.parsed) == (False, "0")  # ties are incorrect in corrected mode
    assert score("rank3", None, None, perplexities=[2.0, 2.0, 4.0]).correct  # official: min == ppl[0]
    nan = score("rank3", None, None, perplexities=[2.0, math.nan, 4.0], mode="corrected")
    assert (nan.correct, nan.parsed, nan.method) == (False, "", "nan_perplexity")


def test_chance_values():
    assert chance("mc") == 0.25 and chance("mc", n_options=3) == pytest.approx(1 / 3)
    assert chance("true_false") == 0.5
    assert chance("cloze") == 0.0 and chance("math") == 0.0
    assert chance("multi_select", n_options=4, n_correct=2) == pytest.approx(1 / 6)
    assert chance("rank3") == pytest.approx(1 / 3)
    with pytest.raises(ItemError):
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
    for mode in ("doit", "doit-text", "corrected"):
        for fmt, (response, reference, extras) in cases.items():
            result = score(fmt, response, reference, mode=mode, **extras)
            assert result.format == fmt and result.correct, (fmt, mode)
            assert result.mode == mode and result.error == ""


def test_dispatch_errors_are_actionable():
    with pytest.raises(ValueError, match="did you mean 'multi_select'"):
        score("multiselect", "A", "A")
    with pytest.raises(TypeError, match="did you mean 'letter_logprobs'"):
        score("mc", "A", "A", letter_logprob={})
    with pytest.raises(TypeError, match="perplexities"):
        score("rank3", None, None)
    with pytest.raises(ValueError, match="did you mean 'doit-text'"):
        score("mc", "A", "A", mode="doit_text")


def test_scores_are_frozen_and_versioned():
    result = score("mc", "A", "A")
    with pytest.raises(AttributeError):
        result.correct = False  # type: ignore[misc]
    assert SCORER_VERSION
