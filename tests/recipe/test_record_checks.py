"""`hpci validate` reads every record of the study's data: one test per bad-record kind, through the real CLI.

Each test breaks one record of a generated DoIT-layout folder (ten abilities, multi-turn dialogues included),
runs `hpci validate` (or plan/run) as a subprocess and checks: exit 2, one `file:line: field: reason` line
naming the broken record, and nothing written (no study directory, the data folder unchanged).

Covers: hpc_instruct.recipe.record_checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hpc_instruct.data.demo import write_demo_study

ROOT = Path(__file__).resolve().parents[2]

RECIPE = """\
study:
  name: records
  output_root: {out}
models:
  - name: m
    size: tiny
    device: cpu
    micro_batch: 4
    global_batch: 8
data:
  root: {data}
{extra}evaluation:
  out_of_domain: [ceval_physician]
sweep:
  seeds: [0]
  curated:
    samples_per_ability: [1, 4]
training:
  epochs: 1
  precision: fp32
  lr: 1.0e-3
  max_length: 256
"""


class DataFolder:
    """A clean generated data folder, a recipe that reads it, and a private validation cache."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.data = write_demo_study(
            tmp / "data",
            seed=0,
            pool_size=12,
            synthetic_size=20,
            eval_size=4,
            ceval_size=6,
            pretrain_corpus=False,
        )
        self.out = tmp / "studies"
        self.env = os.environ | {"HPC_INSTRUCT_CACHE": str(tmp / "cache"), "PYTHONPATH": str(ROOT)}

    def recipe(self, extra: str = "") -> Path:
        path = self.tmp / "recipe.yaml"
        path.write_text(RECIPE.format(out=self.out, data=self.data, extra=extra))
        return path

    def hpci(self, *args: str, extra: str = "") -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "hpc_instruct.cli", args[0], str(self.recipe(extra)), *args[1:]]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)

    def edit(self, rel: str, line: int, change: Callable[[dict], None]) -> Path:
        """Apply `change` to the record on 1-based `line` of `rel`; returns the file's path."""
        path = self.data / rel
        lines = path.read_text(encoding="utf-8").splitlines()
        record = json.loads(lines[line - 1])
        change(record)
        lines[line - 1] = json.dumps(record, ensure_ascii=False)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def edit_bytes(self, rel: str, line: int, change: Callable[[bytes], bytes]) -> Path:
        path = self.data / rel
        lines = path.read_bytes().split(b"\n")
        new = change(lines[line - 1])
        assert new != lines[line - 1]
        lines[line - 1] = new
        path.write_bytes(b"\n".join(lines))
        return path

    def snapshot(self) -> dict[str, bytes]:
        return {str(p): p.read_bytes() for p in sorted(self.data.rglob("*")) if p.is_file()}


@pytest.fixture
def study(tmp_path) -> DataFolder:
    return DataFolder(tmp_path)


def assert_rejected(
    study: DataFolder,
    result: subprocess.CompletedProcess,
    path: Path,
    line: int,
    field: str,
    reason: str,
    before: dict[str, bytes],
) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    wanted = f"{path}:{line}: {field}: "
    hits = [x.strip() for x in result.stderr.splitlines() if x.strip().startswith(wanted)]
    assert len(hits) == 1, result.stderr
    assert reason in hits[0], hits[0]
    assert "Traceback" not in result.stderr
    assert not study.out.exists()  # no study directory
    assert study.snapshot() == before  # the data folder untouched


def test_clean_data_validates_and_counts_every_record(study):
    result = study.hpci("validate")
    assert result.returncode == 0, result.stderr
    # 10 pools + the synthetic pool + 10 valid + 10 test sets + the out-of-domain ceval_physician test set
    files = [
        *study.data.glob("curated/full/*.json"),
        study.data / "synthetic/40960/general_instruction_gpt4_41k.json",
        *study.data.glob("curated/valid/*.json"),
        *[f for f in study.data.glob("curated/test/*.json") if not f.name.startswith("ceval_")],
        study.data / "curated/test/ceval_physician_test.json",
    ]
    records = sum(len(f.read_text(encoding="utf-8").splitlines()) for f in files)
    assert f"data: {records} records in 32 files checked (32 parsed, 0 from cache)" in result.stdout


