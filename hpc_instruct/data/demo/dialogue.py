"""Dialogue abilities, both multi-turn: understanding (C3-D-like reading of a short dialogue, multiple choice
over the question's whole category, two questions per record) and role_play (stay in a persona; rank three candidates).
"""

from __future__ import annotations

import random

from hpc_instruct.data.demo.knowledge import PERSONAS, Persona
from hpc_instruct.data.demo.lexicon import (
    GOODS,
    LETTERS,
    PEOPLE,
    PLACES,
    TIMES,
    TRANSPORT,
    Item,
    options_block,
    qa,
)

_SHOPS = ("商店", "书店", "超市", "菜市场")
# Each question's options are its whole category, in this order, so the letter names the value the dialogue
# gives; finding which value that is stays the task. Transport has three values, so as in C3 some questions are
# three-way and the rest four-way.
_PLACES, _TIMES, _TRANSPORT, _GOODS = PLACES[:4], TIMES[:4], TRANSPORT[:3], GOODS[:4]


def _scene(rng: random.Random) -> tuple[str, list[tuple[str, str, str | None, tuple[str, ...]]]]:
    """A short dialogue and its questions as (question, answer, confusable value or None, distractor pool).

    The confusable value also occurs in the dialogue (the other purchase, the place turned down), so the
    question has to be read, not only matched against the text.
    """
    a, b = rng.sample(("男", "女"), 2)
    kind = rng.choice((0, 0, 0, 1, 2))  # most dialogues are plain plans (no confusable value)
    if kind == 0:
        place, time, how = rng.choice(_PLACES), rng.choice(_TIMES), rng.choice(_TRANSPORT)
        lines = [f"{a}：明天我们去{place}吧。", f"{b}：好啊，几点去？", f"{a}：{time}。",
                 f"{b}：我们怎么去？", f"{a}：{how}去。"]
        questions = [("他们明天去哪里？", place, None, _PLACES), ("他们几点去？", time, None, _TIMES),
                     ("他们怎么去？", how, None, _TRANSPORT)]
    elif kind == 1:
        shop = rng.choice(_SHOPS)
        own, other = rng.sample(_GOODS, 2)
        lines = [f"{b}：你去{shop}做什么？", f"{a}：我去买{own}。", f"{b}：那帮我带点{other}吧。",
                 f"{a}：好的，没问题。"]
        questions = [(f"{a}的要去哪里？", shop, None, _SHOPS), (f"{a}的自己要买什么？", own, other, _GOODS),
                     (f"{b}的让{a}的带什么？", other, own, _GOODS)]
    else:
        far, near = rng.sample(_PLACES, 2)
        time = rng.choice(_TIMES)
        lines = [f"{a}：周末我们去{far}还是去{near}？", f"{b}：{far}太远了，去{near}吧。",
                 f"{a}：好，那就{time}出发。"]
        questions = [("他们周末去哪里？", near, far, _PLACES), ("他们几点出发？", time, None, _TIMES)]
    return "\n".join(lines), questions


DIALOGUE_BANK = 24  # dialogues in the listening book every pool and test re-asks
_HEADS = ("请阅读对话，回答问题。", "听力练习。请阅读对话，回答问题。", "{p}在做听力题。请阅读对话，回答问题。",
          "{p}和{q}一起练习。请阅读对话，回答问题。")


def dialogue_bank() -> tuple[tuple[str, list], ...]:
    """A fixed book of short dialogues (a listening-exercise book): records re-ask them with other questions
    and openings, so a tiny model can learn a dialogue's answers by recall as well as by reading."""
    rng = random.Random("demo-dialogue-bank")
    return tuple(_scene(rng) for _ in range(DIALOGUE_BANK))


def make_understanding():
    """Two questions about one dialogue of the book, asked in two user turns; each answered by a letter."""
    bank = dialogue_bank()

    def gen(rng: random.Random) -> Item:
        text, questions = rng.choice(bank)
        first, second = rng.sample(questions, 2)
        p, q = rng.sample(PEOPLE, 2)
        opening = rng.choice(_HEADS).format(p=p, q=q)
        turns: list[str] = []
        for i, (question, answer, _confusable, pool) in enumerate((first, second)):
            head = f"{opening}\n{text}\n问题：" if i == 0 else "问题："
            turns += [head + question + options_block(pool), LETTERS[pool.index(answer)]]
        return qa(*turns)

    return gen


_SETUPS = ("请你扮演{p}，每句话最后都要说“{m}”。", "现在你是{p}，说话时句尾加上“{m}”。",
           "我们来玩角色扮演：你是{p}，记得每句话最后说“{m}”。")
_QUESTIONS = {
    "food": (("你喜欢吃什么？", "你最爱吃什么？"), "我最爱吃{food}"),
    "home": (("你住在哪里？", "你的家在哪儿？"), "我住在{home}"),
    "hobby": (("你平时做什么？", "你喜欢做什么？"), "我平时喜欢{hobby}"),
    "name": (("你是谁？", "介绍一下你自己。"), "我是{name}"),
    "hello": (("你好！", "早上好！"), "你好呀，很高兴见到你"),
    "bye": (("再见！", "我要走了。"), "再见，下次再来玩"),
}


def _say(content: str, marker: str) -> str:
    return f"{content}，{marker}！"


def _fact(persona: Persona, key: str) -> str:
    return _QUESTIONS[key][1].format(food=persona.food, home=persona.home, hobby=persona.hobby, name=persona.name)


def make_role_play():
    """Multi-turn persona chat. The reference keeps the persona's fact and sentence ending; one distractor
    uses another persona's ending, the other another persona's fact (ranked by perplexity, question_format 1).
    """

    def gen(rng: random.Random) -> Item:
        persona = rng.choice(PERSONAS)
        turns = [rng.choice(_SETUPS).format(p=persona.name, m=persona.marker),
                 _say(f"好的，我是{persona.name}", persona.marker)]
        keys = rng.sample(tuple(_QUESTIONS), rng.randint(1, 3))
        for key in keys:
            turns += [rng.choice(_QUESTIONS[key][0]), _say(_fact(persona, key), persona.marker)]
        other = rng.choice([p for p in PERSONAS if p is not persona])
        last = keys[-1]
        wrong_fact = _fact(other, last) if last not in ("hello", "bye") else _fact(other, "food")
        choices = (turns[-1], _say(_fact(persona, last), other.marker), _say(wrong_fact, persona.marker))
        return qa(*turns, choices=choices)

    return gen
