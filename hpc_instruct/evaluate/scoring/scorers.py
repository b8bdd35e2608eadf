"""One scorer per DoIT question format, the per-item chance value, and the `score` dispatch.

Every scorer returns a `Score`: the parsed answer as a string, whether it is correct, the item's chance accuracy,
how the answer was found (`method`) and which parse mode was used. Result rows store all of it, so a table can
be rescored without a model and a change of rule shows up as a new `SCORER_VERSION`.

Formats are the names of `hpc_instruct.data.abilities` (mc, true_false, cloze, multi_select, math, rank3).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import comb

from hpc_instruct.data.abilities import CLOZE, FORMATS, MATH, MC, MULTI_SELECT, RANK3, TRUE_FALSE
from hpc_instruct.evaluate.scoring.cloze import cloze_answer, parse_cloze
from hpc_instruct.evaluate.scoring.letters import (
    DOIT,
    check_mode,
    letter_set,
    parse_choice,
    parse_letter_set,
    reference_letter,
)
from hpc_instruct.evaluate.scoring.math_answer import extract_math_answer
from hpc_instruct.evaluate.scoring.math_equiv import is_equivalent
from hpc_instruct.evaluate.scoring.perplexity import rank_reference_first
from hpc_instruct.evaluate.scoring.true_false import parse_true_false, reference_truth

# Bump whenever a rule changes what any item scores; it goes into EvalTask identities and result rows.
SCORER_VERSION = "doit-scoring-1"


@dataclass(frozen=True)
class Score:
    """The outcome of scoring one item."""

    format: str
    parsed: str  # the answer as read from the reply ("B", "ABD", "T", "北京", "\\frac{1}{2}", "0" for rank3)
    correct: bool
    chance: float  # this item's chance accuracy, 0..1
    method: str  # how `parsed` was found: "one_char", "logits", "boxed", "last_line", ...
    mode: str  # "doit" (the paper's rules) or "lenient"


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
            raise ValueError(f"multi-select item with {n_correct} correct of {n_options} options")
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
    letter_logprobs: Mapping[str, float] | None = None,
    mode: str = DOIT,
) -> Score:
    """Single-answer multiple choice: one-character reply, else argmax of the option letters' log-probs."""
    ref = reference_letter(reference, n_options)
    parsed, method = parse_choice(response, n_options, letter_logprobs, mode)
    return Score(MC, parsed, parsed == ref, chance(MC, n_options=n_options), method, mode)


def score_true_false(response: str, reference: str, *, mode: str = DOIT) -> Score:
    """True/false from keyword sets ({正确,对,T,√,V} vs {错误,错,F,×,X})."""
    ref = reference_truth(reference)
    parsed, method = parse_true_false(response, mode)
    return Score(TRUE_FALSE, parsed, parsed == ref, chance(TRUE_FALSE), method, mode)


def score_cloze(response: str, reference: str, *, mode: str = DOIT) -> Score:
    """Single-blank cloze: exact match of the first CJK span of reply and reference."""
    ref, _ = cloze_answer(reference)
    if not ref:
        raise ValueError("cloze reference is empty")
    parsed, method = parse_cloze(response, mode)
    return Score(CLOZE, parsed, parsed == ref, chance(CLOZE), method, mode)


def score_multi_select(response: str, reference: str, *, n_options: int = 4, mode: str = DOIT) -> Score:
    """Multi-select: the set of letters on the reply's last line must equal the reference set exactly."""
    ref = letter_set(reference)
    if not ref:
        raise ValueError(f"multi-select reference holds no letter A-F: {reference!r}")
    parsed, method = parse_letter_set(response, mode)
    item_chance = chance(MULTI_SELECT, n_options=n_options, n_correct=len(ref))
    return Score(MULTI_SELECT, "".join(sorted(parsed)), parsed == ref, item_chance, method, mode)


def score_math(response: str, reference: str, *, mode: str = DOIT) -> Score:
    """Math: last boxed answer (else $...$, "=", last number) against the reference by MATH-style equivalence.

    `mode` has no effect on math (both modes use the same extraction) and is recorded for uniformity.
    """
    check_mode(mode)
    parsed, method = extract_math_answer(response)
    correct = bool(parsed) and is_equivalent(parsed, reference)
    return Score(MATH, parsed, correct, chance(MATH), method, mode)


def score_rank3(perplexities: Sequence[float], *, mode: str = DOIT) -> Score:
    """Ranking: correct iff candidate 0 (the reference) has the strictly lowest perplexity; ties are wrong."""
    check_mode(mode)
    correct, winner = rank_reference_first(perplexities)
    parsed = "" if winner is None else str(winner)
    method = "nan_perplexity" if winner is None else "lowest_perplexity"
    return Score(RANK3, parsed, correct, chance(RANK3, n_candidates=len(perplexities)), method, mode)


# The keyword arguments each format accepts through `score`, besides `mode`.
_EXTRAS: dict[str, tuple[str, ...]] = {
    MC: ("n_options", "letter_logprobs"),
    TRUE_FALSE: (),
    CLOZE: (),
    MULTI_SELECT: ("n_options",),
    MATH: (),
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
        mode: "doit" (default, the paper's rules) or "lenient".
        **extras: mc: `n_options`, `letter_logprobs` (letter -> log-prob at the answer position);
            multi_select: `n_options`; rank3: `perplexities` (reference first). Anything else is an error.
    """
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
    if response is None or reference is None:
        raise TypeError(f"format {fmt!r} needs a response and a reference (use '' for an empty reply)")
    if fmt == MC:
        return score_mc(response, reference, mode=mode, **extras)  # type: ignore[arg-type]
    if fmt == TRUE_FALSE:
        return score_true_false(response, reference, mode=mode)
    if fmt == CLOZE:
        return score_cloze(response, reference, mode=mode)
    if fmt == MULTI_SELECT:
        return score_multi_select(response, reference, mode=mode, **extras)  # type: ignore[arg-type]
    return score_math(response, reference, mode=mode)
