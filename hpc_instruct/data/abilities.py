"""The ability registry: the ten DoIT abilities and the out-of-domain sets.

Facts from ../shared/study/DOIT.md. `pool_size` is the DoIT training pool (total minus ~100 valid and ~100
test items, inferred); `mean_tokens` is a planning assumption (inferred, LLaMA tokenizer) used only by
`hpci plan` to estimate tokens and GPU-hours before any data is read. A study's own data always wins: when the
files are present their real sizes are used.

Importing this module must stay cheap (no torch, no pyarrow): it is on the login-node planning path.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

# Question formats. "generate" formats are answered by greedy generation then parsed; "rank3" by ranking three
# candidates by perplexity (question_format 1 in the DoIT files).
MC = "mc"  # multiple choice, answer is a letter (logit fallback at the answer position)
TRUE_FALSE = "true_false"
CLOZE = "cloze"  # single blank, exact match of the first CJK span
MULTI_SELECT = "multi_select"  # set of letters A-F, exact set match
MATH = "math"  # chain of thought, last \boxed{} compared by MATH-style equivalence
RANK3 = "rank3"  # reference = choices[0] must have the lowest perplexity of three candidates
FORMATS = (MC, TRUE_FALSE, CLOZE, MULTI_SELECT, MATH, RANK3)


@dataclass(frozen=True)
class Ability:
    """One ability of a study: what it is, how it is asked and scored, and how much DoIT data it has."""

    key: str
    display_name: str
    source: str
    formats: tuple[str, ...]
    chance: float  # mean chance accuracy (0..1) over the ability's items, for the chance line of plots
    total: int  # DoIT instances (train pool + valid + test)
    pool_size: int  # DoIT training pool (inferred: total - 200)
    mean_tokens: int  # planning assumption: tokens per training sample (prompt + response)
    out_of_domain: bool = False


def _ability(key, name, source, formats, chance, total, mean_tokens) -> Ability:
    return Ability(key, name, source, tuple(formats), chance, total, total - 200, mean_tokens)


# Ethics items ask for k of 4 options with k in 1..4; chance is 1/C(4,k). The DoIT mix of k is not published:
# the registry uses the mean over k = 1..4 (inferred); the scorer computes each item's own value.
_ETHICS_CHANCE = sum(1 / comb(4, k) for k in range(1, 5)) / 4

DOIT_ABILITIES: tuple[Ability, ...] = (
    _ability("biology", "STEM: biology", "COIG exam", [MC], 0.25, 1242, 160),
    _ability("history", "Humanity: history", "COIG exam", [MC, TRUE_FALSE], 0.375, 2093, 160),
    _ability("code", "Code generation", "LeetCode (cn)", [RANK3], 1 / 3, 5168, 600),
    _ability("creative_writing", "Creative writing", "in-house user queries", [RANK3], 1 / 3, 1200, 700),
    _ability("chinese", "Language proficiency: Chinese", "COIG exam", [MC, CLOZE], 0.125, 1650, 160),
    _ability("understanding", "Dialogue understanding", "C3-D", [MC], 0.29, 5085, 420),
    _ability("role_play", "Role-play chat", "BELLE multi-turn", [RANK3], 1 / 3, 1200, 800),
    _ability("reasoning", "Logical reasoning", "LogiQA 2.0", [MC], 0.25, 12951, 420),
    _ability("math", "Chain-of-thought grad math", "PRM800K", [MATH], 0.0, 11701, 360),
    _ability("ethics", "Ethics", "COIG human-value alignment", [MULTI_SELECT], _ETHICS_CHANCE, 1200, 220),
)

# Out-of-domain evaluation: three C-Eval subjects, 5-shot, ~40 items each (inferred). Not trainable.
OUT_OF_DOMAIN: tuple[Ability, ...] = tuple(
    Ability(f"ceval_{s}", f"C-Eval: {s.replace('_', ' ')}", "C-Eval (5-shot)", (MC,), 0.25, 40, 0, 900, True)
    for s in ("physician", "teacher_qualification", "urban_and_rural_planner")
)

REGISTRY: dict[str, Ability] = {a.key: a for a in DOIT_ABILITIES + OUT_OF_DOMAIN}
ABILITY_KEYS: tuple[str, ...] = tuple(a.key for a in DOIT_ABILITIES)


def custom_ability(key: str, formats: tuple[str, ...] = (MC,), pool_size: int = 0, mean_tokens: int = 300) -> Ability:
    """An ability a user adds by pointing a recipe at files in the DoIT format (sizes come from the files)."""
    chance = {MC: 0.25, TRUE_FALSE: 0.5, RANK3: 1 / 3}.get(formats[0], 0.0)
    return Ability(key, key.replace("_", " "), "user files", formats, chance, pool_size + 200, pool_size, mean_tokens)
