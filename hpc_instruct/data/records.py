"""One instruction-tuning record: parsing and validating the DoIT JSON-lines format into frozen `Sample`s.

A DoIT file holds one JSON object per line:
`{"messages": [{"role": "user"|"assistant", "content": str}, ...], "idx": int, "type": str,
"question_format": 0|1, "choices": [3 str] (format 1), "answer": str (math)}`.

Role rules (what can be trained or evaluated):
- training records (`full`, `1000`, synthetic) alternate user/assistant, start with a user turn and end with an
  assistant turn; every assistant turn is a target;
- evaluation records (`valid`, `test`, `ceval_*`) alternate and start with a user turn. As in the DoIT release
  they normally end with the reference assistant turn, which the evaluator drops to form the prompt. An item
  that ends with a user turn (prompt only) is accepted when it carries its reference elsewhere: `choices`
  (question_format 1) or `answer`.

Validation never stops at the first problem: every bad record of every file is collected as an `Issue`
(file:line, field, what is wrong) and raised together in one `DataError`.

Torch-free and pyarrow-free on purpose: the login node reads and checks data while planning.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, NamedTuple

from hpc_instruct.errors import UserError

USER, ASSISTANT = "user", "assistant"
ROLES = (USER, ASSISTANT)
GENERATE, RANK3 = 0, 1  # question_format: generate then parse / rank three candidates by perplexity
TRAIN, EVAL = "train", "eval"  # what a file is for; decides the role rules above
MAX_REPORTED_ISSUES = 50  # a DataError message lists this many; `.issues` always holds them all


class Message(NamedTuple):
    """One chat turn. A NamedTuple so it unpacks as a `(role, content)` pair and still reads as `m.role`."""

    role: str
    content: str


@dataclass(frozen=True)
class Issue:
    """One problem in one record: where it is, which field, and what is wrong with it."""

    path: str
    line: int  # 1-based; 0 when the problem is the whole file
    field: str  # dotted path into the record, e.g. "messages[2].content"; "-" for the line itself
    problem: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.field}: {self.problem}"


class DataError(UserError):
    """Every problem found in a data set, reported together, one `file:line: field: problem` line each."""

    def __init__(self, issues: list[Issue] | tuple[Issue, ...], context: str = "data"):
        self.issues = tuple(issues)
        n = len(self.issues)
        lines = [f"  {i}" for i in self.issues[:MAX_REPORTED_ISSUES]]
        if n > MAX_REPORTED_ISSUES:
            lines.append(f"  ... and {n - MAX_REPORTED_ISSUES} more (DataError.issues holds them all)")
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in {context}:\n" + "\n".join(lines))


@dataclass(frozen=True)
class Sample:
    """One validated record. `uid` is derived from its content only, so it survives re-ordering and copying.

    `ability` is the registry key (`ceval_*_fshot` types are shortened to `ceval_*`); `split` is where it was
    read from ("full", "1000", "valid", "test", "synthetic", or "mixture"); `source`/`line` point at the record.
    """

    ability: str
    idx: int
    messages: tuple[Message, ...]
    question_format: int
    choices: tuple[str, ...] | None
    answer: str | None
    split: str
    source: str
    line: int
    uid: str

    @property
    def ends_with_reference(self) -> bool:
        return self.messages[-1].role == ASSISTANT

    @property
    def prompt(self) -> tuple[Message, ...]:
        """The dialogue a model answers: everything before the final assistant turn."""
        return self.messages[:-1] if self.ends_with_reference else self.messages

    @property
    def reference(self) -> str | None:
        """The gold response: the final assistant turn, else the first choice, else the answer."""
        if self.ends_with_reference:
            return self.messages[-1].content
        if self.choices:
            return self.choices[0]
        return self.answer

    @property
    def prompt_key(self) -> str:
        """The normalised user turns of the prompt: what contamination checks compare."""
        return "\n".join(normalise_text(m.content) for m in self.prompt if m.role == USER)

    def to_record(self) -> dict[str, Any]:
        """The DoIT JSON object of this sample (what a file line holds), plus its `uid`."""
        record: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "idx": self.idx,
            "type": self.ability,
            "question_format": self.question_format,
        }
        if self.choices is not None:
            record["choices"] = list(self.choices)
        if self.answer is not None:
            record["answer"] = self.answer
        record["uid"] = self.uid
        return record


_SPACE = re.compile(r"\s+")
# NFKC's own mapping of the full-width ASCII forms (！ to ～) and the ideographic space. Chinese text is full of
# them (，？：（）), and each one sends `unicodedata.normalize` down its slow path; mapped first, most prompts
# pass its quick check untouched. The result is the same: NFKC decomposes these characters to exactly these.
# (A regex substitution: 5x faster than str.translate here, which looks up every character.)
_FULL_WIDTH = {chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)} | {"\u3000": " "}
_FULL_WIDTH_CHAR = re.compile("[\uff01-\uff5e\u3000]")


def normalise_text(text: str) -> str:
    """Unicode NFKC, case-folded, all whitespace removed: two prompts that differ only in layout compare equal."""
    text = _FULL_WIDTH_CHAR.sub(lambda m: _FULL_WIDTH[m.group()], text)
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    return _SPACE.sub("", text.casefold())


def sample_uid(ability: str, messages: tuple[Message, ...], question_format: int,
               choices: tuple[str, ...] | None, answer: str | None) -> str:
    """A 16-hex-digit content hash. idx, file and line are left out: they are where a sample is, not what."""
    canonical = json.dumps([ability, [list(m) for m in messages], question_format, choices, answer],
                           ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def canonical_ability(type_: str) -> str:
    """Registry key of a record type: the DoIT C-Eval types carry a `_fshot` suffix the registry drops."""
    return type_.removesuffix("_fshot") if type_.startswith("ceval_") else type_


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _undecodable(text: str) -> bool:
    """True for text with lone surrogates (a JSON `\\ud800` escape): it cannot be written back as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_record(obj: Any, *, path: str, line: int, split: str, purpose: str,
                 expected_ability: str | None) -> Sample | list[Issue]:
    """Validate one decoded JSON value. Returns the `Sample`, or every `Issue` found in it.

    Args:
        purpose: TRAIN or EVAL; picks the role rules in the module docstring.
        expected_ability: the ability the file name promises (`type` must match), or None (synthetic pool).
    """
    issues: list[Issue] = []

    def bad(field: str, problem: str) -> None:
        issues.append(Issue(path, line, field, problem))

    if not isinstance(obj, dict):
        bad("-", f"expected a JSON object, got {type(obj).__name__}")
        return issues

    messages = _parse_messages(obj, bad)

    idx = obj.get("idx")
    if "idx" not in obj:
        bad("idx", "missing")
    elif not _is_int(idx):
        bad("idx", f"expected an integer, got {type(idx).__name__} {idx!r}")

    type_ = obj.get("type")
    ability = ""
    if "type" not in obj:
        bad("type", "missing")
    elif not isinstance(type_, str) or not type_.strip():
        bad("type", f"expected a non-empty string (the ability key), got {type_!r}")
    else:
        ability = canonical_ability(type_)
        if expected_ability is not None and ability != expected_ability:
            bad("type", f"{type_!r} does not match the file's ability {expected_ability!r}")

    fmt = obj.get("question_format")
    if "question_format" not in obj:
        bad("question_format", "missing")
    elif not _is_int(fmt) or fmt not in (GENERATE, RANK3):
        bad("question_format", f"expected 0 (generate) or 1 (rank 3 candidates), got {fmt!r}")
        fmt = None

    choices = _parse_choices(obj, fmt, bad)
    answer = _parse_answer(obj, ability, bad)

    if messages is not None:
        _check_roles(messages, purpose, has_reference=choices is not None or answer is not None, bad=bad)
    if issues:
        return issues
    assert messages is not None and isinstance(fmt, int) and isinstance(idx, int)
    uid = sample_uid(ability, messages, fmt, choices, answer)
    return Sample(ability, idx, messages, fmt, choices, answer, split, path, line, uid)


