"""Builders for hand-made records and samples used by the data tests (imported by name; no fixtures here)."""

from __future__ import annotations

import json

from hpc_instruct.data.records import Message, Sample, sample_uid

# A small but complete demo: biology's pool is smaller than the others so capping shows.
DEMO_ARGS = dict(
    seed=0,
    pool_size={"default": 60, "biology": 30},
    synthetic_size=300,
    eval_size=20,
    ceval_size=6,
    pretrain_corpus=True,
)


def good_record(ability: str = "biology", n: int = 0, **override) -> dict:
    """A valid DoIT record (question number `n`); `override` replaces fields, or removes one given `...`."""
    rec = {
        "messages": [
            {"role": "user", "content": f"问题{n}？\nA. 甲\nB. 乙"},
            {"role": "assistant", "content": "A"},
        ],
        "idx": n,
        "type": ability,
        "question_format": 0,
    }
    if ability == "math":
        rec["answer"] = "3"
    if ability in ("code", "creative_writing", "role_play"):
        rec["question_format"] = 1
        rec["choices"] = ["A", "B", "C"]
    for k, v in override.items():
        if v is ...:
            rec.pop(k, None)
        else:
            rec[k] = v
    return rec


def line(rec: dict) -> str:
    return json.dumps(rec, ensure_ascii=False)


def make_sample(pool: str, i: int, idx: int | None = None) -> Sample:
    """A minimal valid Sample with distinct content per (pool, i)."""
    messages = (Message("user", f"{pool} question {i}"), Message("assistant", f"answer {i}"))
    uid = sample_uid(pool, messages, 0, None, None)
    return Sample(
        pool, i if idx is None else idx, messages, 0, None, None, "full", f"{pool}.json", i + 1, uid
    )
