"""Write the generated ten-ability study to disk in the DoIT release layout (see the package docstring)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from hpc_instruct.data.abilities import ABILITY_KEYS
from hpc_instruct.data.demo.corpus import corpus_documents
from hpc_instruct.data.demo.dialogue import make_role_play, make_understanding
from hpc_instruct.data.demo.exams import make_biology, make_chinese, make_ethics, make_history
from hpc_instruct.data.demo.knowledge import history_table
from hpc_instruct.data.demo.lexicon import Item
from hpc_instruct.data.demo.out_of_domain import CEVAL_SETS, CEVAL_TYPE_SUFFIX, make_few_shot
from hpc_instruct.data.demo.problems import make_code, make_creative_writing, make_math, make_reasoning
from hpc_instruct.data.demo.synthetic import SYNTHETIC_TYPE, make_synthetic
from hpc_instruct.data.doit_reader import SYNTHETIC_FILE
from hpc_instruct.data.records import GENERATE, RANK3, USER, dumps_record, normalise_text
from hpc_instruct.errors import UserError

GENERATOR_VERSION = "demo-4"  # bump whenever the same arguments would write different bytes
DEMO_MANIFEST = "demo.json"
PRETRAIN_FILE = "pretrain/corpus.jsonl"
RANK3_ABILITIES = ("code", "creative_writing", "role_play")
MAX_MISSES_IN_A_ROW = 5000  # with 5% of a task's prompts still new, 5000 repeats in a row has odds ~1e-111

Generator = Callable[[random.Random], Item]

# The pace each demo ability is designed to have (see the package docstring), for tests and reports that check
# a miniature study shows abilities growing at different speeds.
INTENDED_PACE = {
    "ethics": "fast", "role_play": "fast", "creative_writing": "fast",
    "biology": "moderate", "understanding": "slow", "chinese": "moderate",
    "history": "moderate", "code": "slow", "math": "slow",
    "reasoning": "slow",
}


def ability_generators(seed: int) -> dict[str, Generator]:
    """The ten curated task generators (`rng -> Item`); history's fact table depends on `seed`."""
    return {
        "biology": make_biology(),
        "history": make_history(history_table(seed)),
        "code": make_code(),
        "creative_writing": make_creative_writing(),
        "chinese": make_chinese(),
        "understanding": make_understanding(),
        "role_play": make_role_play(),
        "reasoning": make_reasoning(),
        "math": make_math(),
        "ethics": make_ethics(),
    }


def prompt_key(item: Item) -> str:
    """Same normalisation as `Sample.prompt_key`: the user turns before the final (reference) turn."""
    return "\n".join(normalise_text(c) for r, c in item.messages[:-1] if r == USER)


def draw_unique(gen: Generator, rng: random.Random, n: int, seen: set[str], what: str) -> list[Item]:
    """`n` items whose prompts are new to `seen` (which is updated): no duplicate and no eval prompt in a pool."""
    out: list[Item] = []
    misses_in_a_row = 0
    while len(out) < n:
        item = gen(rng)
        key = prompt_key(item)
        if key in seen:
            misses_in_a_row += 1
            if misses_in_a_row > MAX_MISSES_IN_A_ROW:  # the task's prompt space is (nearly) used up
                raise UserError(f"demo {what}: could not find {n} distinct prompts (got {len(out)}); "
                                "ask for a smaller pool")
            continue
        misses_in_a_row = 0
        seen.add(key)
        out.append(item)
    return out


def record(item: Item, ability: str, idx: int) -> dict:
    """The DoIT JSON object of a generated item."""
    rec: dict = {"messages": [{"role": r, "content": c} for r, c in item.messages], "idx": idx, "type": ability,
                 "question_format": RANK3 if item.choices is not None else GENERATE}
    if item.choices is not None:
        rec["choices"] = list(item.choices)
    if item.answer is not None:
        rec["answer"] = item.answer
    return rec


def _jsonl(records: Iterable[dict]) -> bytes:
    return "".join(dumps_record(r) + "\n" for r in records).encode("utf-8")


