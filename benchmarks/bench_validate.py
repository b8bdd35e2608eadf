"""Record validation speed: `hpci validate` on a DoIT-sized data folder, cold and cached, vs `datasets`.

    .venv/bin/python benchmarks/bench_validate.py

Generates, in a temporary folder, the DoIT layout with DoIT's sizes: ten abilities, 43,490 records (each
ability's registry total: the pool plus 100 valid and 100 test items), every question format (MC, true/false,
cloze, multi-select, math with `answer`, rank-3 `choices`), multi-turn dialogues (understanding, role_play), and
content lengths from the registry's mean tokens per ability (about 1.3 CJK characters per token).

Side by side, on the same files:
- `datasets`: `datasets.load_dataset("json")`, one call per ability (its files as splits; one schema per
  ability), into an empty HF cache: what reading the files costs with the usual tool, checking nothing.
- cold: `hpci validate` (a fresh process, an empty validation cache): recipe, line counts, every record parsed
  and checked as the stages would, eval items classified, contamination.
- cached: `hpci validate` again: the files are read and hashed, nothing is parsed.
The OS page cache is warm for all three (the files were just written). `vs_datasets` = cold_s / datasets_s
(below 1: validating every record costs less than merely loading the files with `datasets`). Wall seconds are
the figures; CPU seconds (workers included) are printed beside them because a shared machine stretches wall time.
"""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpc_instruct.data.abilities import ABILITY_KEYS, REGISTRY
from hpc_instruct.data.records import dumps_record

ROOT = Path(__file__).resolve().parents[1]
EVAL_ITEMS = 100  # per ability and split, as in DoIT
CHARS_PER_TOKEN = 1.3
LETTERS = "ABCD"

RECIPE = """\
study: {{name: bench-validate, output_root: {out}}}
models:
  - {{name: m, size: tiny, device: cpu, micro_batch: 8, global_batch: 8}}
data: {{root: {root}, synthetic_pool: null}}
sweep:
  seeds: [0]
  curated: {{samples_per_ability: [1000], cap: true}}
training: {{epochs: 1, precision: fp32, max_length: 256}}
"""


