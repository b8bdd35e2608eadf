"""Eval sets: the items of one `<ability>/<split>` file as the evaluator asks them, with format and reference.

Any file in the DoIT record format works (`hpc_instruct.data.records`): the DoIT release's
`curated/{valid,test}/{ability}_{split}.json`, its out-of-domain `curated/test/ceval_*_test.json`, the generated
demo sets (`hpc_instruct.data.demo`), or a user's own `<ability>_<split>.json` under a DoIT-layout root (or
any path, with `load_eval_file`). Torch-free: the login node reads sets to plan and to rescore.

Each record becomes an `EvalItem`: the prompt (every turn before the final assistant turn), the reference, and
the question format, read per item because one ability mixes formats (history: MC or true/false; chinese: MC
or cloze):
- `question_format: 1` -> rank3 (candidates = `choices`, the reference first);
- an `answer` field -> math;
- otherwise the ability's registry formats (all formats for a user's own ability) are tried in this order:
  multi-select (an ability whose only letter format is multi-select, or a reference of several letters),
  MC (option lines `A. ...` in the last user turn and a one-letter reference), true/false (a reference that
  is a true/false keyword), cloze (anything else with text).
The number of options is the run of consecutive option lines `A.`, `B.`, ... of the last user turn (3 or 4 in
the dialogue-understanding set), so a 3-way item never predicts "D".

Few-shot (out-of-domain sets, `evaluation.few_shot`, 5 as in DoIT's C-Eval): a record that already holds
earlier turns carries its own shots (DoIT's `ceval_*_fshot` records and the demo sets hold five solved
examples) and is asked as it is. A one-question record gets `few_shot` solved examples prepended as earlier
user/assistant turns, taken from `curated/dev/<set>_dev.json` when that file exists (its first items, C-Eval's
dev split), else from the set's own first items other than the item itself. Taking shots from the set keeps
every item evaluated exactly once and the item count equal to the file's line count (what planning shards);
the item a shot came from is still asked with its own answer hidden, since an item is never its own shot.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from hpc_instruct.data.abilities import CLOZE, FORMATS, MATH, MC, MULTI_SELECT, RANK3, REGISTRY, TRUE_FALSE
from hpc_instruct.data.records import EVAL, USER, DataError, Issue, Message, Sample, parse_jsonl
from hpc_instruct.data.records import RANK3 as RANK_QUESTION
from hpc_instruct.evaluate.scoring.cloze import cloze_answer
from hpc_instruct.evaluate.scoring.letters import letter_set
from hpc_instruct.evaluate.scoring.true_false import reference_truth

DEV_SPLIT = "dev"  # curated/dev/<set>_dev.json: optional few-shot examples of an out-of-domain set
OPTION_LINE = re.compile(r"^\s*[(（]?([A-J])\s*[.．、:：)）]", re.MULTILINE)
LETTER_FORMATS = (MC, MULTI_SELECT)


@dataclass(frozen=True)
class EvalItem:
    """One question as the model is asked it, and what scoring needs to judge the answer."""

    index: int  # position (0-based) in the set file: item ranges of shards index this
    uid: str  # content hash of the record (stable across copies and re-orderings)
    ability: str
    split: str
    format: str  # one of hpc_instruct.data.abilities.FORMATS
    question_format: int  # DoIT: 0 generate then parse, 1 rank candidates
    prompt: tuple[Message, ...]  # the dialogue up to the model's turn (shots included)
    reference: str  # MC: the letter; multi-select: the reference line; TF/cloze: text; math: `answer`; rank3: choices[0]
    candidates: tuple[str, ...] = ()  # rank3: the reference first
    n_options: int = 0  # letter formats: how many option letters the question offers
    shots: int = 0  # solved examples prepended by the evaluator (0 when the record carries its own)

    @property
    def option_letters(self) -> str:
        return "ABCDEFGHIJ"[: self.n_options]


@dataclass(frozen=True)
class EvalSet:
    """A whole eval set file, read and classified; `items[i].index == i`."""

    name: str  # "<ability>/<split>"
    ability: str
    split: str
    path: Path
    sha256: str
    items: tuple[EvalItem, ...]
    few_shot_source: str  # "" (zero-shot), "embedded", "dev:<file>" or "own first items"

    def __len__(self) -> int:
        return len(self.items)

    def range(self, start: int, stop: int) -> tuple[EvalItem, ...]:
        """The items of a shard; raises when the range does not fit (the set changed since planning)."""
        if not 0 <= start <= stop <= len(self.items):
            raise DataError(
                [
                    Issue(
                        str(self.path),
                        0,
                        "-",
                        f"shard range {start}..{stop} does not fit the "
                        f"{len(self.items)} items of {self.name}; the file changed since the study "
                        "was planned (re-run hpci plan)",
                    )
                ]
            )
        return self.items[start:stop]


def eval_set_file(root: str | Path, ability: str, split: str) -> Path:
    """`<root>/curated/<split>/<ability>_<split>.json`, the DoIT layout of valid/test and C-Eval files."""
    return Path(root) / "curated" / split / f"{ability}_{split}.json"


def load_eval_set(root: str | Path, ability: str, split: str, *, few_shot: int = 0) -> EvalSet:
    """Read `<ability>/<split>` from a DoIT-layout root; `few_shot` applies to one-question records only."""
    path = eval_set_file(root, ability, split)
    dev = Path(root) / "curated" / DEV_SPLIT / f"{ability}_{DEV_SPLIT}.json"
    return load_eval_file(path, ability, split, few_shot=few_shot, dev_file=dev if dev.is_file() else None)


def load_eval_file(
    path: str | Path, ability: str, split: str, *, few_shot: int = 0, dev_file: str | Path | None = None
) -> EvalSet:
    """Read any file in the DoIT record format as the eval set `<ability>/<split>` (see the module docstring).

    Raises:
        DataError: every unreadable record, and every item whose format or reference cannot be told.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError([Issue(str(path), 0, "-", f"eval set {ability}/{split} not found")])
    data = path.read_bytes()
    samples = _parse(data, path, ability, split)
    shots_pool, source = _shot_pool(samples, dev_file, ability, few_shot)
    items: list[EvalItem] = []
    issues: list[Issue] = []
    for i, s in enumerate(samples):
        try:
            fmt, reference, n_options = classify(s)
        except ValueError as e:
            issues.append(Issue(s.source, s.line, "messages", str(e)))
            continue
        prompt, shots = s.prompt, 0
        if shots_pool is not None and _is_single_question(s):
            examples = [e for e in shots_pool if e.uid != s.uid][:few_shot]
            prompt = tuple(m for e in examples for m in e.messages[-2:]) + s.prompt
            shots = len(examples)
        candidates = tuple(s.choices) if fmt == RANK3 and s.choices else ()
        items.append(
            EvalItem(
                i,
                s.uid,
                ability,
                split,
                fmt,
                s.question_format,
                prompt,
                reference,
                candidates,
                n_options,
                shots,
            )
        )
    if issues:
        raise DataError(issues, context=f"eval set {ability}/{split}")
    return EvalSet(
        f"{ability}/{split}", ability, split, path, hashlib.sha256(data).hexdigest(), tuple(items), source
    )


