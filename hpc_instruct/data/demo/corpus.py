"""A "pretraining" corpus for the demo world: its facts as plain sentences, with no instructions.

DoIT tunes base models that already know a lot; instruction data mostly teaches them to answer. A tiny model
pretrained on this corpus (optional, `pretrain/corpus.jsonl`, one `{"text": ...}` document per line, outside
the DoIT layout) plays that role: it knows the organisms, the dynasties, the measure words, the personas, the
deeds, sums and products, but has never seen a question. Skills that need practice (ordering puzzles, dialogue
reading, code from descriptions, answering by letter) are left out.
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
from hpc_instruct.data.demo.lexicon import PEOPLE, numeral


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


def corpus_documents(table: tuple[Dynasty, ...], seed: int) -> list[str]:
    """The pretraining documents: the shuffled fact sentences in groups of eight."""
    facts = corpus_lines(table, seed)
    return ["".join(facts[i:i + 8]) for i in range(0, len(facts), 8)]