def build_demo_files(seed: int, pool_sizes: Mapping[str, int], synthetic_size: int, eval_size: int,
                     ceval_size: int, pretrain_corpus: bool) -> dict[str, bytes]:
    """Every file of the demo study, by path relative to the study root. Pure: same arguments, same bytes.

    Each ability has its own random streams (seed, ability, split), so a larger pool extends a smaller one
    (same seed: the 500-item pool is the first 500 lines of the 1000-item pool).
    """
    files: dict[str, bytes] = {}
    generators = ability_generators(seed)
    held_out: set[str] = set()
    for ability in ABILITY_KEYS:
        gen = generators[ability]
        seen: set[str] = set()
        rows: dict[str, list[dict]] = {}
        start = 0
        for split in ("test", "valid", "full"):
            n = eval_size if split != "full" else pool_sizes[ability]
            rng = random.Random(f"demo:{seed}:{ability}:{split}")
            items = draw_unique(gen, rng, n, seen, f"{ability}/{split}")
            rows[split] = [record(it, ability, start + i) for i, it in enumerate(items)]
            start += n
            if split != "full":
                held_out |= {prompt_key(it) for it in items}
        rows["1000"] = rows["full"][:1000]
        for split, recs in rows.items():
            files[f"curated/{split}/{ability}_{split}.json"] = _jsonl(recs)
    for name, base in CEVAL_SETS.items():
        rng = random.Random(f"demo:{seed}:{name}:test")
        items = draw_unique(make_few_shot(base), rng, ceval_size, set(), name)
        files[f"curated/test/{name}_test.json"] = _jsonl(record(it, name + CEVAL_TYPE_SUFFIX, i)
                                                         for i, it in enumerate(items))
    if synthetic_size:
        rng = random.Random(f"demo:{seed}:synthetic")
        items = draw_unique(make_synthetic(generators), rng, synthetic_size, set(held_out), "synthetic")
        files[SYNTHETIC_FILE] = _jsonl(record(it, SYNTHETIC_TYPE, i) for i, it in enumerate(items))
    if pretrain_corpus:
        docs = corpus_documents(history_table(seed), seed)
        files[PRETRAIN_FILE] = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs).encode()
    return files


def pool_sizes_of(pool_size: int | Mapping[str, int]) -> dict[str, int]:
    """One size for every ability, or a mapping (with an optional "default") filled in for all ten."""
    if isinstance(pool_size, int):
        sizes = {a: pool_size for a in ABILITY_KEYS}
    else:
        unknown = set(pool_size) - set(ABILITY_KEYS) - {"default"}
        if unknown:
            raise UserError(f"pool_size names unknown abilities {sorted(unknown)}; known: {', '.join(ABILITY_KEYS)}")
        sizes = {a: pool_size.get(a, pool_size.get("default", 1000)) for a in ABILITY_KEYS}
    bad = {a: n for a, n in sizes.items() if not isinstance(n, int) or isinstance(n, bool) or n < 1}
    if bad:
        raise UserError(f"pool sizes must be positive integers, got {bad}")
    return sizes


def write_demo_study(out_dir: str | Path, seed: int = 0, pool_size: int | Mapping[str, int] = 1000,
                     synthetic_size: int = 40960, eval_size: int = 100, ceval_size: int = 40,
                     pretrain_corpus: bool = True, overwrite: bool = False) -> Path:
    """Generate the miniature study into `out_dir` (DoIT layout) and return `out_dir`.

    The folder is assembled under a temporary name and renamed into place. If `out_dir` already holds a demo
    written with the same arguments and generator version, nothing is written (a no-op); if it holds
    anything else, this fails unless `overwrite`.

    Args:
        pool_size: training items per ability, or a mapping ability -> size (key "default" for the rest).
        synthetic_size: items in `synthetic/40960/general_instruction_gpt4_41k.json` (0: no synthetic pool).
        eval_size: items per ability in each of valid and test.
        ceval_size: items in each of the three out-of-domain sets.
        pretrain_corpus: also write `pretrain/corpus.jsonl` (the world's facts as sentences, for a tiny base model).
    """
    out_dir = Path(out_dir)
    params = {"generator": "hpc_instruct.data.demo", "version": GENERATOR_VERSION, "seed": seed,
              "pool_sizes": pool_sizes_of(pool_size), "synthetic_size": synthetic_size, "eval_size": eval_size,
              "ceval_size": ceval_size, "pretrain_corpus": pretrain_corpus}
    if not isinstance(seed, int) or min(synthetic_size, eval_size - 1, ceval_size - 1) < 0:
        raise UserError("seed must be an integer, synthetic_size >= 0, eval_size and ceval_size >= 1")
    existing = out_dir / DEMO_MANIFEST
    if existing.is_file():
        old = json.loads(existing.read_text())
        if {k: old.get(k) for k in params} == params:
            return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"{out_dir} is not empty and holds no demo written with these settings; "
                        "choose another folder or pass overwrite=True")
    files = build_demo_files(seed, params["pool_sizes"], synthetic_size, eval_size, ceval_size, pretrain_corpus)
    manifest = dict(params, files={p: hashlib.sha256(b).hexdigest() for p, b in sorted(files.items())})
    files[DEMO_MANIFEST] = (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".tmp-{out_dir.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
