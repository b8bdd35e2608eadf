"""Mixtures on disk: atomic, reused when identical, the same from another process and from shuffled files."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import sys

import pytest

from hpc_instruct.data.doit_reader import SYNTHETIC, SYNTHETIC_FILE, read_doit
from hpc_instruct.data.mixture_store import (
    COMPLETE_FILE,
    MANIFEST_FILE,
    SAMPLES_FILE,
    materialise_mixture,
    read_mixture,
)
from hpc_instruct.data.mixtures import ALL, MixtureError, MixtureSpec, guideline_mix

SPEC = MixtureSpec({"ethics": 8, "math": 0.5, "code": ALL}, default=4, synthetic_total=16, cap=True, seed=7)


def test_manifest_says_what_was_asked_available_and_taken(demo_data, tmp_path):
    mix = materialise_mixture(SPEC, demo_data, tmp_path / "mixtures")
    assert mix.created and mix.path == tmp_path / "mixtures" / mix.mixture_id
    assert sorted(p.name for p in mix.path.iterdir()) == [COMPLETE_FILE, MANIFEST_FILE, SAMPLES_FILE]
    m = json.loads((mix.path / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert m == mix.manifest and m["mixture_id"] == mix.mixture_id
    assert MixtureSpec.from_dict(m["spec"]) == SPEC and m["spec_hash"] == SPEC.content_hash
    pools = m["pools"]
    assert (pools["ethics"]["requested"], pools["ethics"]["taken"]) == (8, 8)
    assert (pools["math"]["amount"], pools["math"]["available"], pools["math"]["taken"]) == (0.5, 60, 30)
    assert (pools["code"]["amount"], pools["code"]["taken"]) == ("all", 60)
    assert pools["biology"]["taken"] == 4 and pools[SYNTHETIC]["taken"] == 16
    source = demo_data.file_for("math", "full")
    assert pools["math"]["source"] == {"path": "curated/full/math_full.json", "sha256": source.sha256}
    assert pools[SYNTHETIC]["source"]["path"] == SYNTHETIC_FILE
    assert all(p["seed"] == 7 and len(p["uids"]) == p["taken"] for p in pools.values())
    assert m["totals"] == {
        "curated": 8 + 30 + 60 + 4 * 7,
        "synthetic": 16,
        "samples": 8 + 30 + 60 + 28 + 16,
        "abilities": 10,
    }
    lines = (mix.path / SAMPLES_FILE).read_bytes()
    assert m["files"][SAMPLES_FILE] == {"sha256": hashlib.sha256(lines).hexdigest(), "records": 142}
    manifest, samples = read_mixture(mix.path)
    assert [s.uid for s in samples] == [u for p in pools.values() for u in p["uids"]]
    assert all(s.split == "mixture" for s in samples)
    math_uids = [s.uid for s in demo_data.pool("math")]
    assert set(pools["math"]["uids"]) <= set(math_uids)


def test_materialising_twice_is_a_no_op(demo_data, tmp_path):
    first = materialise_mixture(SPEC, demo_data, tmp_path)
    stamp = (first.path / SAMPLES_FILE).stat().st_mtime_ns
    again = materialise_mixture(SPEC, demo_data, tmp_path)
    assert not again.created and again.mixture_id == first.mixture_id and again.manifest == first.manifest
    assert (first.path / SAMPLES_FILE).stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.mixture_id]  # no temporary folder left behind


def test_damaged_mixture_is_reported_not_reused(demo_data, tmp_path):
    mix = materialise_mixture(SPEC, demo_data, tmp_path)
    with open(mix.path / SAMPLES_FILE, "a") as f:
        f.write("\n")
    with pytest.raises(MixtureError, match="does not match the hash in COMPLETE"):
        materialise_mixture(SPEC, demo_data, tmp_path)
    (mix.path / COMPLETE_FILE).unlink()
    with pytest.raises(MixtureError, match="not a complete mixture"):
        read_mixture(mix.path)


def test_short_pool_without_cap_writes_nothing(demo_data, tmp_path):
    with pytest.raises(MixtureError, match="biology: asked for 1000 samples, the pool holds 30"):
        materialise_mixture(guideline_mix("baseline"), demo_data, tmp_path / "m")
    assert not (tmp_path / "m").exists()
    capped = materialise_mixture(guideline_mix("reconstruct"), demo_data, tmp_path / "m")
    bio = capped.manifest["pools"]["biology"]
    assert (bio["requested"], bio["available"], bio["taken"], bio["capped"]) == (1305, 30, 30, True)


_CHILD = """
import sys
from hpc_instruct.data.doit_reader import read_doit
from hpc_instruct.data.mixture_store import materialise_mixture
from hpc_instruct.data.mixtures import MixtureSpec
spec = MixtureSpec.from_dict(__import__("json").loads(sys.argv[3]))
mix = materialise_mixture(spec, read_doit(sys.argv[1]), sys.argv[2])
print(mix.mixture_id)
assert "torch" not in sys.modules, "the data path must not import torch"
"""


def test_same_mixture_from_another_process(demo_root, demo_data, tmp_path):
    here = materialise_mixture(SPEC, demo_data, tmp_path / "here")
    env = {"PYTHONHASHSEED": "12345", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(demo_root), str(tmp_path / "there"), json.dumps(SPEC.to_dict())],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout.strip() == here.mixture_id
    there = tmp_path / "there" / here.mixture_id
    for name in (SAMPLES_FILE, MANIFEST_FILE, COMPLETE_FILE):
        assert (there / name).read_bytes() == (here.path / name).read_bytes()


def test_same_mixture_from_shuffled_files(demo_root, demo_data, tmp_path):
    copy = tmp_path / "shuffled"
    shutil.copytree(demo_root, copy)
    rng = random.Random(0)
    for path in list((copy / "curated" / "full").glob("*.json")) + [copy / SYNTHETIC_FILE]:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        rng.shuffle(lines)
        path.write_text("".join(lines), encoding="utf-8")
    shuffled = read_doit(copy)
    assert [s.uid for s in shuffled.pool("math")] != [s.uid for s in demo_data.pool("math")]
    a = materialise_mixture(SPEC, demo_data, tmp_path / "a")
    b = materialise_mixture(SPEC, shuffled, tmp_path / "b")
    assert a.mixture_id == b.mixture_id
    assert (a.path / SAMPLES_FILE).read_bytes() == (b.path / SAMPLES_FILE).read_bytes()
    # only the provenance differs: the shuffled files have other hashes
    assert a.manifest["pools"]["math"]["source"]["sha256"] != b.manifest["pools"]["math"]["source"]["sha256"]


def test_login_node_imports_stay_light():
    code = (
        "import sys, hpc_instruct.data.records, hpc_instruct.data.doit_reader, hpc_instruct.data.mixtures, "
        "hpc_instruct.data.mixture_store, hpc_instruct.data.contamination, hpc_instruct.data.demo\n"
        "heavy = [m for m in ('torch', 'pyarrow', 'numpy', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
