"""The generated study: deterministic by seed, DoIT formats per ability, answers a DoIT scorer can parse.

Covers: hpc_instruct.data.demo.study, hpc_instruct.data.demo.corpus, hpc_instruct.data.demo.dialogue,
hpc_instruct.data.demo.exams, hpc_instruct.data.demo.lexicon, hpc_instruct.data.demo.out_of_domain,
hpc_instruct.data.demo.problems, hpc_instruct.data.demo.synthetic, hpc_instruct.data.demo.knowledge."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from data_builders import DEMO_ARGS

from hpc_instruct.data.abilities import ABILITY_KEYS
from hpc_instruct.data.demo import build_demo_files, write_demo_study
from hpc_instruct.data.demo.knowledge import CLASSIFIERS
from hpc_instruct.data.demo.study import pool_sizes_of
from hpc_instruct.data.doit_reader import SYNTHETIC
from hpc_instruct.errors import UserError

SMALL = dict(pool_sizes={a: 25 for a in ABILITY_KEYS}, synthetic_size=60, eval_size=10, ceval_size=3,
             pretrain_corpus=True)
REPO = Path(__file__).resolve().parents[2]


def digest(files: dict[str, bytes]) -> str:
    return hashlib.sha256(b"".join(p.encode() + b"\0" + files[p] for p in sorted(files))).hexdigest()


def test_same_seed_same_bytes_other_seed_other_data():
    a, b, c = (build_demo_files(s, **SMALL) for s in (0, 0, 1))
    assert a == b
    assert a.keys() == c.keys() and all(a[p] != c[p] for p in a)


def test_same_bytes_in_another_process():
    code = ("import hashlib, sys; from hpc_instruct.data.demo import build_demo_files\n"
            f"f = build_demo_files(0, **{SMALL!r})\n"
            "print(hashlib.sha256(b''.join(p.encode() + b'\\0' + f[p] for p in sorted(f))).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "999", "PATH": ""})
    assert out.stdout.strip() == digest(build_demo_files(0, **SMALL))


def test_larger_pool_extends_smaller_one():
    small = build_demo_files(0, **SMALL)
    large = build_demo_files(0, **dict(SMALL, pool_sizes={a: 40 for a in ABILITY_KEYS}))
    for a in ABILITY_KEYS:
        assert large[f"curated/full/{a}_full.json"].startswith(small[f"curated/full/{a}_full.json"])
        assert large[f"curated/test/{a}_test.json"] == small[f"curated/test/{a}_test.json"]


def first(demo_data, ability, split="test"):
    return demo_data.samples[split][ability]


_MC = re.compile(r"\nA\. .+\nB\. .+\nC\. .+")


def test_formats_match_the_doit_scorers(demo_data):
    for split in ("full", "test"):
        for s in first(demo_data, "biology", split) + first(demo_data, "reasoning", split):
            assert len(s.messages) == 2 and s.reference in "ABCD" and _MC.search(s.messages[0].content)
        for s in first(demo_data, "history", split):
            assert len(s.messages) == 2 and (s.reference in "ABCD" or s.reference in ("正确", "错误"))
        for s in first(demo_data, "chinese", split):
            ref = s.reference
            assert ref in "ABCD" or (ref in CLASSIFIERS and "___" in s.messages[0].content)
        for s in first(demo_data, "understanding", split):
            assert len(s.messages) == 4 and s.reference in "ABC" + "D"
            assert _MC.search(s.messages[-2].content) and "请阅读对话" in s.messages[0].content
        for s in first(demo_data, "ethics", split):
            last_line = s.reference.strip().splitlines()[-1]
            letters = set(re.findall(r"([A-F])", last_line))
            assert 1 <= len(letters) <= 3 and letters <= set("ABCD")
        for s in first(demo_data, "math", split):
            boxed = re.findall(r"\\boxed\{([^}]*)\}", s.reference)
            assert boxed and boxed[-1] == s.answer and s.answer.lstrip("-").isdigit()
        for ability in ("code", "creative_writing", "role_play"):
            for s in first(demo_data, ability, split):
                assert s.question_format == 1 and s.choices[0] == s.reference and len(set(s.choices)) == 3
        assert all(len(s.messages) >= 4 for s in first(demo_data, "role_play", split))
        for ability in ABILITY_KEYS:
            if ability not in ("code", "creative_writing", "role_play"):
                assert all(s.question_format == 0 and s.choices is None for s in first(demo_data, ability, split))


def test_abilities_mix_their_question_kinds(demo_data):
    refs = {a: [s.reference for s in demo_data.pool(a)] for a in ("history", "chinese")}
    assert {"正确", "错误"} & set(refs["history"]) and set("ABCD") & set(refs["history"])
    assert set(CLASSIFIERS) & set(refs["chinese"]) and set("ABCD") & set(refs["chinese"])
    understanding = [s.messages[-2].content for s in demo_data.pool("understanding")]
    # every understanding question offers its whole category of four in one fixed order (the letter names the
    # value): a handful of option blocks across the pool
    blocks = {t[t.index("\nA. "):] for t in understanding}
    assert 3 <= len(blocks) <= 5 and {b.count("\n") for b in blocks} == {4, 5}  # three- and four-way


def test_out_of_domain_sets_are_five_shot(demo_data):
    for name in ("ceval_physician", "ceval_teacher_qualification", "ceval_urban_and_rural_planner"):
        items = demo_data.samples["test"][name]
        assert len(items) == DEMO_ARGS["ceval_size"]
        assert all(len(s.messages) == 12 and s.reference in "ABCD" for s in items)


def test_synthetic_pool_is_unlabelled_and_broader(demo_data):
    pool = demo_data.pool(SYNTHETIC)
    assert {s.ability for s in pool} == {"general"}
    assert all(s.question_format == 0 and s.choices is None and s.answer is None for s in pool)
    prompts = [s.messages[0].content for s in pool]
    assert any("重复" in p or "阿拉伯数字" in p or "从小到大" in p for p in prompts)  # tasks no ability tests
    assert any(len(s.messages) > 2 for s in pool)


def test_write_is_atomic_idempotent_and_refuses_foreign_folders(tmp_path):
    args = dict(seed=3, pool_size=20, synthetic_size=10, eval_size=5, ceval_size=2)
    out = write_demo_study(tmp_path / "demo", **args)
    meta = json.loads((out / "demo.json").read_text())
    assert meta["seed"] == 3 and meta["pool_sizes"] == {a: 20 for a in ABILITY_KEYS}
    stamp = (out / "demo.json").stat().st_mtime_ns
    assert write_demo_study(tmp_path / "demo", **args) == out
    assert (out / "demo.json").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="is not empty"):
        write_demo_study(tmp_path / "demo", **dict(args, seed=4))
    write_demo_study(tmp_path / "demo", **dict(args, seed=4), overwrite=True)
    assert json.loads((out / "demo.json").read_text())["seed"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_pool_size_mapping_and_errors():
    assert pool_sizes_of({"default": 7, "math": 9})["math"] == 9
    assert pool_sizes_of({"default": 7, "math": 9})["code"] == 7
    with pytest.raises(UserError, match="unknown abilities"):
        pool_sizes_of({"maths": 3})
    with pytest.raises(UserError, match="positive integers"):
        pool_sizes_of(0)
    with pytest.raises(UserError, match="distinct prompts"):
        build_demo_files(0, **dict(SMALL, pool_sizes=dict(SMALL["pool_sizes"], creative_writing=6000)))


def test_cli_writes_a_study(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "tools" / "make_demo_data.py"), str(tmp_path / "d"),
                          "--pool-size", "default=12", "--pool-size", "math=15", "--synthetic-size", "20",
                          "--eval-size", "4", "--ceval-size", "2", "--no-pretrain-corpus"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "123 curated training items over 10 abilities, 20 synthetic" in out.stdout  # 9 * 12 + 15
    assert not (tmp_path / "d" / "pretrain").exists()
    bad = subprocess.run([sys.executable, str(REPO / "tools" / "make_demo_data.py"), str(tmp_path / "d"),
                          "--pool-size", "5"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_pretraining_corpus_states_facts_and_stories_without_instructions(demo_root):
    docs = [json.loads(x)["text"] for x in (demo_root / "pretrain" / "corpus.jsonl").read_text().splitlines()]
    facts = "".join(docs)
    assert "红角鱼是红色的鱼类动物，住在水里，爱吃草叶。" in facts and "7×8=56" in facts
    assert "答案：" not in facts and "问题：" not in facts  # no question, no answer cue: never an instruction
    assert "所以" in facts and "\nA. " in facts  # everyday stories: conclusions drawn, lettered lists read
    assert "\ndef " in facts and "    return " in facts and "# " in facts  # commented code, as a base model reads it
    from hpc_instruct.data.demo.knowledge import history_table
    d = history_table(0)[0]
    assert f"{d.name}的都城是{d.capital}。" in facts and f"{d.founder}建立了{d.name}。" in facts


def _mc_fact(content: str, entities: tuple[str, ...]) -> tuple[str, str] | None:
    """(entity asked about, option block) of a multiple-choice prompt: the fact, whatever the scene around it."""
    if "\nA. " not in content:
        return None
    question, block = content.split("\nA. ", 1)
    named = [e for e in entities if e in question]
    return (max(named, key=len) if named else "", block)


def test_recall_abilities_reask_a_small_bank_of_facts_across_splits():
    """Biology, history, reasoning and understanding ask about a few dozen facts (16 organisms x 4 properties,
    8 dynasties x 4 question kinds, a book of 32 puzzles, a book of 24 dialogues) behind varied scenes, so a test item asks about a fact a training pool of the demo's size holds, and
    one fact has one letter in every split: a tiny model can learn them by recall (and biology by its rules)."""
    from hpc_instruct.data.demo.dialogue import dialogue_bank
    from hpc_instruct.data.demo.knowledge import ORGANISMS, history_table
    from hpc_instruct.data.demo.problems import puzzle_bank
    table = history_table(0)
    entities = {"biology": ORGANISMS,
                "history": tuple(x for d in table for x in (d.name, d.capital, d.founder)),
                "reasoning": tuple(text for text, _ in puzzle_bank())}
    sizes = {a: 150 if a in entities else 5 for a in ABILITY_KEYS}
    files = build_demo_files(0, sizes, synthetic_size=0, eval_size=50, ceval_size=2, pretrain_corpus=False)
    for ability, names in entities.items():
        split_facts = {}
        letters: dict = {}
        for split in ("full", "test", "valid"):
            rows = [json.loads(x) for x in files[f"curated/{split}/{ability}_{split}.json"].decode().splitlines()]
            facts = []
            for r in rows:
                fact = _mc_fact(r["messages"][0]["content"], names)
                if fact is not None:
                    assert letters.setdefault(fact, r["messages"][-1]["content"]) == r["messages"][-1]["content"]
                    facts.append(fact)
            split_facts[split] = facts
            assert len({r["messages"][0]["content"][:2] for r in rows}) > 3  # scenes vary the openings
        test = split_facts["test"]
        assert len(test) >= 30 and sum(f in set(split_facts["full"]) for f in test) / len(test) >= 0.8, ability
    # understanding: every dialogue comes from the book, and the book's dialogues recur across the pools
    texts = [text for text, _ in dialogue_bank()]
    sizes["understanding"] = 150
    files = build_demo_files(0, sizes, synthetic_size=0, eval_size=50, ceval_size=2, pretrain_corpus=False)
    used = {}
    for split in ("full", "test"):
        rows = [json.loads(x) for x in files[f"curated/{split}/understanding_{split}.json"].decode().splitlines()]
        used[split] = [next(t for t in texts if t in r["messages"][0]["content"]) for r in rows]
    assert set(used["test"]) <= set(used["full"]) and len(set(used["full"])) > len(texts) // 2
