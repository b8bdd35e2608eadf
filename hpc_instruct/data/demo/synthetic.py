"""The demo's synthetic pool: broader and noisier than the curated pools, like GPT-4-generated data.

Compared with a curated pool, a synthetic record
- is often about something no ability tests (repeat a sentence, write a number, list fruits, greetings);
- when it does touch an ability, answers in another style ("答案是B。" instead of "B", no `\\boxed{}`), and
  behind varied lead-ins ("请回答：", "帮我看看这道题：");
- is wrong about one time in ten (another letter, an off-by-some number, a distractor as the reply);
- carries no ability label (`type` is "general"), question_format 0 and no choices.
So it teaches less per sample than curated data and stops helping early, which is finding 2 of DoIT.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping

from hpc_instruct.data.demo.knowledge import CLASSIFIERS
from hpc_instruct.data.demo.lexicon import NUMERALS, PEOPLE, PLACES, THINGS, Item, numeral, qa

SYNTHETIC_TYPE = "general"
NOISE = 0.1  # share of ability-like synthetic records with a wrong answer
GENERAL_SHARE = 0.2  # share of records about nothing any ability tests

Generator = Callable[[random.Random], Item]

_LEAD_INS = ("", "", "", "", "", "请回答：", "帮我看看这道题：", "问题如下。\n", "你能回答这个吗？")
_FRUITS = ("苹果", "香蕉", "葡萄", "西瓜", "橘子", "桃子", "梨", "草莓")
_ANIMALS = ("猫", "狗", "兔子", "大象", "老虎", "熊猫", "猴子", "马")
_ACTIVITIES = ("看书", "画画", "唱歌", "跑步", "写字", "吃饭", "买东西", "散步")


def _general(rng: random.Random) -> Item:
    """One everyday instruction that none of the ten abilities tests."""
    kind = rng.randrange(8)
    if kind == 0:
        sentence = f"{rng.choice(PEOPLE)}在{rng.choice(PLACES)}{rng.choice(_ACTIVITIES)}。"
        return qa(f"请把这句话重复一遍：{sentence}", sentence)
    if kind == 1:
        n = rng.randint(0, 99)
        return qa(f"“{numeral(n)}”写成阿拉伯数字是多少？", str(n))
    if kind == 2:
        n = rng.randint(0, 99)
        return qa(f"{n}用汉字怎么写？", numeral(n))
    if kind == 3:
        k = rng.randint(2, 4)
        group, words = rng.choice((("水果", _FRUITS), ("动物", _ANIMALS)))
        return qa(f"说出{NUMERALS[k]}种{group}。", "、".join(rng.sample(words, k)) + "。")
    if kind == 4:
        word = rng.choice(_FRUITS + _ANIMALS + PLACES + THINGS)
        return qa(f"“{word}”一共有几个字？", f"{len(word)}个字。")
    if kind == 5:
        a, b = rng.sample(range(100), 2)
        return qa(f"{a}和{b}哪个大？", f"{max(a, b)}大。")
    if kind == 6:
        nums = rng.sample(range(1, 50), rng.randint(3, 5))
        return qa("把这些数从小到大排好：" + "，".join(map(str, nums)), "，".join(map(str, sorted(nums))))
    greeting, reply = rng.choice((("你好", "你好！有什么可以帮你的吗？"), ("谢谢你", "不客气！"),
                                  ("今天天气怎么样？", "我看不到窗外，不过希望是个好天气。"),
                                  ("给我讲个笑话。", "小猫问小狗：你为什么总是追尾巴？小狗说：因为它总跑。")))
    return qa(greeting, reply)


_LETTER = re.compile(r"^[A-D]$")


def _restyle(rng: random.Random, ability: str, item: Item, wrong: bool) -> Item:
    """Re-answer an ability-like item in a synthetic style, optionally wrongly; drop choices and answer."""
    turns = [c for _, c in item.messages]
    last = turns[-1]
    if item.choices is not None:  # rank-3 abilities: the reference, or a distractor when wrong
        last = item.choices[1] if wrong else item.choices[0]
    elif _LETTER.match(last):
        letter = rng.choice([x for x in "ABCD" if x != last]) if wrong else last
        last = rng.choice(("答案是{}。", "选{}。", "{}", "{}")).format(letter)
    elif last in ("正确", "错误"):
        right = (last == "正确") != wrong
        last = rng.choice(("正确", "这句话是正确的。")) if right else rng.choice(("错误", "这句话是错误的。"))
    elif ability == "chinese":  # cloze: the measure word
        word = rng.choice([c for c in CLASSIFIERS if c != last]) if wrong else last
        last = rng.choice(("应该填“{}”。", "{}", "{}")).format(word)
    elif ability == "ethics":
        letters = "".join(rng.sample("ABCD", rng.randint(1, 3))) if wrong else last
        last = rng.choice(("应该选{}。", "{}", "{}")).format(letters)
    elif ability == "math" and item.answer is not None:
        value = int(item.answer) + (rng.choice((-3, -2, -1, 1, 2, 3)) if wrong else 0)
        steps = last.split("。")[0]
        last = rng.choice((f"{steps}。所以答案是{value}。", f"答案是{value}。", f"{steps}，得到{value}。"))
    turns[-1] = last
    turns[0] = rng.choice(_LEAD_INS) + turns[0]
    return qa(*turns)


def make_synthetic(curated: Mapping[str, Generator]) -> Generator:
    """Draw general instructions and restyled, sometimes wrong, versions of the curated tasks."""
    abilities = tuple(sorted(curated))

    def gen(rng: random.Random) -> Item:
        if rng.random() < GENERAL_SHARE:
            item = _general(rng)
            if rng.random() < 0.2:  # a follow-up turn on another topic
                follow = _general(rng)
                item = qa(*[c for _, c in item.messages], *[c for _, c in follow.messages])
            return item
        ability = rng.choice(abilities)
        return _restyle(rng, ability, curated[ability](rng), wrong=rng.random() < NOISE)

    return gen

