"""Scoring modes and the per-item error every scorer raises for an item it cannot judge.

- `doit` (default): the official DoIT code's verdicts (`evaluate/parse_utils.py`, `utils.py`,
  `math_equivalence.py`), its known defects included, with the paper's parse modes: `choice_parse_mode='both'`
  (a one-character reply is read as text, any other reply by the argmax of the A-D letter logits) and
  `tf_parse_mode='text'`. A multi-character reply stored without letter log-probs (a rescore of stored replies,
  a file from the official text mode) is read by the text rule instead of being marked wrong.
- `doit-text`: the official code with `choice_parse_mode='text'` (the first character of the reply that is one
  of A-D) and `tf_parse_mode='text'`. Needs no log-probs.
- `corrected`: what a careful human grader would accept, per format (see `letters`, `true_false`, `cloze`,
  `math_answer`, `math_equiv`); `symbolic` adds a sympy equivalence check for math expressions.

In every mode a malformed item (a reference the rules cannot read) or an item the official code would crash on
(a five-letter multi-select answer) raises `ItemError`; callers that score many items turn it into a per-item
error row and carry on.
"""

from __future__ import annotations

import difflib

DOIT = "doit"
DOIT_TEXT = "doit-text"
CORRECTED = "corrected"
MODES = (DOIT, DOIT_TEXT, CORRECTED)
OFFICIAL_MODES = (DOIT, DOIT_TEXT)
# Rows written before the corrected scorer existed recorded this name for its predecessor.
LEGACY_ALIASES = {"lenient": CORRECTED}


class ItemError(ValueError):
    """One item cannot be scored: a malformed reference or an item the official code crashes on."""


def check_mode(mode: str) -> None:
    """Raise a clear error for an unknown scoring mode (with the nearest valid one)."""
    if mode not in MODES:
        near = difflib.get_close_matches(mode, MODES, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"unknown scoring mode {mode!r}{hint}; valid modes: {', '.join(MODES)}")
