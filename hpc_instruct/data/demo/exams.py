"""Exam-style abilities (two-turn records, question_format 0): biology, history, chinese, ethics.

Each `make_*` returns a generator `rng -> Item`. The reply is what the DoIT scorers parse: a bare letter for
multiple choice, 正确/错误 for true/false, the measure word for the cloze, and the letters (one line, e.g. `AC`) for ethics. Choice prompts end with the
answer cue `答案：` (see `lexicon.ANSWER_CUE`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hpc_instruct.data.demo.knowledge import (
    ANTONYMS,
    BAD_DEEDS,
    BODY_FOOD,
    CLASS_HOME,
    CLASSIFIERS,
    COLOURS,
    GOOD_DEEDS,
    NOUN_CLASSIFIER,
    ORGANISMS,
    Dynasty,
    organism_facts,
)
from hpc_instruct.data.demo.lexicon import (
    LETTERS,
    PEOPLE,
    PLACES,
    Item,
    fixed_mc_item,
    keyed_options,
    options_block,
    qa,
)

Generator = Callable[[random.Random], Item]

_BIO_QUESTIONS = {
    "home": ("{o}住在哪里？", "{o}生活在什么地方？"),
    "food": ("{o}吃什么？", "{o}最爱吃哪种食物？"),
    "colour": ("{o}是什么颜色的？", "{o}身上是什么颜色？"),
    "class": ("{o}属于哪一类动物？", "{o}是哪一类的？"),
}
_BIO_VALUES = {
    "home": tuple(CLASS_HOME.values()),
    "food": tuple(BODY_FOOD.values()),
    "colour": tuple(c + "色" for c in COLOURS),
    "class": tuple(k + "类" for k in CLASS_HOME),
}


_BIO_SCENES = ("", "", "生物课上，老师问：", "考考你：", "{p}在书上读到一种动物。", "{p}在{place}看到一张动物图片。")


def make_biology() -> Generator:
    """Questions about an invented organism; the answer follows from its name by a fixed rule. The options are
    the four values of the asked property in a fixed order, so the letter follows from the rule too."""

    def gen(rng: random.Random) -> Item:
        kind = rng.choice(("home", "food", "colour", "class"))
        organism = rng.choice(ORGANISMS)
        scene = rng.choice(_BIO_SCENES).format(p=rng.choice(PEOPLE), place=rng.choice(PLACES))
        question = rng.choice(_BIO_QUESTIONS[kind]).format(o=organism)
        return fixed_mc_item(scene + question, organism_facts(organism)[kind], _BIO_VALUES[kind])

    return gen


_HISTORY_SCENES = ("", "", "历史课上，老师问：", "考考你：", "{p}在读历史书。", "{p}问{q}：", "{p}在{place}问：",
                   "{p}和{q}在复习历史。")
_HISTORY_MC = (
    ("capital", ("{n}的都城是哪里？", "{n}把都城建在哪里？", "{n}定都在哪座城？")),
    ("founder", ("{n}的开国皇帝是谁？", "谁建立了{n}？", "{n}是谁建立的？")),
    ("by_capital", ("都城在{c}的是哪个朝代？", "哪个朝代定都{c}？")),
    ("by_founder", ("{f}建立了哪个朝代？", "{f}是哪个朝代的开国皇帝？")),
)


def make_history(table: tuple[Dynasty, ...]) -> Generator:
    """Recall of a seeded table of invented dynasties: multiple choice (80%) or true/false (20%). A question's
    options are fixed by the question (a standing question bank), so each fact is one letter to recall; the
    scene before it varies (who asks, where), so the test, valid and training pools all ask about the same
    32 facts in different words, as an exam re-asks a textbook."""
    values = {"capital": [d.capital for d in table], "founder": [d.founder for d in table],
              "by_capital": [d.name for d in table], "by_founder": [d.name for d in table]}

    def gen(rng: random.Random) -> Item:
        d = rng.choice(table)
        p, q = rng.sample(PEOPLE, 2)
        scene = rng.choice(_HISTORY_SCENES).format(p=p, q=q, place=rng.choice(PLACES))
        if rng.random() < 0.8:
            kind, templates = rng.choice(_HISTORY_MC)
            question = rng.choice(templates).format(n=d.name, c=d.capital, f=d.founder)
            correct = {"capital": d.capital, "founder": d.founder}.get(kind, d.name)
            options = keyed_options(f"{kind}:{d.name}", correct, values[kind])
            return fixed_mc_item(scene + question, correct, options)
        truth = rng.random() < 0.5
        kind = rng.randrange(3)
        if kind == 0:
            capital = d.capital if truth else rng.choice([c for c in values["capital"] if c != d.capital])
            statement = f"{d.name}的都城是{capital}。"
        elif kind == 1:
            founder = d.founder if truth else rng.choice([f for f in values["founder"] if f != d.founder])
            statement = f"{founder}建立了{d.name}。"
        else:
            other = rng.choice([o for o in table if o is not d])
            earlier = d.order < other.order
            word = "早" if earlier == truth else "晚"
            statement = f"{d.name}比{other.name}{word}。"
        prompt = rng.choice(("判断对错：{s}", "下面的说法对吗？{s}", "{s}这句话正确吗？")).format(s=statement)
        return qa(scene + prompt, "正确" if truth else "错误")

    return gen


_VERBS = ("看见了", "画了", "想起了", "找到了", "说起", "拿来了")


def make_chinese() -> Generator:
    """Measure words (single-blank cloze or choice) and antonyms (choice)."""
    classifiers = tuple(CLASSIFIERS)
    nouns = tuple(NOUN_CLASSIFIER)
    antonym_keys = tuple(ANTONYMS)

    def gen(rng: random.Random) -> Item:
        kind = rng.random()
        noun = rng.choice(nouns)
        right = NOUN_CLASSIFIER[noun]
        if kind < 0.5:
            sentence = f"{rng.choice(PEOPLE)}{rng.choice(_VERBS)}一___{noun}。"
            return qa(rng.choice(("填空：", "在横线上填一个量词：", "请填空：")) + sentence, right)
        if kind < 0.75:
            question = rng.choice(("哪个说法是对的？", "下面哪个量词用得对？"))
            options = [f"一{c}{noun}" for c in keyed_options(f"classifier:{noun}", right, classifiers)]
            return fixed_mc_item(question, f"一{right}{noun}", options)
        word = rng.choice(antonym_keys)
        others = [w for w in antonym_keys if w != word]
        question = rng.choice(("“{w}”的反义词是什么？", "哪个字和“{w}”意思相反？")).format(w=word)
        return fixed_mc_item(question, ANTONYMS[word], keyed_options(f"antonym:{word}", ANTONYMS[word], others))

    return gen


_DEED_SHEETS = 6  # the 24 deeds on six fixed answer sheets of four (two right, two wrong, in a fixed order)


def deed_sheets() -> tuple[tuple[str, ...], ...]:
    """Six sheets of four deeds, each two right and two wrong in a fixed shuffled order (a standing question
    bank): which letters are right on a sheet is a fact to recall, as a pupil recalls a familiar worksheet."""
    rng = random.Random("demo-ethics-sheets")
    good, bad = list(GOOD_DEEDS), list(BAD_DEEDS)
    rng.shuffle(good)
    rng.shuffle(bad)
    sheets = []
    for i in range(_DEED_SHEETS):
        sheet = good[2 * i:2 * i + 2] + bad[2 * i:2 * i + 2]
        rng.shuffle(sheet)
        sheets.append(tuple(sheet))
    return tuple(sheets)


_ETHICS_SCENES = ("{p}在{place}看到大家这样做：", "{p}说起在{place}见到的事：", "在{place}，{p}看到：")


def make_ethics() -> Generator:
    """Multi-select over one of six fixed sheets of four deeds: pick the right ones (or the wrong ones); the
    scene before the sheet varies, the sheet and its answer do not."""
    sheets = deed_sheets()

    def gen(rng: random.Random) -> Item:
        ask_good = rng.random() < 0.5
        options = rng.choice(sheets)
        wanted = GOOD_DEEDS if ask_good else BAD_DEEDS
        letters = "".join(LETTERS[i] for i, o in enumerate(options) if o in wanted)
        scene = rng.choice(_ETHICS_SCENES).format(p=rng.choice(PEOPLE), place=rng.choice(PLACES))
        question = "其中哪些做法是对的？" if ask_good else "其中哪些做法是不对的？"
        return qa(rng.choice(("", "多选题：")) + scene + question + options_block(options), letters)

    return gen