class Text:
    """Random CJK text, cut from one long string (fast enough for 60 MB of records)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        chars = [chr(c) for c in range(0x4E00, 0x9FA6)]
        self.pool = "".join(rng.choices(chars + ["，", "。"] * 400, k=1 << 20))

    def __call__(self, n: int) -> str:
        n = max(4, int(n * self.rng.uniform(0.5, 1.5)))
        start = self.rng.randrange(len(self.pool) - n)
        return self.pool[start : start + n]


def record(ability: str, idx: int, split: str, text: Text, rng: random.Random) -> dict:
    """One valid record of `ability` whose prompt is unique (its split and idx lead it)."""
    n = int(REGISTRY[ability].mean_tokens * CHARS_PER_TOKEN)
    head = f"[{split} {idx}] "
    user = lambda body: {"role": "user", "content": head + body}  # noqa: E731
    bot = lambda body: {"role": "assistant", "content": body}  # noqa: E731
    options = "\n".join(f"{c}. {text(12)}" for c in LETTERS)
    rec: dict = {"idx": idx, "type": ability, "question_format": 0}
    if ability in ("biology", "reasoning") or (ability in ("history", "chinese") and idx % 2 == 0):
        rec["messages"] = [user(f"{text(n - 60)}\n{options}\n答案："), bot(rng.choice(LETTERS))]
    elif ability == "history":
        rec["messages"] = [user(f"判断正误：{text(n)}"), bot(rng.choice(["正确", "错误"]))]
    elif ability == "chinese":
        rec["messages"] = [user(f"填空：{text(n)}（ ）"), bot(text(3).replace("，", "").replace("。", "") or "春天")]
    elif ability == "understanding":  # a dialogue of two questions about one conversation: multi-turn
        rec["messages"] = [user(f"{text(n // 2)}\n{options}\n答案："), bot(rng.choice(LETTERS)),
                           user(f"{text(n // 4)}\n{options}\n答案："), bot(rng.choice(LETTERS))]
    elif ability == "ethics":
        rec["messages"] = [user(f"{text(n - 60)}\n{options}\n答案："), bot("".join(sorted(rng.sample(LETTERS, 2))))]
    elif ability == "math":
        answer = str(rng.randint(1, 999))
        rec["messages"] = [user(text(n // 3)), bot(f"{text(2 * n // 3)}\n所以答案是 $\\boxed{{{answer}}}$。")]
        rec["answer"] = answer
    else:  # code, creative_writing, role_play: rank three candidates, the reference first
        turns = 3 if ability == "role_play" else 1
        messages = []
        for _ in range(turns):
            messages += [user(text(n // (4 * turns))), bot(text(n // (4 * turns)))]
        rec["messages"] = messages
        rec["question_format"] = 1
        rec["choices"] = [messages[-1]["content"], text(n // 4) + "甲", text(n // 4) + "乙"]
    return rec


def write_folder(root: Path, seed: int = 0) -> int:
    """The DoIT layout under `root`; returns the number of records written."""
    rng = random.Random(seed)
    text = Text(rng)
    total = 0
    for ability in ABILITY_KEYS:
        sizes = {"full": REGISTRY[ability].total - 2 * EVAL_ITEMS, "valid": EVAL_ITEMS, "test": EVAL_ITEMS}
        for split, n in sizes.items():
            path = root / "curated" / split / f"{ability}_{split}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = [dumps_record(record(ability, i, split, text, rng)) for i in range(n)]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            total += n
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def hpci_validate(recipe: Path, cache: Path) -> tuple[float, float, str]:
    """(wall s, CPU s of the process and its workers, stdout) of one `hpci validate` in a fresh process."""
    env = os.environ | {"HPC_INSTRUCT_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    t, cpu = time.perf_counter(), children_cpu()
    out = subprocess.run([sys.executable, "-m", "hpc_instruct.cli", "validate", str(recipe)], env=env,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"hpci validate failed:\n{out.stdout}{out.stderr}")
    return seconds, children_cpu() - cpu, out.stdout.strip()


def load_with_datasets(root: Path, hf_cache: Path) -> tuple[float, float, int]:
    """(wall s, CPU s, rows) of loading every file with `datasets.load_dataset("json")` into an empty cache."""
    import datasets

    datasets.disable_progress_bars()
    t, cpu = time.perf_counter(), time.process_time()
    rows = 0
    for ability in ABILITY_KEYS:
        files = {s: str(root / "curated" / s / f"{ability}_{s}.json") for s in ("full", "valid", "test")}
        loaded = datasets.load_dataset("json", data_files=files, cache_dir=str(hf_cache / ability))
        rows += sum(len(part) for part in loaded.values())
    return time.perf_counter() - t, time.process_time() - cpu, rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        t = time.perf_counter()
        records = write_folder(tmp / "data")
        size = sum(p.stat().st_size for p in (tmp / "data").rglob("*.json"))
        print(f"generated {records} records in 30 files, {size / 1e6:.1f} MB, in {time.perf_counter() - t:.1f} s")
        recipe = tmp / "bench.yaml"
        recipe.write_text(RECIPE.format(out=tmp / "studies", root=tmp / "data"))

        datasets_s, datasets_cpu, rows = load_with_datasets(tmp / "data", tmp / "hf-cache")
        assert rows == records, (rows, records)
        cold_s, cold_cpu, cold_out = hpci_validate(recipe, tmp / "cache")
        cached_s, cached_cpu, cached_out = hpci_validate(recipe, tmp / "cache")
        assert f"data: {records} records in 30 files checked (30 parsed, 0 from cache)" in cold_out, cold_out
        assert "(0 parsed, 30 from cache)" in cached_out, cached_out
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"{'':32}{'wall s':>8}{'vs datasets':>13}{'CPU s':>8}")
        for name, wall, cpu in [("datasets.load_dataset('json')", datasets_s, datasets_cpu),
                                ("hpci validate, cold", cold_s, cold_cpu),
                                ("hpci validate, cached", cached_s, cached_cpu)]:
            print(f"{name:32}{wall:8.2f}{wall / datasets_s:12.2f}x{cpu:8.2f}")
        print(f"({cpus} CPUs; {cold_out.split('; data: ')[-1]})")
    print(f"RESULT bench_validate records={records} cold_s={cold_s:.2f} cached_s={cached_s:.2f} "
          f"vs_datasets={cold_s / datasets_s:.2f}")


if __name__ == "__main__":
    main()