def _parse(data: bytes, path: Path, ability: str, split: str) -> list[Sample]:
    samples, issues = parse_jsonl(data, path=str(path), split=split, purpose=EVAL, expected_ability=ability)
    if issues:
        raise DataError(issues, context=f"eval set {ability}/{split}")
    return samples


def _is_single_question(sample: Sample) -> bool:
    return sum(1 for m in sample.prompt if m.role == USER) == 1


def _shot_pool(
    samples: list[Sample], dev_file: str | Path | None, ability: str, few_shot: int
) -> tuple[list[Sample] | None, str]:
    """Where shots come from: None when no record needs them (zero-shot, or every record has its own)."""
    if few_shot <= 0 or not samples:
        return None, ""
    if not any(_is_single_question(s) for s in samples):
        return None, "embedded"
    usable = [s for s in samples if s.ends_with_reference and _is_single_question(s)]
    if dev_file is not None:
        dev = [
            s
            for s in _parse(Path(dev_file).read_bytes(), Path(dev_file), ability, DEV_SPLIT)
            if s.ends_with_reference
        ]
        return dev[: few_shot + 1], f"dev:{Path(dev_file).name}"
    return usable[: few_shot + 1], "own first items"


def option_count(text: str) -> int:
    """Consecutive option lines `A.`, `B.`, ... in a question (0 when it has none)."""
    found = {m.group(1) for m in OPTION_LINE.finditer(text)}
    n = 0
    while n < 10 and "ABCDEFGHIJ"[n] in found:
        n += 1
    return n


def classify(sample: Sample) -> tuple[str, str, int]:
    """(format, reference, n_options) of one record; raises ValueError with the reason when none fits."""
    if sample.question_format == RANK_QUESTION:
        if not sample.choices:
            raise ValueError("a ranking item (question_format 1) needs its candidates in 'choices'")
        return RANK3, sample.choices[0], 0
    allowed = REGISTRY[sample.ability].formats if sample.ability in REGISTRY else FORMATS
    if sample.answer is not None and MATH in allowed:
        return MATH, sample.answer, 0
    if not sample.ends_with_reference:
        raise ValueError("the item has no reference: end it with the assistant's answer (or give 'answer')")
    reference = sample.messages[-1].content.strip()
    question = next(m.content for m in reversed(sample.prompt) if m.role == USER)
    n_options = option_count(question)
    letters = letter_set(reference)
    letter_formats = [f for f in allowed if f in LETTER_FORMATS]
    if letter_formats == [MULTI_SELECT] or (MULTI_SELECT in allowed and len(letters) > 1 and n_options >= 2):
        if not letters:
            raise ValueError(f"multi-select reference holds no letter A-F: {reference[:40]!r}")
        highest = max(ord(c) - ord("A") + 1 for c in letters)
        return MULTI_SELECT, reference, n_options if n_options >= highest else max(4, highest)
    single = _single_letter(reference)
    if MC in allowed and n_options >= 2 and single and single in "ABCDEFGHIJ"[:n_options]:
        return MC, single, n_options
    if TRUE_FALSE in allowed:
        try:
            reference_truth(reference)
            return TRUE_FALSE, reference, 0
        except ValueError:
            pass
    if CLOZE in allowed and cloze_answer(reference)[0]:
        return CLOZE, reference, 0
    if MC in allowed and n_options >= 2 and single:
        raise ValueError(f"MC reference {single!r} is not one of the item's {n_options} options "
                         f"A-{'ABCDEFGHIJ'[n_options - 1]}")
    raise ValueError(
        f"cannot tell the question format of this {sample.ability} item (reference "
        f"{reference[:40]!r}, {n_options} option lines; allowed formats: {', '.join(allowed)})"
    )


def _single_letter(reference: str) -> str:
    """The letter of an MC reference: "B", "B.", "（B）" or "答案：B" -> "B"; "" when it is not one letter."""
    folded = reference.translate({0xFF21 + i: 0x41 + i for i in range(26)}).upper()
    found = re.findall(r"(?<![A-Z])([A-J])(?![A-Z])", folded)
    return found[0] if len(found) == 1 else ""
