"""A "pretraining" corpus for the demo world: its facts and everyday stories as plain text, with no instructions.

DoIT tunes base models that already know a lot; instruction data mostly teaches them to answer. A tiny model
pretrained on this corpus (`pretrain/corpus.jsonl`, one `{"text": ...}` document per line, outside the DoIT
layout; the `pretrain` field of a model in the recipe) plays that role: it knows the organisms, the dynasties,
the measure words, the personas, the deeds, sums and products, and has read short everyday stories (two people
making a plan, people compared by height, sums told as stories), but has never seen a question, an option list
or a letter answer. So instruction tuning teaches the answering, and what one ability's data teaches about
reading or comparing can carry over to another (the transfer the study measures).
"""

from __future__ import annotations

import random

from hpc_instruct.data.demo.knowledge import (
    ANTONYMS,
    BAD_DEEDS,
    BODY_FOOD,
    CLASS_HOME,
    GOOD_DEEDS,
    NOUN_CLASSIFIER,
    ORGANISMS,
    PERSONAS,
    THEMES,
    Dynasty,
    organism_facts,
)
from hpc_instruct.data.demo.lexicon import (
    COMPARISON_WORDS,
    GOODS,
    OPERATOR_WORDS,
    PEOPLE,
    PLACES,
    TIMES,
    TRANSPORT,
    numeral,
)

STORIES = 1200  # everyday stories in the corpus, next to the ~200 fact sentences
CODE_SNIPPETS = 300  # small commented functions, three per document
_HEIGHTS = (("高", "矮", "最高"), ("大", "小", "年纪最大"), ("跑得快", "跑得慢", "跑得最快"), ("重", "轻", "最重"))
_THINGS = ("苹果", "梨", "桃子", "橘子", "饼干", "鸡蛋", "包子", "西瓜")


def corpus_lines(table: tuple[Dynasty, ...], seed: int) -> list[str]:
    """Every fact of the demo world as one sentence per line, shuffled by `seed`."""
    lines: list[str] = []
    for o in ORGANISMS:
        f = organism_facts(o)
        lines.append(f"{o}是{f['colour']}的{f['class']}动物，住在{f['home']}，爱吃{f['food']}。")
    lines += [f"名字里有“{b}”的动物爱吃{food}。" for b, food in BODY_FOOD.items()]
    lines += [f"{k}类动物住在{home}。" for k, home in CLASS_HOME.items()]
    by_order = sorted(table, key=lambda d: d.order)
    for d in by_order:
        lines.append(f"{d.name}是第{numeral(d.order)}个朝代，都城是{d.capital}，开国皇帝是{d.founder}。")
    lines += [f"{a.name}在{b.name}之前。" for a, b in zip(by_order, by_order[1:], strict=False)]
    for d in table:  # each fact said several ways, as a textbook and its exercises repeat it
        lines += [f"{d.name}的都城是{d.capital}。", f"{d.name}定都{d.capital}。", f"{d.founder}建立了{d.name}。",
                  f"{d.name}的开国皇帝是{d.founder}。"]
    rng = random.Random(f"demo-corpus:{seed}")
    for noun, c in NOUN_CLASSIFIER.items():
        lines.append(f"{rng.choice(PEOPLE)}有一{c}{noun}。")
    lines += [f"“{a}”和“{b}”意思相反。" for a, b in ANTONYMS.items()]
    lines += [f"{d}是对的。" for d in GOOD_DEEDS] + [f"{d}是不对的。" for d in BAD_DEEDS]
    for p in PERSONAS:
        lines.append(f"{p.name}说话爱在句尾说“{p.marker}”。{p.name}爱吃{p.food}，住在{p.home}，喜欢{p.hobby}。")
    lines += [f"写{t}的诗常用这些词：{'、'.join(words)}。" for t, words in THEMES.items()]
    lines += [f"{a}+{b}={a + b}" for a in range(21) for b in range(21)]
    lines += [f"{a}×{b}={a * b}" for a in range(2, 10) for b in range(2, 10)]
    lines += [f"{numeral(n)}就是{n}。" for n in range(100)]
    lines.append("加就是+，减就是-，乘以就是*，大于就是>，小于就是<，等于就是==。")
    rng.shuffle(lines)
    return lines


