"""Record validation: the stages' parser over whole files, in worker processes, cached by content hash."""

from __future__ import annotations

import json
import re
import shutil
import unicodedata
from pathlib import Path

import pytest
from data_builders import DEMO_ARGS
from hypothesis import given
from hypothesis import strategies as st

from hpc_instruct.data import validation
from hpc_instruct.data.doit_reader import SYNTHETIC_FILE, read_doit
from hpc_instruct.data.records import EVAL, TRAIN, normalise_text
from hpc_instruct.data.validation import DataFile, check_file, contaminated_items, validate_files
from hpc_instruct.evaluate.sets import classify, load_eval_set


def study_files(root: Path) -> list[DataFile]:
    """Every pool, the synthetic pool, and every valid/test set of a DoIT-layout folder."""
    files = [
        DataFile(p, "full", TRAIN, p.stem.removesuffix("_full")) for p in sorted(root.glob("curated/full/*"))
    ]
    files.append(DataFile(root / SYNTHETIC_FILE, "synthetic", TRAIN, None))
    for split in ("valid", "test"):
        files += [
            DataFile(p, split, EVAL, p.stem.removesuffix(f"_{split}"), classify=True)
            for p in sorted(root.glob(f"curated/{split}/*.json"))
        ]
    return files


@pytest.fixture
def root(demo_root, tmp_path) -> Path:
    """A private copy of the generated demo folder (tests edit it)."""
    return Path(shutil.copytree(demo_root, tmp_path / "data"))


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def rewrite(path: Path, line: int, change) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[line - 1])
    change(record)
    lines[line - 1] = json.dumps(record, ensure_ascii=False)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_clean_data_counts_what_the_stages_read(root, cache):
    report = validate_files(study_files(root), eval_check=classify, cache_dir=cache)
    assert report.issues == ()
    data = read_doit(root, splits=("full", "synthetic"))
    pools = sum(len(p) for split in data.samples.values() for p in split.values())
    sets = sum(len(load_eval_set(root, f.ability, f.split)) for f in study_files(root) if f.purpose == EVAL)
    assert report.records == pools + sets


def test_problems_are_the_stage_parsers_with_file_and_line(root, cache):
    pool, test = root / "curated/full/math_full.json", root / "curated/test/biology_test.json"
    rewrite(pool, 2, lambda r: r.pop("answer"))
    rewrite(test, 3, lambda r: r["messages"][-1].update(content="F"))
    with open(test, "ab") as f:
        f.write(b'{"messages": [{"role": "user"\n')
    report = validate_files(study_files(root), eval_check=classify, cache_dir=cache)
    assert [str(i) for i in report.issues] == [
        f"{pool}:2: answer: missing: math records carry the final answer the scorer compares with",
        f"{test}:3: messages: MC reference 'F' is not one of the item's 4 options A-D",
        f"{test}:{len(test.read_text().splitlines())}: -: invalid JSON: Expecting ',' delimiter at column 30",
    ]
    checks = {c.file.path: c for c in report.files}
    assert (
        checks[test].records == DEMO_ARGS["eval_size"] - 1
    )  # the MC item with no such option is not counted


def test_eval_check_runs_only_on_files_asked_as_eval_sets(root, cache):
    test = root / "curated/test/biology_test.json"
    rewrite(test, 1, lambda r: r["messages"][-1].update(content="F"))
    as_pool = DataFile(test, "test", EVAL, "biology", classify=False)
    assert check_file(as_pool, classify).issues == ()
    assert len(check_file(DataFile(test, "test", EVAL, "biology", classify=True), classify).issues) == 1


def test_revalidate_of_unchanged_files_parses_nothing(root, cache):
    files = study_files(root)
    first = validate_files(files, eval_check=classify, cache_dir=cache)
    assert (first.parsed_files, first.cached_files) == (len(files), 0)
    again = validate_files(files, eval_check=classify, cache_dir=cache)
    assert (again.parsed_files, again.cached_files) == (0, len(files))
    assert again.issues == first.issues and again.records == first.records
    assert [c.prompts for c in again.files] == [c.prompts for c in first.files]
    rewrite(root / "curated/full/ethics_full.json", 1, lambda r: r.update(idx=10_000))
    changed = validate_files(files, eval_check=classify, cache_dir=cache)
    assert (
        changed.parsed_files == 1
        and not changed.files[[f.path.name for f in files].index("ethics_full.json")].cached
    )


def test_cached_problems_keep_their_lines_and_follow_the_path(root, cache, tmp_path):
    pool = root / "curated/full/biology_full.json"
    rewrite(pool, 4, lambda r: r.update(type="history"))
    first = validate_files([DataFile(pool, "full", TRAIN, "biology")], cache_dir=cache)
    moved = tmp_path / "elsewhere" / "biology_full.json"
    moved.parent.mkdir()
    shutil.copy(pool, moved)
    second = validate_files([DataFile(moved, "full", TRAIN, "biology")], cache_dir=cache)
    assert second.parsed_files == 0
    assert [str(i) for i in second.issues] == [str(i).replace(str(pool), str(moved)) for i in first.issues]
    assert second.issues[0].line == 4 and second.issues[0].field == "type"