CASES = {
    # kind: (file, line, how to break it, field, reason)
    "missing messages": (
        "curated/full/biology_full.json",
        3,
        lambda r: r.pop("messages"),
        "messages",
        "missing",
    ),
    "bad role order": (
        "curated/full/role_play_full.json",
        2,
        lambda r: r["messages"][2].update(role="assistant"),
        "messages[2].role",
        "two assistant turns in a row",
    ),
    "empty content": (
        "curated/valid/history_valid.json",
        1,
        lambda r: r["messages"][0].update(content="  \n"),
        "messages[0].content",
        "empty text",
    ),
    "format-1 item with two choices": (
        "curated/test/code_test.json",
        2,
        lambda r: r["choices"].pop(),
        "choices",
        "needs exactly 3 candidates",
    ),
    "math item without its answer": (
        "curated/full/math_full.json",
        4,
        lambda r: r.pop("answer"),
        "answer",
        "missing",
    ),
    "MC label outside A-D": (
        "curated/test/biology_test.json",
        1,
        lambda r: r["messages"][-1].update(content="E"),
        "messages",
        "MC reference 'E' is not one of the item's 4 options A-D",
    ),
    "type mismatch (ability)": (
        "curated/full/ethics_full.json",
        1,
        lambda r: r.update(type="history"),
        "type",
        "'history' does not match the file's ability 'ethics'",
    ),
    "type mismatch (JSON type)": (
        "curated/full/understanding_full.json",
        5,
        lambda r: r.update(idx="5"),
        "idx",
        "expected an integer, got str",
    ),
    "question_format 2": (
        "curated/valid/role_play_valid.json",
        1,
        lambda r: r.update(question_format=2),
        "question_format",
        "expected 0 (generate) or 1",
    ),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_record_is_reported_at_validate(study, kind):
    rel, line, change, field, reason = CASES[kind]
    path = study.edit(rel, line, change)
    before = study.snapshot()
    assert_rejected(study, study.hpci("validate"), path, line, field, reason, before)


def _cut(line: bytes) -> bytes:
    text = line.decode("utf-8")
    return text[: len(text) // 2].encode("utf-8")


def test_truncated_json_line(study):
    path = study.edit_bytes("curated/full/reasoning_full.json", 5, _cut)
    before = study.snapshot()
    assert_rejected(study, study.hpci("validate"), path, 5, "-", "invalid JSON", before)


def test_line_truncated_inside_a_character(study):
    path = study.edit_bytes("curated/full/reasoning_full.json", 5, lambda b: _cut(b) + "答".encode()[:2])
    before = study.snapshot()
    assert_rejected(study, study.hpci("validate"), path, 5, "-", "truncated line", before)


def test_non_utf8_bytes(study):
    path = study.edit_bytes(
        "curated/full/chinese_full.json", 2, lambda b: b.replace(b'"content": "', b'"content": "\xff', 1)
    )
    before = study.snapshot()
    assert_rejected(study, study.hpci("validate"), path, 2, "-", "not valid UTF-8", before)


def _leak_test_item(study: DataFolder) -> tuple[Path, Path, int]:
    """Copy line 2 of biology's test set to the end of biology's training pool (the prompt re-spaced)."""
    test = study.data / "curated/test/biology_test.json"
    record = json.loads(test.read_text(encoding="utf-8").splitlines()[1])
    record["messages"][0]["content"] = "  " + record["messages"][0]["content"].replace("\n", " \n")
    pool = study.data / "curated/full/biology_full.json"
    with open(pool, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return test, pool, len(pool.read_text(encoding="utf-8").splitlines())


def test_contaminated_test_item_names_both_places(study):
    test, pool, pool_line = _leak_test_item(study)
    before = study.snapshot()
    result = study.hpci("validate")
    assert_rejected(
        study,
        result,
        test,
        2,
        "messages",
        f"test item has the same prompt as training data at {pool}:{pool_line}",
        before,
    )
    assert "data.allow_contamination: true" in result.stderr


def test_contamination_allowed_by_the_recipe_is_a_warning(study):
    _leak_test_item(study)
    result = study.hpci("validate", extra="  allow_contamination: true\n")
    assert result.returncode == 0, result.stderr
    assert (
        "1 held-out item(s) share a prompt with training data (allowed by data.allow_contamination)"
        in result.stderr
    )


def test_misspelt_allow_key_gets_a_suggestion(study):
    result = study.hpci("validate", extra="  allow_contaminaton: true\n")
    assert result.returncode == 2
    assert "did you mean 'allow_contamination'?" in result.stderr


def test_every_bad_record_at_once(study):
    a = study.edit("curated/full/biology_full.json", 3, lambda r: r.pop("messages"))
    b = study.edit("curated/test/math_test.json", 2, lambda r: r.update(question_format=2))
    result = study.hpci("validate")
    assert result.returncode == 2
    assert f"{a}:3: messages: missing" in result.stderr and f"{b}:2: question_format:" in result.stderr
    assert "2 problems in recipe and its data" in result.stderr


@pytest.mark.parametrize("command", [("plan", "--write"), ("run", "--quiet")])
def test_plan_and_run_stop_before_anything_is_written(study, command):
    path = study.edit("curated/full/math_full.json", 4, lambda r: r.pop("answer"))
    before = study.snapshot()
    assert_rejected(study, study.hpci(*command), path, 4, "answer", "missing", before)


def test_revalidate_of_unchanged_files_parses_nothing(study):
    first = study.hpci("validate")
    assert first.returncode == 0 and " parsed, 0 from cache)" in first.stdout
    files = int(first.stdout.split(" files checked")[0].rsplit(" ", 1)[1])
    again = study.hpci("validate")
    assert again.returncode == 0 and f"(0 parsed, {files} from cache)" in again.stdout
    study.edit("curated/full/math_full.json", 1, lambda r: r.update(idx=999))
    changed = study.hpci("validate")
    assert f"(1 parsed, {files - 1} from cache)" in changed.stdout
