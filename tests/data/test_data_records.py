"""Record validation: every kind of bad record gets its own clear issue with file:line and field."""

from __future__ import annotations

import dataclasses
import json

import pytest
from data_builders import good_record, line

from hpc_instruct.data.doit_reader import read_doit
from hpc_instruct.data.records import EVAL, TRAIN, DataError, Message, Sample, parse_record

POOL = "curated/full/biology_full.json"


def only_issue(root):
    with pytest.raises(DataError) as info:
        read_doit(root)
    assert len(info.value.issues) == 1, info.value
    return info.value.issues[0], str(info.value)


def u(text):
    return {"role": "user", "content": text}


def a(text):
    return {"role": "assistant", "content": text}


BAD_RECORDS = [
    # (case, file, bad line (JSON text or bytes), field, words the problem must contain)
    ("invalid JSON", POOL, '{"messages": [', "-", "invalid JSON"),
    ("not UTF-8", POOL, b'{"messages": "\xff\xfe"}', "-", "not valid UTF-8"),
    ("not an object", POOL, "[1, 2]", "-", "expected a JSON object"),
    ("missing messages", POOL, line(good_record(messages=...)), "messages", "missing"),
    ("messages not a list", POOL, line(good_record(messages="hi")), "messages", "non-empty list"),
    ("messages empty", POOL, line(good_record(messages=[])), "messages", "non-empty list"),
    ("missing idx", POOL, line(good_record(idx=...)), "idx", "missing"),
    ("idx wrong type", POOL, line(good_record(idx="7")), "idx", "expected an integer"),
    ("idx is a bool", POOL, line(good_record(idx=True)), "idx", "expected an integer"),
    ("missing type", POOL, line(good_record(type=...)), "type", "missing"),
    ("type of another ability", POOL, line(good_record(type="history")), "type", "does not match"),
    ("missing question_format", POOL, line(good_record(question_format=...)), "question_format", "missing"),
    ("bad question_format", POOL, line(good_record(question_format=2)), "question_format", "expected 0"),
    (
        "content not text",
        POOL,
        line(good_record(messages=[u("q"), {"role": "assistant", "content": 5}])),
        "messages[1].content",
        "expected a string",
    ),
    (
        "empty content",
        POOL,
        line(good_record(messages=[u("q"), a("  \n")])),
        "messages[1].content",
        "empty text",
    ),
    (
        "missing content",
        POOL,
        line(good_record(messages=[u("q"), {"role": "assistant"}])),
        "messages[1].content",
        "missing",
    ),
    (
        "unknown role",
        POOL,
        line(good_record(messages=[{"role": "system", "content": "x"}, a("A")])),
        "messages[0].role",
        "expected 'user' or 'assistant'",
    ),
    (
        "starts with assistant",
        POOL,
        line(good_record(messages=[a("A"), u("q")])),
        "messages",
        "must start with a user turn",
    ),
    (
        "turns do not alternate",
        POOL,
        line(good_record(messages=[u("q"), u("q2"), a("A")])),
        "messages[1].role",
        "must alternate",
    ),
    (
        "training ends with user",
        POOL,
        line(good_record(messages=[u("q"), a("A"), u("q2")])),
        "messages",
        "must end with an assistant turn",
    ),
    (
        "eval item without reference",
        "curated/test/biology_test.json",
        line(good_record(messages=[u("q")])),
        "messages",
        "needs its reference",
    ),
    (
        "format 1 without choices",
        "curated/full/code_full.json",
        line(good_record("code", choices=...)),
        "choices",
        "exactly 3 candidates",
    ),
    (
        "format 1 with two choices",
        "curated/full/code_full.json",
        line(good_record("code", choices=["a", "b"])),
        "choices",
        "exactly 3 candidates (reference first), got 2",
    ),
    (
        "choices not strings",
        "curated/full/code_full.json",
        line(good_record("code", choices=["a", 2, "c"])),
        "choices",
        "list of strings",
    ),
    (
        "repeated choices",
        "curated/full/code_full.json",
        line(good_record("code", choices=["a", "a", "c"])),
        "choices",
        "candidates repeat",
    ),
    (
        "math without answer",
        "curated/full/math_full.json",
        line(good_record("math", answer=...)),
        "answer",
        "math records carry the final answer",
    ),
    (
        "empty answer",
        "curated/full/math_full.json",
        line(good_record("math", answer=" ")),
        "answer",
        "non-empty string",
    ),
    (
        "lone surrogate",
        POOL,
        '{"messages": [{"role": "user", "content": "q\\ud800"}, {"role": "assistant", '
        '"content": "A"}], "idx": 0, "type": "biology", "question_format": 0}',
        "messages[0].content",
        "not valid Unicode",
    ),
]


