"""Problem-solving abilities: reasoning (ordering puzzles, multiple choice), math (chain of thought ending in
`\\boxed{}` plus an `answer` field), code and creative_writing (rank three candidates, reference first).
"""

from __future__ import annotations

import random

from hpc_instruct.data.demo.knowledge import LINE_ENDINGS, THEMES
from hpc_instruct.data.demo.lexicon import (
    COMPARISON_WORDS,
    OPERATOR_WORDS,
    PEOPLE,
    PLACES,
    Item,
    fixed_mc_item,
    numeral,
    qa,
)

# (higher word, lower word, "who is highest", "who is lowest", "who is in the middle")
_RELATIONS = (
    ("高", "矮", "谁最高？", "谁最矮？", "谁的身高排在中间？"),
    ("大", "小", "谁的年纪最大？", "谁的年纪最小？", "谁的年纪排在中间？"),
)
# Who tells the puzzle varies (the cast in it does not), so the same few orderings recur across pools in
# different words, as an exam bank re-asks its puzzles.
_REASONING_SCENES = ("", "", "{p}说：", "在{place}，", "{p}出了一道题：", "想一想：", "{p}在{place}问：")


_CAST = PEOPLE[:4]  # the options of every reasoning question, in this order (one of them may be absent)


PUZZLE_BANK = 32  # ordering puzzles in the exercise book every pool and test re-asks


def _puzzle(rng: random.Random) -> tuple[str, str]:
    """One ordering puzzle (its comparisons and question) and the person who answers it."""
    n = 2 if rng.random() < 0.8 else 3
    ranked = rng.sample(_CAST, n)  # ranked[0] is highest
    up, down, top_q, bottom_q, middle_q = rng.choice(_RELATIONS)
    facts = []
    for hi, lo in zip(ranked, ranked[1:], strict=False):
        facts.append(f"{hi}比{lo}{up}" if rng.random() < 0.75 else f"{lo}比{hi}{down}")
    if n == 3 and rng.random() < 0.25:
        facts.reverse()
    kinds = [(top_q, ranked[0]), (bottom_q, ranked[-1])] + ([(middle_q, ranked[1])] if n == 3 else [])
    question, answer = rng.choice(kinds)
    return "，".join(facts) + "。" + question, answer


def puzzle_bank() -> tuple[tuple[str, str], ...]:
    """The fixed exercise book of ordering puzzles: (comparisons and question, the answering person)."""
    rng = random.Random("demo-puzzle-bank")
    return tuple(_puzzle(rng) for _ in range(PUZZLE_BANK))


def make_reasoning():
    """An ordering puzzle from a fixed exercise book of 32: two (80%) or three people of a fixed cast compared
    along the chain (each comparison said either way round: 甲比乙高 or 乙比甲矮; a quarter of the three-person
    chains reversed), then the top, bottom or middle one asked. The options are the cast in a fixed order, so
    the letter is the person. The teller varies, the puzzles recur: a tiny model learns them by recall first
    and by inference only with more data and size."""
    bank = puzzle_bank()

    def gen(rng: random.Random) -> Item:
        text, answer = rng.choice(bank)
        scene = rng.choice(_REASONING_SCENES).format(p=rng.choice(PEOPLE[4:]), place=rng.choice(PLACES))
        return fixed_mc_item(scene + text, answer, _CAST)

    return gen


_FRUIT = ("苹果", "梨", "桃子", "橘子", "气球", "饼干", "鸡蛋", "包子", "橙子", "西瓜")


def make_math():
    """One- and two-step word problems with small numbers; the reply shows each step, then the boxed answer."""

    def gen(rng: random.Random) -> Item:
        p, t = rng.choice(PEOPLE), rng.choice(_FRUIT)
        kind = rng.randrange(5)
        if kind == 0:
            a, b = rng.randint(1, 20), rng.randint(1, 20)
            r, steps = a + b, [f"{a}+{b}={a + b}"]
            q = f"{p}有{a}个{t}，又买了{b}个。{p}现在有几个{t}？"
        elif kind == 1:
            a = rng.randint(2, 20)
            b = rng.randint(1, a - 1)
            r, steps = a - b, [f"{a}-{b}={a - b}"]
            q = f"{p}有{a}个{t}，吃掉了{b}个。{p}还剩几个{t}？"
        elif kind == 2:
            a, b = rng.randint(1, 15), rng.randint(1, 15)
            c = rng.randint(1, a + b)
            r, steps = a + b - c, [f"{a}+{b}={a + b}", f"{a + b}-{c}={a + b - c}"]
            q = f"{p}有{a}个{t}，妈妈又给了{b}个，{p}送给同学{c}个。{p}还有几个{t}？"
        elif kind == 3:
            a, b = rng.randint(2, 9), rng.randint(2, 9)
            r, steps = a * b, [f"{a}×{b}={a * b}"]
            q = f"每盒有{a}个{t}，{p}买了{b}盒。{p}一共买了几个{t}？"
        else:
            a, b, c = rng.randint(2, 9), rng.randint(2, 5), rng.randint(1, 9)
            r, steps = a * b + c, [f"{a}×{b}={a * b}", f"{a * b}+{c}={a * b + c}"]
            q = f"每袋有{a}个{t}，{p}拿了{b}袋，又拿了{c}个。{p}一共拿了几个{t}？"
        reply = "，".join(steps) + f"。\n答案是\\boxed{{{r}}}"
        return qa(q, reply, answer=str(r))

    return gen