def story(rng: random.Random) -> str:
    """One everyday story: a plan made in a dialogue, people compared, a sum told as a story, or a lettered list
    and where something is on it (how lists work, never a question or an answer to one)."""
    kind = rng.randrange(4)
    if kind == 3:
        group = rng.choice((PLACES, TIMES, GOODS, PEOPLE, _THINGS))
        items = rng.sample(group, 4)
        pick = rng.randrange(4)
        lines = "\n".join(f"{'ABCD'[i]}. {x}" for i, x in enumerate(items))
        return f"{lines}\n{items[pick]}是{'ABCD'[pick]}。"
    if kind == 0:
        a, b = rng.sample(("男", "女"), 2)
        place, time, how, thing = rng.choice(PLACES), rng.choice(TIMES), rng.choice(TRANSPORT), rng.choice(GOODS)
        return (f"{a}：明天我们去{place}吧。\n{b}：好啊，几点去？\n{a}：{time}，我们{how}去。\n"
                f"{b}：好的，我再买点{thing}带上。\n他们明天{time}{how}去{place}，{b}带了{thing}。")
    if kind == 1:
        up, down, top = rng.choice(_HEIGHTS)
        ranked = rng.sample(PEOPLE, rng.choice((3, 4)))
        facts = [f"{hi}比{lo}{up}" if rng.random() < 0.5 else f"{lo}比{hi}{down}"
                 for hi, lo in zip(ranked, ranked[1:], strict=False)]
        rng.shuffle(facts)
        return "，".join(facts) + f"。所以{ranked[0]}{top}，{ranked[-1]}排在最后。"
    p, t = rng.choice(PEOPLE), rng.choice(_THINGS)
    a, b = rng.randint(1, 20), rng.randint(1, 20)
    if rng.random() < 0.5:
        return f"{p}有{a}个{t}，又买了{b}个，现在有{a + b}个{t}。{a}+{b}={a + b}。"
    a, b = max(a, b) + 1, min(a, b)
    return f"{p}有{a}个{t}，吃掉了{b}个，还剩{a - b}个{t}。{a}-{b}={a - b}。"


def code_snippet(rng: random.Random) -> str:
    """A small Python function under a Chinese comment that says what it does (code as a base model reads it
    on the web: no instruction, no question)."""
    fn, v = rng.choice(("f", "g", "h", "calc", "add", "work")), rng.choice(("x", "n", "m", "a"))
    if rng.random() < 0.65:
        steps = [(rng.choice(tuple(OPERATOR_WORDS)), rng.randint(1, 9)) for _ in range(rng.randint(1, 2))]
        words = "，再".join(f"{OPERATOR_WORDS[op]}{numeral(k)}" for op, k in steps)
        body = [f"    y = {v} {steps[0][0]} {steps[0][1]}"] + [f"    y = y {op} {k}" for op, k in steps[1:]]
        return f"# {v}{words}\ndef {fn}({v}):\n" + "\n".join(body) + "\n    return y"
    cmp, word = rng.choice(tuple(COMPARISON_WORDS.items()))
    k, a, b = rng.randint(1, 9), rng.randint(0, 9), rng.randint(0, 9)
    return (f"# {v}{word}{numeral(k)}时得{numeral(a)}，不然得{numeral(b)}\ndef {fn}({v}):\n"
            f"    if {v} {cmp} {k}:\n        return {a}\n    return {b}")


def corpus_documents(table: tuple[Dynasty, ...], seed: int, stories: int = STORIES) -> list[str]:
    """The pretraining documents: the shuffled fact sentences in groups of eight, one per line, and `stories`
    everyday stories in groups of four, shuffled together."""
    facts = corpus_lines(table, seed)
    docs = ["\n".join(facts[i:i + 8]) for i in range(0, len(facts), 8)]
    rng = random.Random(f"demo-stories:{seed}")
    tales = [story(rng) for _ in range(stories)]
    docs += ["\n".join(tales[i:i + 4]) for i in range(0, len(tales), 4)]
    snippets = [code_snippet(rng) for _ in range(CODE_SNIPPETS)]
    docs += ["\n\n".join(snippets[i:i + 3]) for i in range(0, len(snippets), 3)]
    rng.shuffle(docs)
    return docs