def test_how_a_file_is_read_is_part_of_the_key(root, cache):
    pool = root / "curated/full/biology_full.json"
    validate_files([DataFile(pool, "full", TRAIN, "biology")], cache_dir=cache)
    other = validate_files([DataFile(pool, "full", TRAIN, "history")], cache_dir=cache)
    assert other.parsed_files == 1 and other.issues  # every record's type is biology, not history


def test_changed_code_invalidates_the_cache(root, cache, monkeypatch):
    files = study_files(root)[:3]
    validate_files(files, cache_dir=cache)
    monkeypatch.setattr(validation, "code_fingerprint", lambda: "another version of the parser")
    assert validate_files(files, cache_dir=cache).parsed_files == 3


def test_a_torn_cache_entry_is_parsed_again(root, cache):
    files = study_files(root)[:2]
    first = validate_files(files, cache_dir=cache)
    entries = sorted(cache.rglob("*.json"))
    assert len(entries) == 2
    entries[0].write_text('{"records": 3, "iss')
    again = validate_files(files, cache_dir=cache)
    assert again.parsed_files == 1 and again.records == first.records


def test_no_cache_writes_nothing(root, cache):
    report = validate_files(study_files(root)[:3], cache_dir=cache, use_cache=False)
    assert report.parsed_files == 3 and not cache.exists()


def test_worker_processes_find_what_one_process_finds(root, cache, monkeypatch):
    rewrite(root / "curated/full/code_full.json", 2, lambda r: r["choices"].pop())
    rewrite(root / "curated/valid/history_valid.json", 1, lambda r: r.update(question_format=2))
    files = study_files(root)
    serial = validate_files(files, eval_check=classify, use_cache=False, workers=1)
    monkeypatch.setattr(validation, "PARALLEL_MIN_BYTES", 0)  # the demo is small; force the process pool
    parallel = validate_files(files, eval_check=classify, use_cache=False, workers=2)
    assert parallel.files == serial.files and len(serial.issues) == 2


def test_contaminated_items_name_both_places_from_cache_too(root, cache):
    test = root / "curated/test/history_test.json"
    leaked = json.loads(test.read_text(encoding="utf-8").splitlines()[4])
    leaked["messages"][0]["content"] = leaked["messages"][0]["content"].upper().replace("\n", "\n  ")
    pool = root / "curated/full/reasoning_full.json"  # across abilities: what matters is the prompt
    with open(pool, "a", encoding="utf-8") as f:
        f.write(json.dumps(leaked | {"type": "reasoning"}, ensure_ascii=False) + "\n")
    pool_line = len(pool.read_text(encoding="utf-8").splitlines())
    files = study_files(root)
    for attempt in range(2):  # parsed, then from the cache
        report = validate_files(files, eval_check=classify, cache_dir=cache)
        assert report.parsed_files == (len(files) if attempt == 0 else 0)
        training = [c for c in report.files if c.file.purpose == TRAIN]
        held_out = [c for c in report.files if c.file.purpose == EVAL]
        assert [str(i) for i in contaminated_items(training, held_out)] == [
            f"{test}:5: messages: test item has the same prompt as training data at {pool}:{pool_line}"
        ]


# Full-width forms, the ideographic space, CJK, compatibility characters (ligatures, circled digits, half-width
# katakana), combining marks that compose with a preceding full-width letter, and plain ASCII.
MIXED = "".join(map(chr, [*range(0xFF00, 0xFF70), 0x3000, 0x3002, 0x4E2D, 0x6587, 0xFB01, 0x2460, 0x0301,
                          0x0308, 0x00C5, 0x212B, 0x1E9B, 0x0323, 0x2002, 0x00A0, *range(0x20, 0x7F)]))


@given(st.text(alphabet=MIXED, max_size=60) | st.text(max_size=30))
def test_prompt_normalisation_equals_plain_nfkc(text):
    """The full-width fast path of `normalise_text` must give what NFKC + casefold + no whitespace gives."""
    plain = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text).casefold())
    assert normalise_text(text) == plain


def test_an_unreadable_file_is_a_problem_not_a_crash(tmp_path, cache):
    folder = tmp_path / "curated" / "full" / "biology_full.json"
    folder.mkdir(parents=True)  # a directory where the file should be
    report = validate_files([DataFile(folder, "full", TRAIN, "biology")], cache_dir=cache)
    assert [str(i) for i in report.issues] == [f"{folder}: -: cannot read the file: Is a directory"]
    assert not cache.exists()  # nothing cached for a file that could not be read