_OPS, _CMPS = OPERATOR_WORDS, COMPARISON_WORDS


def _arith_code(fn: str, v: str, steps: list[tuple[str, int]]) -> str:
    if len(steps) == 1:
        op, k = steps[0]
        return f"def {fn}({v}):\n    return {v} {op} {k}"
    lines = [f"def {fn}({v}):", f"    y = {v} {steps[0][0]} {steps[0][1]}"]
    lines += [f"    y = y {op} {k}" for op, k in steps[1:]] + ["    return y"]
    return "\n".join(lines)


def _cond_code(fn: str, v: str, cmp: str, k: int, a: int, b: int) -> str:
    return f"def {fn}({v}):\n    if {v} {cmp} {k}:\n        return {a}\n    return {b}"


def _two_distinct(rng: random.Random, reference: str, candidates: list[str]) -> tuple[str, str]:
    pool = [c for c in dict.fromkeys(candidates) if c != reference]
    first, second = rng.sample(pool, 2)
    return first, second


def make_code():
    """A Chinese description of a small function; the reference implements it, each distractor changes one
    detail (an operator, a constant, the step order, a comparison or the returned values).
    """

    def gen(rng: random.Random) -> Item:
        fn, v = rng.choice(("f", "g", "h", "calc")), rng.choice(("x", "n", "m"))
        if rng.random() < 0.65:
            steps = [(rng.choice(tuple(_OPS)), rng.randint(1, 9)) for _ in range(rng.randint(1, 2))]
            words = [f"{_OPS[op]}{numeral(k)}" for op, k in steps]
            if len(steps) == 1:
                text = f"写一个函数{fn}，输入{v}，返回{v}{words[0]}的结果。"
            else:
                text = f"写一个函数{fn}，输入{v}，先把{v}{words[0]}，" + "".join(f"再{w}，" for w in words[1:])
                text += "最后返回结果。"
            ref = _arith_code(fn, v, steps)
            wrong: list[str] = []
            for i, (op, k) in enumerate(steps):
                other_op = rng.choice([o for o in _OPS if o != op])
                other_k = rng.choice([j for j in range(1, 10) if j != k])
                wrong.append(_arith_code(fn, v, steps[:i] + [(other_op, k)] + steps[i + 1:]))
                wrong.append(_arith_code(fn, v, steps[:i] + [(op, other_k)] + steps[i + 1:]))
            if len(steps) > 1:
                wrong.append(_arith_code(fn, v, steps[::-1]))
        else:
            cmp, k = rng.choice(tuple(_CMPS)), rng.randint(1, 9)
            a, b = rng.sample(range(10), 2)
            text = (f"写一个函数{fn}，输入{v}，如果{v}{_CMPS[cmp]}{numeral(k)}就返回{numeral(a)}，"
                    f"否则返回{numeral(b)}。")
            ref = _cond_code(fn, v, cmp, k, a, b)
            wrong = [_cond_code(fn, v, rng.choice([c for c in _CMPS if c != cmp]), k, a, b),
                     _cond_code(fn, v, cmp, k, b, a),
                     _cond_code(fn, v, cmp, rng.choice([j for j in range(1, 10) if j != k]), a, b)]
        d1, d2 = _two_distinct(rng, ref, wrong)
        return qa(text, ref, choices=(ref, d1, d2))

    return gen


def _poem(phrases: list[str], ending: str) -> str:
    return "\n".join(phrases[i] + phrases[i + 1] + ending for i in range(0, len(phrases), 2))


def make_creative_writing():
    """A short poem on a theme with a fixed number of lines, each ending in a given character. Distractors:
    the same poem with another ending, or a poem on another theme with the right ending.
    """
    themes = tuple(THEMES)

    def gen(rng: random.Random) -> Item:
        theme, ending, n = rng.choice(themes), rng.choice(LINE_ENDINGS), rng.randint(2, 4)
        phrases = rng.sample(THEMES[theme], 2 * n)
        prompt = rng.choice(("写一首关于{t}的小诗，一共{n}行，每行最后一个字都是“{e}”，第一行用“{p}”开头。",
                             "以{t}为题写{n}行短诗，开头是“{p}”，每一行都用“{e}”字结尾。"))
        prompt = prompt.format(t=theme, n=numeral(n), e=ending, p=phrases[0])
        other_theme = rng.choice([t for t in themes if t != theme])
        ref = _poem(phrases, ending)
        wrong_end = _poem(phrases, rng.choice([e for e in LINE_ENDINGS if e != ending]))
        wrong_theme = _poem(rng.sample(THEMES[other_theme], 2 * n), ending)
        return qa(prompt, ref, choices=(ref, wrong_end, wrong_theme))

    return gen
