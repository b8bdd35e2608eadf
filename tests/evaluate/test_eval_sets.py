"""Eval sets: per-item formats and references of the demo sets, few-shot prompts, any file in the DoIT format."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from eval_builders import english_sets, write_set

from hpc_instruct.data.abilities import ABILITY_KEYS, REGISTRY
from hpc_instruct.data.records import DataError, dumps_record
from hpc_instruct.evaluate.sets import classify, load_eval_file, load_eval_set, option_count


def test_demo_sets_formats_follow_the_registry(demo_root):
    for ability in ABILITY_KEYS:
        for split in ("valid", "test"):
            s = load_eval_set(demo_root, ability, split)
            assert len(s) == 100 and [it.index for it in s.items] == list(range(100))
            formats = Counter(it.format for it in s.items)
            assert set(formats) <= set(REGISTRY[ability].formats), (ability, formats)
            assert len(set(formats)) == len(REGISTRY[ability].formats), (ability, formats)  # mixed sets mix
            for it in s.items:
                assert it.prompt[-1].role == "user" and it.shots == 0
                if it.format == "mc":
                    assert it.reference in it.option_letters and it.n_options in (3, 4)
                if it.format == "rank3":
                    assert len(it.candidates) == 3 and it.candidates[0] == it.reference


def test_understanding_has_three_and_four_way_questions(demo_root):
    counts = Counter(it.n_options for it in load_eval_set(demo_root, "understanding", "valid").items)
    assert set(counts) == {3, 4}


def test_option_count():
    assert option_count("问题\nA. 甲\nB. 乙\nC. 丙") == 3
    assert option_count("Q\n(A) x\n(B) y\nD. z") == 2  # a gap ends the run
    assert option_count("no options here") == 0


def test_ceval_records_carry_their_own_shots(demo_root):
    s = load_eval_set(demo_root, "ceval_physician", "test", few_shot=5)
    assert s.few_shot_source == "embedded" and len(s) == 40
    assert all(len(it.prompt) == 11 and it.shots == 0 for it in s.items)  # 5 solved pairs + the question


def _zero_shot_copy(demo_root, tmp_path, name="ceval_demo"):
    """The demo C-Eval set with its embedded shots removed (one question per record, like a raw C-Eval file)."""
    records = []
    for line in (demo_root / "curated/test/ceval_physician_test.json").read_text().splitlines():
        rec = json.loads(line)
        rec["messages"] = rec["messages"][-2:]
        rec["type"] = name
        records.append(rec)
    return write_set(tmp_path, name, "test", records), records


def test_zero_shot_file_gets_shots_from_its_own_first_items(demo_root, tmp_path):
    _, records = _zero_shot_copy(demo_root, tmp_path)
    s = load_eval_set(tmp_path, "ceval_demo", "test", few_shot=5)
    assert s.few_shot_source == "own first items" and len(s) == len(records)
    first = [r["messages"][0]["content"] for r in records[:6]]
    for it in s.items:
        assert it.shots == 5 and len(it.prompt) == 11
        asked = [m.content for m in it.prompt[:-1:2]]
        assert it.prompt[-1].content not in asked  # an item is never its own shot
        assert asked == [q for q in first if q != it.prompt[-1].content][:5]
    assert load_eval_set(tmp_path, "ceval_demo", "test", few_shot=0).items[0].shots == 0


def test_dev_file_supplies_the_shots(demo_root, tmp_path):
    _, records = _zero_shot_copy(demo_root, tmp_path)
    dev = tmp_path / "curated/dev/ceval_demo_dev.json"
    dev.parent.mkdir(parents=True)
    dev.write_text("".join(dumps_record(r) + "\n" for r in records[-5:]))
    s = load_eval_set(tmp_path, "ceval_demo", "test", few_shot=3)
    assert s.few_shot_source == "dev:ceval_demo_dev.json"
    assert [m.content for m in s.items[0].prompt[:-1:2]] == [
        r["messages"][0]["content"] for r in records[-5:-2]
    ]


def test_a_users_own_english_sets(tmp_path):
    for name, records in english_sets().items():
        write_set(tmp_path, name, "test", records)
    facts = load_eval_set(tmp_path, "english_facts", "test")
    arithmetic = load_eval_file(
        tmp_path / "curated/test/english_arithmetic_test.json", "english_arithmetic", "test"
    )
    assert {it.format for it in facts.items} == {"rank3"} and {it.format for it in arithmetic.items} == {
        "math"
    }
    assert arithmetic.items[0].reference == english_sets()["english_arithmetic"][0]["answer"]


def test_unclassifiable_items_are_reported_with_file_and_line(tmp_path):
    bad = {
        "messages": [{"role": "user", "content": "Q\nA. x\nB. y"}, {"role": "assistant", "content": "maybe"}],
        "idx": 0,
        "type": "biology",
        "question_format": 0,
    }
    path = write_set(tmp_path, "biology", "valid", [bad])
    with pytest.raises(DataError, match=r"biology_valid.json:1: messages: cannot tell the question format"):
        load_eval_file(path, "biology", "valid")


def test_shard_range_must_fit(demo_root):
    s = load_eval_set(demo_root, "math", "valid")
    assert len(s.range(90, 100)) == 10
    with pytest.raises(DataError, match="changed since the study was planned"):
        s.range(90, 101)


def test_classify_multi_select_and_single_letter_references(demo_root):
    ethics = load_eval_set(demo_root, "ethics", "valid").items
    assert all(it.format == "multi_select" and it.n_options == 4 for it in ethics)
    history = [it for it in load_eval_set(demo_root, "history", "valid").items if it.format == "true_false"]
    assert history and all(it.reference in ("正确", "错误") for it in history)
    assert classify  # public for users who classify their own records
