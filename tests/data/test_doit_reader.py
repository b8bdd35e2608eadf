"""Reading the DoIT layout: the demo study round-trips, files are hashed, C-Eval sets are recognised."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from data_builders import DEMO_ARGS, good_record, line

from hpc_instruct.data.abilities import ABILITY_KEYS
from hpc_instruct.data.doit_reader import SYNTHETIC, read_doit
from hpc_instruct.data.records import DataError


def test_demo_study_reads_back_complete(demo_root, demo_data):
    sizes = {a: DEMO_ARGS["pool_size"].get(a, DEMO_ARGS["pool_size"]["default"]) for a in ABILITY_KEYS}
    assert demo_data.abilities("full") == tuple(sorted(ABILITY_KEYS))
    assert {a: len(demo_data.pool(a)) for a in ABILITY_KEYS} == sizes
    assert [s.uid for s in demo_data.pool("math", "1000")] == [s.uid for s in demo_data.pool("math")]
    for split in ("valid", "test"):
        assert all(len(demo_data.samples[split][a]) == DEMO_ARGS["eval_size"] for a in ABILITY_KEYS)
    ceval = [a for a in demo_data.abilities("test") if a.startswith("ceval_")]
    assert ceval == ["ceval_physician", "ceval_teacher_qualification", "ceval_urban_and_rural_planner"]
    assert len(demo_data.pool(SYNTHETIC)) == DEMO_ARGS["synthetic_size"]
    for split, pools in demo_data.samples.items():
        for ability, samples in pools.items():
            assert all(s.ability == ability or split == SYNTHETIC for s in samples)
            assert all(s.split == split for s in samples)


def test_every_file_is_hashed_and_matches_the_generator_record(demo_root, demo_data):
    recorded = json.loads((demo_root / "demo.json").read_text())["files"]
    assert len(demo_data.files) == len([p for p in recorded if p.endswith(".json")])
    for f in demo_data.files:
        assert f.sha256 == hashlib.sha256((demo_root / f.path).read_bytes()).hexdigest() == recorded[f.path]
        assert f.records == len(demo_data.samples[f.split][f.ability])


def test_fingerprint_pins_the_data_revision(demo_root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(demo_root, copy)
    before = read_doit(copy).fingerprint
    path = copy / "curated/valid/ethics_valid.json"
    path.write_bytes(path.read_bytes() + (line(good_record("ethics", 999)) + "\n").encode())
    after = read_doit(copy)
    assert after.fingerprint != before
    assert after.file_for("ethics", "valid").records == DEMO_ARGS["eval_size"] + 1


def test_ceval_file_names_and_fshot_types(layout):
    rec = good_record("ceval_physician_fshot")
    root = layout(
        {
            "curated/full/biology_full.json": [line(good_record())],
            "curated/test/ceval_physician_fshot_test.json": [line(rec)],
            "curated/test/ceval_teacher_qualification.json": [
                line(good_record("ceval_teacher_qualification"))
            ],
        }
    )
    data = read_doit(root)
    assert data.abilities("test") == ("ceval_physician", "ceval_teacher_qualification")
    assert data.samples["test"]["ceval_physician"][0].ability == "ceval_physician"


def test_ability_filter_and_missing_pool(demo_root):
    data = read_doit(demo_root, abilities=("math", "code"), splits=("full", "test"))
    assert data.abilities("full") == ("code", "math")
    assert "ceval_physician" in data.abilities("test")  # out-of-domain sets stay
    with pytest.raises(DataError, match="no 'full' data for this ability"):
        data.pool("biology")


def test_two_files_for_one_eval_set_are_reported(layout):
    root = layout({"curated/full/biology_full.json": [line(good_record())],
                   "curated/test/ceval_physician_test.json": [line(good_record("ceval_physician"))],
                   "curated/test/ceval_physician_fshot_test.json": [line(good_record("ceval_physician_fshot"))]})
    with pytest.raises(DataError, match="as curated/test/ceval_physician_fshot_test.json does; keep one file"):
        read_doit(root)