def _parse_messages(obj: dict, bad) -> tuple[Message, ...] | None:
    if "messages" not in obj:
        bad("messages", "missing")
        return None
    raw = obj["messages"]
    if not isinstance(raw, list) or not raw:
        bad("messages", f"expected a non-empty list of {{role, content}} objects, got {raw!r:.60}")
        return None
    out: list[Message] = []
    ok = True
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            bad(where, f"expected an object with role and content, got {type(m).__name__}")
            ok = False
            continue
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            bad(f"{where}.role", "missing" if "role" not in m else f"expected 'user' or 'assistant', got {role!r}")
            ok = False
        if "content" not in m:
            bad(f"{where}.content", "missing")
            ok = False
        elif not isinstance(content, str):
            bad(f"{where}.content", f"expected a string, got {type(content).__name__}")
            ok = False
        elif not content.strip():
            bad(f"{where}.content", "empty text")
            ok = False
        elif _undecodable(content):
            bad(f"{where}.content", "text is not valid Unicode (lone surrogate escape)")
            ok = False
        if ok:
            out.append(Message(role, content))
    return tuple(out) if ok else None


def _check_roles(messages: tuple[Message, ...], purpose: str, *, has_reference: bool, bad) -> None:
    roles = [m.role for m in messages]
    order = "/".join(r[0] for r in roles)  # e.g. "u/a/u/a", short enough to read in one line
    if roles[0] != USER:
        bad("messages", f"must start with a user turn (roles: {order})")
        return
    for i in range(1, len(roles)):
        if roles[i] == roles[i - 1]:
            bad(f"messages[{i}].role", f"two {roles[i]} turns in a row; turns must alternate (roles: {order})")
            return
    if roles[-1] == USER:
        if purpose == TRAIN:
            bad("messages", f"a training record must end with an assistant turn to learn from (roles: {order})")
        elif not has_reference:
            bad("messages", "an eval item that ends with a user turn needs its reference in 'choices' or "
                            f"'answer' (roles: {order})")