@pytest.mark.parametrize("case,path,bad,field,words", BAD_RECORDS, ids=[c[0] for c in BAD_RECORDS])
def test_each_bad_record_is_named_by_file_line_and_field(layout, case, path, bad, field, words):
    ability = path.rsplit("/", 1)[1].split("_")[0]
    good = line(good_record(ability)).encode()
    bad_bytes = bad if isinstance(bad, bytes) else bad.encode()
    files = {path: good + b"\n" + bad_bytes + b"\n"}
    if not path.startswith("curated/full/"):
        files[POOL] = [line(good_record())]
    issue, message = only_issue(layout(files))
    assert (issue.path, issue.line, issue.field) == (path, 2, field)
    assert words in issue.problem
    assert f"{path}:2: {field}: " in message  # what the researcher reads


def test_every_problem_of_every_file_is_reported_together(layout):
    root = layout(
        {
            POOL: [line(good_record(idx=...)), line(good_record(idx=1)), "{oops", line(good_record(type=7))],
            "curated/full/math_full.json": [line(good_record("math", answer=...))],
            "curated/full/README.json": [line(good_record())],
        }
    )
    with pytest.raises(DataError) as info:
        read_doit(root)
    where = {(i.path, i.line, i.field) for i in info.value.issues}
    assert where == {
        (POOL, 1, "idx"),
        (POOL, 3, "-"),
        (POOL, 4, "type"),
        ("curated/full/math_full.json", 1, "answer"),
        ("curated/full/README.json", 0, "-"),
    }
    assert str(info.value).startswith("5 problems in data under")


def test_several_problems_in_one_record_are_all_listed(layout):
    rec = good_record(idx="x", question_format=9, messages=[a("A")])
    with pytest.raises(DataError) as info:
        read_doit(layout({POOL: [line(rec)]}))
    assert {i.field for i in info.value.issues} == {"idx", "question_format", "messages"}


def test_empty_file_and_missing_folder_and_json_array(layout, tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        read_doit(tmp_path / "nowhere")
    issue, _ = only_issue(layout({POOL: b"\n\n"}))
    assert issue.line == 0 and "holds no records" in issue.problem
    arr = json.dumps([good_record()]).encode()
    issue, _ = only_issue(layout({POOL: arr}))
    assert "looks like one JSON array" in issue.problem


def test_no_pool_files_is_reported(layout):
    issue, _ = only_issue(layout({"curated/test/biology_test.json": [line(good_record())]}))
    assert "no curated pool files found" in issue.problem


def test_eval_items_may_end_with_a_user_turn_when_they_carry_the_reference():
    ends_with_user = {"messages": [u("1+2=?")], "idx": 0, "type": "math", "question_format": 0, "answer": "3"}
    s = parse_record(ends_with_user, path="t", line=1, split="test", purpose=EVAL, expected_ability="math")
    assert isinstance(s, Sample) and s.prompt == (Message("user", "1+2=?"),) and s.reference == "3"
    again = parse_record(
        ends_with_user, path="t", line=1, split="full", purpose=TRAIN, expected_ability="math"
    )
    assert isinstance(again, list) and "end with an assistant turn" in again[0].problem


def test_numeric_answer_is_kept_as_text_and_extra_fields_are_ignored():
    rec = good_record("math", answer=3, extra={"anything": 1})
    s = parse_record(rec, path="p", line=1, split="full", purpose=TRAIN, expected_ability="math")
    assert isinstance(s, Sample) and s.answer == "3"


def test_sample_is_frozen_and_messages_are_pairs_with_names():
    s = parse_record(
        good_record("code"), path="p", line=1, split="full", purpose=TRAIN, expected_ability="code"
    )
    assert isinstance(s, Sample)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.idx = 3  # type: ignore[misc]
    (role, content), (role2, _) = s.messages
    assert (role, role2) == ("user", "assistant") and s.messages[0].content == content
    assert s.choices == ("A", "B", "C") and isinstance(s.messages, tuple)
    assert s.reference == "A" and s.prompt == s.messages[:1]


def test_uid_depends_on_content_only():
    def parse(rec, **kw):
        return parse_record(
            rec,
            path=kw.get("path", "p"),
            line=kw.get("line", 1),
            split="full",
            purpose=TRAIN,
            expected_ability="biology",
        )

    base = parse(good_record(idx=1))
    assert parse(good_record(idx=99), path="elsewhere", line=40).uid == base.uid
    assert parse(good_record(idx=1, messages=[u("other"), a("A")])).uid != base.uid
    assert len(base.uid) == 16 and int(base.uid, 16) >= 0


def test_record_round_trips_through_to_record():
    rec = good_record("role_play", messages=[u("扮演小猫"), a("好的，喵！"), u("你好"), a("A")])
    s = parse_record(rec, path="p", line=1, split="full", purpose=TRAIN, expected_ability="role_play")
    back = parse_record(
        s.to_record(), path="q", line=5, split="full", purpose=TRAIN, expected_ability="role_play"
    )
    assert back.uid == s.uid and back.messages == s.messages and s.to_record()["uid"] == s.uid


def test_utf8_bom_and_crlf_are_tolerated(layout):
    body = ("\r\n".join(line(good_record(idx=i)) for i in range(3)) + "\r\n").encode()
    data = read_doit(layout({POOL: b"\xef\xbb\xbf" + body}))
    assert [s.idx for s in data.pool("biology")] == [0, 1, 2]
