"""One scorer per DoIT question format and scoring mode, the per-item chance value, and the `score` dispatch.

Every scorer returns a `Score`: the parsed answer as a string, whether it is correct, the item's chance accuracy,
the rule that decided (`method`), the mode, and an `error` ("" unless the item could not be judged). Result rows
store all of it, so a table can be rescored without a model and a change of rule shows up as a new
`SCORER_VERSION`. Modes (`modes.py`): `doit` and `doit-text` reproduce the official code (`official.py`,
`official_math.py`); `corrected` reads replies as a grader would (`letters`, `true_false`, `cloze`,
`math_answer`, `math_equiv`, optionally `symbolic`). Formats are those of `hpc_instruct.data.abilities`.

`score` raises `ItemError` for a malformed item (or one the official code crashes on); `score_or_error` turns
that into a `Score` with `error` set, which is what batch scoring uses.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import comb

from hpc_instruct.data.abilities import CLOZE, FORMATS, MATH, MC, MULTI_SELECT, RANK3, TRUE_FALSE
from hpc_instruct.evaluate.scoring import official
from hpc_instruct.evaluate.scoring.cloze import cloze_reference, parse_cloze
from hpc_instruct.evaluate.scoring.letters import (
    OPTION_LETTERS,
    multi_select_reference,
    parse_choice,
    parse_letter_set,
    reference_letter,
)
from hpc_instruct.evaluate.scoring.math_answer import extract_math_answer
from hpc_instruct.evaluate.scoring.math_equiv import is_equivalent
from hpc_instruct.evaluate.scoring.modes import CORRECTED, DOIT, ItemError, check_mode
from hpc_instruct.evaluate.scoring.official_math import doit_math_answer, doit_math_equiv
from hpc_instruct.evaluate.scoring.perplexity import rank_reference_first
from hpc_instruct.evaluate.scoring.true_false import parse_true_false, reference_truth

# Bump whenever a rule changes what any item scores; it goes into EvalTask identities and result rows.
SCORER_VERSION = "doit-scoring-2"


@dataclass(frozen=True)
class Score:
    """The outcome of scoring one item."""

    format: str
    parsed: str  # the answer as read from the reply ("B", "ABD", "T", "北京", "\\frac{1}{2}", "0" for rank3)
    correct: bool
    chance: float  # this item's chance accuracy, 0..1
    method: str  # the rule that decided: "one_char", "logits", "answer_phrase", "boxed", ... or "error"
    mode: str  # "doit", "doit-text" or "corrected"
    error: str = ""  # why the item could not be judged ("" when it was)


def chance(fmt: str, *, n_options: int = 4, n_correct: int = 1, n_candidates: int = 3) -> float:
    """Chance accuracy of one item: mc 1/n_options, true_false 1/2, multi_select 1/C(n_options, n_correct)
    (a uniform guess over subsets of the right size, as the paper counts it), rank3 1/n_candidates, cloze and
    math 0 (open answers)."""
    if fmt == MC:
        return 1.0 / n_options
    if fmt == TRUE_FALSE:
        return 0.5
    if fmt == MULTI_SELECT:
        if not 1 <= n_correct <= n_options:
            raise ItemError(f"multi-select item with {n_correct} correct of {n_options} options")
        return 1.0 / comb(n_options, n_correct)
    if fmt == RANK3:
        return 1.0 / n_candidates
    if fmt in (CLOZE, MATH):
        return 0.0
    raise ValueError(_unknown_format(fmt))


def score_mc(
    response: str,
    reference: str,
    *,
    n_options: int = 4,
    letter_logprobs: Mapping[str, float] | Sequence[float] | None = None,
    mode: str = DOIT,
) -> Score:
    """Single-answer multiple choice. `letter_logprobs`: letter -> log-prob, or values in letter order."""
    check_mode(mode)
    if isinstance(letter_logprobs, Mapping):
        ordered = [letter_logprobs[c] for c in OPTION_LETTERS[:n_options] if c in letter_logprobs]
        by_letter = dict(letter_logprobs)
    else:
        ordered = list(letter_logprobs or ())
        by_letter = dict(zip(OPTION_LETTERS, ordered, strict=False)) if ordered else None
    if mode == CORRECTED:
        ref = reference_letter(reference, n_options)
        parsed, method = parse_choice(response, n_options, by_letter)
        return Score(MC, parsed, parsed == ref, chance(MC, n_options=n_options), method, mode)
    ref = official.doit_choice_label(reference)
    parsed, method = official.parse_doit_choice(response, ordered or None, mode)
    return Score(MC, parsed, parsed == ref, official.doit_mc_chance(n_options), method, mode)


def score_true_false(response: str, reference: str, *, mode: str = DOIT) -> Score:
    """True/false: the official keyword sets (both official modes read text), or the corrected reader."""
    check_mode(mode)
    if mode == CORRECTED:
        ref = reference_truth(reference)
        parsed, method = parse_true_false(response)
    else:
        ref = official.doit_truth_label(reference)
        parsed, method = official.parse_doit_true_false(response)
    return Score(TRUE_FALSE, parsed, parsed == ref, chance(TRUE_FALSE), method, mode)


def score_cloze(response: str, reference: str, *, mode: str = DOIT) -> Score:
    """Single-blank cloze: official first-CJK-run-plus-punctuation against the label, or the corrected span."""
    check_mode(mode)
    if mode == CORRECTED:
        ref, cjk = cloze_reference(reference)
        parsed, method = parse_cloze(response, cjk)
        return Score(CLOZE, parsed, bool(parsed) and parsed == ref, chance(CLOZE), method, mode)
    if not reference:
        raise ItemError("cloze reference is empty")
    parsed, method = official.parse_doit_cloze(response)
    return Score(CLOZE, parsed, parsed == reference, chance(CLOZE), method, mode)


def score_multi_select(response: str, reference: str, *, n_options: int = 4, mode: str = DOIT) -> Score:
    """Multi-select: exact set match. Official: letters of the last line, chance 1/C(4, k) (five letters
    crash there: `ItemError`); corrected: see `letters.parse_letter_set`, options counted from the letters."""
    check_mode(mode)
    if mode == CORRECTED:
        ref = multi_select_reference(reference)
        options = max(n_options, max(OPTION_LETTERS.index(c) + 1 for c in ref))
        parsed_set, method = parse_letter_set(response, options)
        item_chance = chance(MULTI_SELECT, n_options=options, n_correct=len(ref))
    else:
        ref = official.doit_letter_set(reference)
        item_chance = official.doit_multi_select_chance(ref)
        parsed_set, method = official.doit_letter_set(response), "last_line"
    return Score(MULTI_SELECT, "".join(sorted(parsed_set)), parsed_set == ref, item_chance, method, mode)


def score_math(response: str, reference: str | None, *, mode: str = DOIT, symbolic: bool = False) -> Score:
    """Math: official `parse_math_tasks` + `is_equiv`, or the corrected extraction and equivalence
    (`symbolic` adds sympy, corrected mode only)."""
    check_mode(mode)
    if mode == CORRECTED:
        if reference is None or not str(reference).strip():
            raise ItemError("math item without its answer")
        parsed, method = extract_math_answer(response)
        correct = bool(parsed) and is_equivalent(parsed, reference, symbolic=symbolic)
        return Score(MATH, parsed, correct, chance(MATH), method, mode)
    answer, method = doit_math_answer(response)
    correct = doit_math_equiv(answer, reference)
    return Score(MATH, "" if answer is None else answer, correct, chance(MATH), method, mode)


def score_rank3(perplexities: Sequence[float], *, mode: str = DOIT) -> Score:
    """Ranking: official `min(ppl) == ppl[0]` (ties count as correct), or corrected: strictly lowest."""
    check_mode(mode)
    values = list(perplexities)
    if len(values) < 2:
        raise ItemError(f"a ranking item needs at least two candidate perplexities, got {len(values)}")
    if mode == CORRECTED:
        correct, winner = rank_reference_first(values)
        parsed = "" if winner is None else str(winner)
        method = "nan_perplexity" if winner is None else "lowest_perplexity"
        return Score(RANK3, parsed, correct, chance(RANK3, n_candidates=len(values)), method, mode)
    correct, method = official.doit_rank3(values)
    parsed = str(values.index(min(values)))  # the candidate Python's min picks, as the official code does
    return Score(RANK3, parsed, correct, chance(RANK3, n_candidates=len(values)), method, mode)


# The keyword arguments each format accepts through `score`, besides `mode`.
_EXTRAS: dict[str, tuple[str, ...]] = {
    MC: ("n_options", "letter_logprobs"),
    TRUE_FALSE: (),
    CLOZE: (),
    MULTI_SELECT: ("n_options",),
    MATH: ("symbolic",),
    RANK3: ("perplexities",),
}


def _did_you_mean(name: str, valid: tuple[str, ...]) -> str:
    near = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _unknown_format(fmt: str) -> str:
    return (
        f"unknown question format {fmt!r}{_did_you_mean(fmt, FORMATS)}; valid formats: {', '.join(FORMATS)}"
    )


def score(
    fmt: str, response: str | None, reference: str | None, *, mode: str = DOIT, **extras: object
) -> Score:
    """Score one item of any format.

    Args:
        fmt: one of `hpc_instruct.data.abilities.FORMATS`.
        response: the generated reply (ignored for rank3, whose evidence is `perplexities`).
        reference: the reference answer ("B", "正确", "ABD", "北京", the math `answer`; ignored for rank3).
        mode: "doit" (default, the paper's rules), "doit-text" or "corrected".
        **extras: mc: `n_options`, `letter_logprobs`; multi_select: `n_options`; math: `symbolic`;
            rank3: `perplexities` (reference first). Anything else is an error.

    Raises:
        ItemError: the item cannot be judged (malformed reference, official crash).
    """
    check_mode(mode)
    if fmt not in _EXTRAS:
        raise ValueError(_unknown_format(fmt))
    allowed = _EXTRAS[fmt]
    unknown = sorted(set(extras) - set(allowed))
    if unknown:
        hints = [f"{k!r}{_did_you_mean(k, allowed)}" for k in unknown]
        raise TypeError(
            f"format {fmt!r} got unexpected arguments {', '.join(hints)}; valid: {allowed or 'none'}"
        )
    if fmt == RANK3:
        if "perplexities" not in extras:
            raise TypeError("format 'rank3' needs perplexities=[reference, distractor, distractor]")
        return score_rank3(extras["perplexities"], mode=mode)  # type: ignore[arg-type]
    if response is None or (reference is None and fmt != MATH):
        raise TypeError(f"format {fmt!r} needs a response and a reference (use '' for an empty reply)")
    if fmt == MC:
        return score_mc(response, reference, mode=mode, **extras)  # type: ignore[arg-type]
    if fmt == TRUE_FALSE:
        return score_true_false(response, reference, mode=mode)  # type: ignore[arg-type]
    if fmt == CLOZE:
        return score_cloze(response, reference, mode=mode)  # type: ignore[arg-type]
    if fmt == MULTI_SELECT:
        return score_multi_select(response, reference, mode=mode, **extras)  # type: ignore[arg-type]
    return score_math(response, reference, mode=mode, **extras)  # type: ignore[arg-type]


def score_or_error(
    fmt: str, response: str | None, reference: str | None, *, mode: str = DOIT, **extras: object
) -> Score:
    """`score`, with an `ItemError` returned as a `Score` whose `error` says why (never correct)."""
    try:
        return score(fmt, response, reference, mode=mode, **extras)
    except ItemError as exc:
        return Score(fmt, "", False, 0.0, "error", mode, str(exc))