def _parse_choices(obj: dict, fmt: int | None, bad) -> tuple[str, ...] | None:
    raw = obj.get("choices")
    if "choices" not in obj or raw is None:
        if fmt == RANK3:
            bad("choices", "missing: question_format 1 needs exactly 3 candidates, the reference first")
        return None
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        bad("choices", f"expected a list of strings, got {raw!r:.60}")
        return None
    if fmt == RANK3 and len(raw) != 3:
        bad("choices", f"question_format 1 needs exactly 3 candidates (reference first), got {len(raw)}")
        return None
    if any(not c.strip() for c in raw):
        bad("choices", "a candidate is empty text")
        return None
    if any(_undecodable(c) for c in raw):
        bad("choices", "a candidate is not valid Unicode (lone surrogate escape)")
        return None
    if fmt == RANK3 and len(set(raw)) != len(raw):
        bad("choices", "candidates repeat; ranking cannot tell the reference from a copy of it")
        return None
    return tuple(raw)


def _parse_answer(obj: dict, ability: str, bad) -> str | None:
    raw = obj.get("answer")
    if "answer" not in obj or raw is None:
        if ability == "math":
            bad("answer", "missing: math records carry the final answer the scorer compares with")
        return None
    if _is_int(raw) or isinstance(raw, float):
        return str(raw)  # a bare number in the file; the scorer compares text
    if not isinstance(raw, str) or not raw.strip():
        bad("answer", f"expected a non-empty string, got {raw!r:.60}")
        return None
    if _undecodable(raw):
        bad("answer", "not valid Unicode (lone surrogate escape)")
        return None
    return raw


def parse_jsonl(data: bytes, *, path: str, split: str, purpose: str,
                expected_ability: str | None) -> tuple[list[Sample], list[Issue]]:
    """Parse the bytes of one JSON-lines file. Blank lines are skipped; a UTF-8 BOM is tolerated."""
    samples: list[Sample] = []
    issues: list[Issue] = []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    looks_like_array = data.lstrip().startswith(b"[")
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.reason == "unexpected end of data":  # cut inside a multi-byte character: a truncated line
                problem = f"truncated line: it ends inside a UTF-8 character (byte {e.start}), so it is not JSON"
            else:
                problem = f"not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 4]!r})"
            issues.append(Issue(path, number, "-", problem))
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            hint = "; the file looks like one JSON array, expected one object per line" if looks_like_array else ""
            issues.append(Issue(path, number, "-", f"invalid JSON: {e.msg} at column {e.colno}{hint}"))
            continue
        if isinstance(obj, list) and looks_like_array:
            issues.append(Issue(path, number, "-", "the file looks like one JSON array; expected one JSON object "
                                                   "per line (JSON lines)"))
            continue
        result = parse_record(obj, path=path, line=number, split=split, purpose=purpose,
                              expected_ability=expected_ability)
        if isinstance(result, Sample):
            samples.append(result)
        else:
            issues.extend(result)
    if not samples and not issues:
        issues.append(Issue(path, 0, "-", "file holds no records"))
    return samples, issues


def dumps_record(record: dict[str, Any]) -> str:
    """One JSON line as the DoIT files write it (UTF-8 text, not \\u escapes), without the newline."""
    return json.dumps(record, ensure_ascii=False, separators=(", ", ": "))
