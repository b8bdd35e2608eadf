"""Contamination: a held-out prompt that also occurs in a training pool is reported with both places."""

from __future__ import annotations

import json
import shutil

from data_builders import make_sample

from hpc_instruct.data.contamination import (
    contamination_report,
    data_contamination,
    find_contamination,
    find_duplicates,
)
from hpc_instruct.data.doit_reader import SYNTHETIC_FILE, read_doit


def test_generated_demo_is_clean(demo_data):
    assert data_contamination(demo_data) == ()
    assert "no held-out prompt" in contamination_report(())


def _leak(root, test_file: str, test_line: int, into: str, ability_type: str, mangle) -> None:
    """Copy one test item into a training file, with its prompt re-laid-out by `mangle`."""
    rec = json.loads((root / test_file).read_text(encoding="utf-8").splitlines()[test_line - 1])
    rec["messages"][0]["content"] = mangle(rec["messages"][0]["content"])
    rec["type"] = ability_type
    rec.pop("choices", None) if ability_type == "general" else None
    with open(root / into, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def test_leaked_test_item_is_found_despite_layout_changes(demo_root, tmp_path):
    root = tmp_path / "study"
    shutil.copytree(demo_root, root)
    _leak(
        root,
        "curated/test/biology_test.json",
        3,
        "curated/full/biology_full.json",
        "biology",
        lambda t: "  " + t.replace("\n", " \n ") + " ",
    )
    _leak(root, "curated/valid/math_valid.json", 1, SYNTHETIC_FILE, "general", lambda t: t.upper())
    found = data_contamination(read_doit(root))
    assert [(c.held_out.source, c.held_out.line) for c in found] == [  # valid sets first, then test
        ("curated/valid/math_valid.json", 1),
        ("curated/test/biology_test.json", 3),
    ]
    train_places = [(t.source, t.split) for c in found for t in c.training]
    assert train_places == [(SYNTHETIC_FILE, "synthetic"), ("curated/full/biology_full.json", "full")]
    report = contamination_report(found)
    assert report.startswith(
        "2 held-out item(s) share a prompt with training data (biology/test: 1, math/valid: 1)"
    )
    assert "curated/test/biology_test.json:3: test item biology#" in report
    assert f"curated/full/biology_full.json:{30 + 1}" in report  # appended after the 30 pool lines


def test_find_contamination_and_duplicates_on_samples():
    train = [make_sample("a", i) for i in range(5)] + [make_sample("a", 2, idx=7)]
    held = [make_sample("a", 2), make_sample("a", 9)]
    found = find_contamination(train, held)
    assert len(found) == 1 and len(found[0].training) == 2
    dups = find_duplicates(train)
    assert len(dups) == 1 and {s.idx for s in dups[0]} == {2, 7}
