"""`hpci score`: DoIT prediction files and result shards scored without a model, in all three modes.

The CLI runs as a subprocess on a DoIT-format prediction file written here (one record per format, a
full-vocabulary `generated_score`, a five-letter multi-select label, an unreadable line, a record without its
generated reply), and the tables and summaries it writes are read back.

Covers: hpc_instruct.evaluate.score_files, hpc_instruct.evaluate.doit_predictions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hpc_instruct.evaluate.results import score_evidence
from hpc_instruct.evaluate.score_files import ScoreFilesConfig, score_files
from hpc_instruct.evaluate.scoring.official import DOIT_LETTER_TOKEN_IDS

REPO = Path(__file__).resolve().parents[2]
MC_Q = "细胞的能量工厂是？\nA. 核糖体\nB. 线粒体\nC. 高尔基体\nD. 内质网"


def _vocab_scores(best: str) -> list[float]:
    """A 400-entry logit vector (as `pred.py` stores one per item) whose letter tokens make `best` the argmax."""
    values = [0.0] * 400
    for letter, token in zip("ABCD", DOIT_LETTER_TOKEN_IDS, strict=True):
        values[token] = 5.0 if letter == best else 1.0
    return values


def _record(type_: str, user: str, label: str, reply: str | None, idx: int, **extra) -> dict:
    rec = {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": label}],
        "idx": idx,
        "type": type_,
        "question_format": 0,
        **extra,
    }
    if reply is not None:
        rec["generated_response"] = reply
    return rec


def write_predictions(path: Path) -> None:
    lines = [
        # line 1: long MC reply; the logits say C, the text says B (label B)
        json.dumps(
            _record("biology", MC_Q, "B", "DNA不在这里，答案是B。", 0, generated_score=_vocab_scores("C")),
            ensure_ascii=False,
        ),
        # line 2: true/false negation (label 错误)
        json.dumps(
            _record("history", "判断：秦朝统一于公元前200年。", "错误", "不正确", 1), ensure_ascii=False
        ),
        # line 3: cloze with trailing punctuation
        json.dumps(_record("chinese", "中国的首都是____。", "北京", "北京。", 2), ensure_ascii=False),
        # line 4: five-letter multi-select label: the official scorer crashes on it
        json.dumps(_record("ethics", "选出所有正确项", "ABCDE", "ABCDE", 3), ensure_ascii=False),
        "{not json",
        # line 6: no generated reply: unreadable as a prediction
        json.dumps(_record("biology", MC_Q, "A", None, 5), ensure_ascii=False),
        # line 7: math, answer after a CJK character
        json.dumps(_record("math", "1+41=?", "解：……", "一共需要42个", 6, answer="42"), ensure_ascii=False),
        # line 8: a ranking record, tie with the reference
        json.dumps(
            {
                "messages": [{"role": "user", "content": "写一首诗"}, {"role": "assistant", "content": "诗"}],
                "idx": 7,
                "type": "creative_writing",
                "question_format": 1,
                "choices": ["诗", "文", "画"],
                "generated_ppl": [2.0, 2.0, 3.0],
            },
            ensure_ascii=False,
        ),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "hpc_instruct.cli", "score", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


# (mode) -> verdict per line number: None for an error row
EXPECTED = {
    "doit": {1: False, 2: False, 3: False, 4: None, 7: False, 8: True},
    "doit-text": {1: False, 2: False, 3: False, 4: None, 7: False, 8: True},  # text: "DNA" gives D
    "corrected": {1: True, 2: True, 3: True, 4: True, 7: True, 8: False},
}


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_hpci_score_a_doit_prediction_file(tmp_path, mode):
    source = tmp_path / "pred_test.json"
    write_predictions(source)
    out = tmp_path / "out"
    proc = run_cli(str(source), "--mode", mode, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"{source}:5: invalid JSON" in proc.stderr
    assert f"{source}:6: generated_response" in proc.stderr
    table = pq.read_table(out / "pred_test.scores.parquet").to_pylist()
    by_line = {row["line"]: row for row in table}
    assert sorted(by_line) == sorted(EXPECTED[mode])
    for line, verdict in EXPECTED[mode].items():
        row = by_line[line]
        assert row["correct"] is verdict, (mode, line, row)
        assert row["mode"] == mode and row["idx"] == line - 1 and row["rule"]
        assert bool(row["error"]) is (verdict is None)
    assert by_line[1]["parsed"] == {"doit": "C", "doit-text": "D", "corrected": "B"}[mode]
    assert (
        by_line[1]["rule"]
        == {"doit": "logits", "doit-text": "first_letter", "corrected": "answer_phrase"}[mode]
    )
    if mode != "corrected":
        assert "comb(4, 5)" in by_line[4]["error"]
    summary = json.loads((out / "pred_test.summary.json").read_text(encoding="utf-8"))
    assert summary["mode"] == mode and summary["rows"] == 6 and len(summary["skipped"]) == 2
    abilities = {a["ability"]: a for a in summary["abilities"]}
    assert abilities["ethics"]["errors"] == (0 if mode == "corrected" else 1)
    assert abilities["history"]["accuracy_pct"] == (100.0 if mode == "corrected" else 0.0)
    assert "biology" in proc.stdout and "%" in proc.stdout


def test_hpci_score_user_errors_write_nothing(tmp_path):
    out = tmp_path / "out"
    missing = run_cli(str(tmp_path / "nope.json"), "--out", str(out))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "preds.txt").write_text("{}\n")
    wrong_type = run_cli(str(tmp_path / "preds.txt"), "--out", str(out))
    assert wrong_type.returncode == 2 and ".jsonl" in wrong_type.stderr
    bad_mode = run_cli(str(tmp_path / "preds.txt"), "--mode", "lenient", "--out", str(out))
    assert bad_mode.returncode == 2 and "doit-text" in bad_mode.stderr
    bad_ids = run_cli(str(tmp_path / "preds.txt"), "--letter-ids", "1,2", "--out", str(out))
    assert bad_ids.returncode == 2 and "--letter-ids" in bad_ids.stderr
    assert not out.exists()


def test_result_shards_are_rescored_and_a_five_letter_answer_is_an_error_row(tmp_path):
    shard = tmp_path / "part-000.parquet"
    rows = {
        "format": ["mc", "multi_select", "math", "weird"],
        "response": ["我选B", "ABCDE", "\\boxed{5.0}", "x"],
        "reference": ["B", "ABCDE", "5", "x"],
        "letter_logprobs": [None, None, None, None],  # stored without log-probs
        "candidate_ppl": [None, None, None, None],
        "ability": ["biology", "ethics", "math", "biology"],
        "item_index": [0, 1, 2, 3],
    }
    pq.write_table(pa.table(rows), shard)
    doit = score_files([shard], tmp_path / "doit", ScoreFilesConfig("doit"))[0]
    table = pq.read_table(doit.table).to_pylist()
    assert [r["correct"] for r in table] == [True, None, False]  # MC read by the text rule, not marked wrong
    assert doit.skipped == (
        f"{shard}:4: unknown question format 'weird'; valid formats: "
        "mc, true_false, cloze, multi_select, math, rank3",
    )
    corrected = pq.read_table(score_files([shard], tmp_path / "c", ScoreFilesConfig("corrected"))[0].table)
    assert corrected.column("correct").to_pylist() == [True, True, True]


def test_rescoring_rows_without_log_probs_uses_the_text_rule():
    s = score_evidence("mc", "我认为是C", "C", letter_logprobs=None, mode="doit")
    assert (s.parsed, s.correct, s.method) == ("C", True, "first_letter_no_logits")
    s = score_evidence("mc", "我认为是C", "C", letter_logprobs=[0.0, -1.0, -2.0, -3.0], mode="doit")
    assert (s.parsed, s.method) == ("A", "logits")
    s = score_evidence("multi_select", "ABCDE", "ABCDE", mode="doit")
    assert s.error and not s.correct  # never raises: the rescore carries on
