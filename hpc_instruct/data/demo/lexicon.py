"""The demo's small closed vocabulary and the shapes every generator returns.

Everything the demo writes is built from the word lists here and in `knowledge.py`, so the whole corpus uses
a few hundred distinct characters and a byte-level BPE of 500-2000 tokens covers it with room for merges.
"""

from __future__ import annotations

import random
from typing import NamedTuple

LETTERS = "ABCDEF"
NUMERALS = "零一二三四五六七八九十"  # NUMERALS[n] is the Chinese numeral of n (0..10)

PEOPLE = ("小明", "小红", "小刚", "小丽", "小华", "小军", "小芳", "小东", "小兰", "小强")
THINGS = ("苹果", "梨", "桃子", "橘子", "糖", "本子", "铅笔", "气球", "饼干", "鸡蛋")
PLACES = ("公园", "学校", "商店", "医院", "车站", "书店", "饭店", "银行", "图书馆", "动物园")
TIMES = ("七点", "八点", "九点", "十点", "两点", "三点", "四点", "五点")
TRANSPORT = ("坐车", "走路", "骑车", "坐船", "坐火车", "打车")
OPERATOR_WORDS = {"+": "加", "-": "减", "*": "乘以"}  # how a Chinese description says each operator
COMPARISON_WORDS = {">": "大于", "<": "小于", "==": "等于"}
GOODS = ("苹果", "面包", "牛奶", "鸡蛋", "本子", "帽子", "雨伞", "鞋子", "米", "茶叶")


class Item(NamedTuple):
    """One generated record before it gets an idx and type: (role, content) turns, then optional extras."""

    messages: tuple[tuple[str, str], ...]
    choices: tuple[str, ...] | None = None
    answer: str | None = None


def qa(*turns: str, choices: tuple[str, ...] | None = None, answer: str | None = None) -> Item:
    """An Item from alternating user/assistant texts (user first, assistant last)."""
    roles = ("user", "assistant")
    return Item(tuple((roles[i % 2], t) for i, t in enumerate(turns)), choices, answer)


def numeral(n: int) -> str:
    """Chinese numeral for 0..99 (十二, 二十, 三十五), the way a primary-school text writes it."""
    if n <= 10:
        return NUMERALS[n]
    tens, ones = divmod(n, 10)
    head = "十" if tens == 1 else NUMERALS[tens] + "十"
    return head + (NUMERALS[ones] if ones else "")


# Every multiple-choice prompt ends with this cue, as Chinese exam papers do; the reply is then the bare letter.
ANSWER_CUE = "\n答案："


def options_block(options: list[str] | tuple[str, ...]) -> str:
    """The DoIT multiple-choice layout: one `\\nA. text` line per option, then the answer cue."""
    return "".join(f"\n{LETTERS[i]}. {o}" for i, o in enumerate(options)) + ANSWER_CUE


def shuffle_in(rng: random.Random, correct: str, distractors: list[str] | tuple[str, ...],
               k: int = 4) -> tuple[list[str], str]:
    """`correct` plus k-1 distinct distractors in random order; returns (options, letter of correct)."""
    pool = [d for d in dict.fromkeys(distractors) if d != correct]
    options = rng.sample(pool, k - 1) + [correct]
    rng.shuffle(options)
    return options, LETTERS[options.index(correct)]


def mc_item(rng: random.Random, question: str, correct: str, distractors, k: int = 4) -> Item:
    """A two-turn multiple-choice record: the question with options, answered by the bare letter."""
    options, letter = shuffle_in(rng, correct, distractors, k)
    return qa(question + options_block(options), letter)


def fixed_mc_item(question: str, correct: str, options: tuple[str, ...] | list[str]) -> Item:
    """A multiple-choice record whose options are a fixed list in a fixed order (an exam's standing answer
    sheet: A. 水里 B. 树上 C. 山洞 D. 土里), so the letter is a function of the answer alone and the task is the fact, not
    the search for it among shuffled options (which a tiny model learns far too slowly to show any growth)."""
    if correct not in options or len(options) != 4:
        raise ValueError(f"{correct!r} must be one of exactly four options (DoIT's A-D), got {options}")
    return qa(question + options_block(options), LETTERS[list(options).index(correct)])


def keyed_options(key: str, correct: str, pool: tuple[str, ...] | list[str], k: int = 4) -> list[str]:
    """`correct` with k-1 distractors from `pool` chosen by `key` alone (the same question always shows the same
    options), listed in `pool`'s order: a recalled fact maps to one letter, as in a fixed question bank."""
    others = [v for v in dict.fromkeys(pool) if v != correct]
    picked = set(random.Random(f"options:{key}").sample(others, k - 1)) | {correct}
    return [v for v in dict.fromkeys(pool) if v in picked]
