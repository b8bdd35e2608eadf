"""Out-of-domain test sets in the place of DoIT's three C-Eval subjects: 5-shot, 4-way multiple choice.

Each set asks, in a new wording, for a skill one curated ability teaches, so the miniature study can show
transfer (finding 3): `physician` needs the biology food rule, `teacher_qualification` the measure words of
chinese, `urban_and_rural_planner` the addition of math. A record is five solved examples (user/assistant
pairs) and the question with its letter: 12 messages, like the DoIT files.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hpc_instruct.data.demo.knowledge import (
    BODY_FOOD,
    CLASSIFIERS,
    NOUN_CLASSIFIER,
    ORGANISMS,
    organism_facts,
)
from hpc_instruct.data.demo.lexicon import Item, mc_item, qa

SHOTS = 5
CEVAL_TYPE_SUFFIX = "_fshot"  # DoIT's record type for these sets is e.g. "ceval_physician_fshot"


def _physician(rng: random.Random) -> Item:
    organism = rng.choice(ORGANISMS)
    question = f"{organism}生病了，该喂它吃什么？"
    return mc_item(rng, question, organism_facts(organism)["food"], tuple(BODY_FOOD.values()))


def _teacher(rng: random.Random) -> Item:
    noun = rng.choice(tuple(NOUN_CLASSIFIER))
    question = f"老师问：“一___{noun}”该填哪个字？"
    return mc_item(rng, question, NOUN_CLASSIFIER[noun], tuple(CLASSIFIERS))


def _planner(rng: random.Random) -> Item:
    a, b = rng.randint(10, 40), rng.randint(1, 20)
    near = [a + b + d for d in (-10, -2, -1, 1, 2, 10) if a + b + d > 0]
    question = f"村里有{a}户人家，又搬来{b}户，现在有几户？"
    return mc_item(rng, question, str(a + b), [str(n) for n in near])


CEVAL_SETS: dict[str, Callable[[random.Random], Item]] = {
    "ceval_physician": _physician,
    "ceval_teacher_qualification": _teacher,
    "ceval_urban_and_rural_planner": _planner,
}


def make_few_shot(base: Callable[[random.Random], Item], shots: int = SHOTS):
    """Prefix `shots` solved examples of the same task (distinct from the question) as earlier turns."""

    def gen(rng: random.Random) -> Item:
        question = base(rng)
        examples: list[Item] = []
        while len(examples) < shots:
            e = base(rng)
            if e.messages[0] != question.messages[0] and e not in examples:
                examples.append(e)
        turns = [c for e in examples for _, c in e.messages] + [c for _, c in question.messages]
        return qa(*turns)

    return gen
