"""Read a data set in the DoIT release layout, unchanged, into validated `Sample`s with pinned file hashes.

    <root>/curated/full/{ability}_full.json        training pools (all curated data)
    <root>/curated/1000/{ability}_1000.json        the release's 1000-per-ability pools
    <root>/curated/valid/{ability}_valid.json      ~100 validation items per ability
    <root>/curated/test/{ability}_test.json        ~100 test items per ability
    <root>/curated/test/ceval_*.json               out-of-domain C-Eval sets (5-shot)
    <root>/synthetic/40960/general_instruction_gpt4_41k.json   GPT-4 synthetic pool, not labelled by ability

Every file is read and checked before anything is returned; all problems of all files come back in one
`DataError`. Each file's sha256 is recorded so a study can pin the exact data revision (the DoIT files were
re-uploaded after release). Torch-free: runs on a login node.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from hpc_instruct.data.records import EVAL, TRAIN, DataError, Issue, Sample, parse_jsonl

POOL_SPLITS = ("full", "1000")
EVAL_SPLITS = ("valid", "test")
SYNTHETIC = "synthetic"  # split name and pool key of the synthetic pool
SYNTHETIC_FILE = "synthetic/40960/general_instruction_gpt4_41k.json"
CEVAL_PREFIX = "ceval_"


@dataclass(frozen=True)
class SourceFile:
    """One file that was read: where, which split and ability, how many records, and its content hash."""

    path: str  # relative to the data root, POSIX separators
    split: str
    ability: str  # SYNTHETIC for the synthetic pool
    records: int
    sha256: str


@dataclass(frozen=True)
class DoitData:
    """A validated data set: samples by split and ability, plus the files they came from.

    `samples[split][ability]` holds the records in file order; `split` is one of "full", "1000", "valid",
    "test" or "synthetic" (whose only ability key is "synthetic"). Out-of-domain sets live under "test" with
    their `ceval_*` keys.
    """

    root: Path
    files: tuple[SourceFile, ...]
    samples: dict[str, dict[str, tuple[Sample, ...]]] = field(repr=False)

    def abilities(self, split: str = "full") -> tuple[str, ...]:
        """Ability keys with data in `split`, sorted (C-Eval sets excluded unless split is "test")."""
        return tuple(sorted(self.samples.get(split, {})))

    def pool(self, ability: str, split: str = "full") -> tuple[Sample, ...]:
        """The training pool of one ability (or the synthetic pool when ability is "synthetic")."""
        if ability == SYNTHETIC:
            split = SYNTHETIC
        try:
            return self.samples[split][ability]
        except KeyError:
            have = ", ".join(self.abilities(split)) or "none"
            raise DataError([Issue(str(self.root), 0, ability, f"no {split!r} data for this ability "
                                                               f"(have: {have})")]) from None

    def file_for(self, ability: str, split: str) -> SourceFile | None:
        for f in self.files:
            if f.ability == ability and f.split == split:
                return f
        return None

    @property
    def fingerprint(self) -> str:
        """sha256 over every file's path and hash: one string that pins the whole data revision."""
        lines = sorted(f"{f.path}:{f.sha256}" for f in self.files)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ability_of(path: Path, split: str) -> str | None:
    """`biology_full.json` -> "biology"; `ceval_physician_test.json` -> "ceval_physician"; else None."""
    stem = path.stem
    if split == "test" and stem.startswith(CEVAL_PREFIX):
        return stem.removesuffix("_test").removesuffix("_fshot")
    suffix = f"_{split}"
    return stem.removesuffix(suffix) if stem.endswith(suffix) and len(stem) > len(suffix) else None


def read_doit(root: str | Path, *, splits: tuple[str, ...] = POOL_SPLITS + EVAL_SPLITS + (SYNTHETIC,),
              abilities: tuple[str, ...] | None = None) -> DoitData:
    """Read and validate every file of `splits` under `root`; raise one `DataError` listing all problems.

    Args:
        splits: which parts to read; a split whose folder (or, for "synthetic", file) is absent is skipped,
            but at least one curated pool must exist.
        abilities: read only these abilities (C-Eval sets are kept when "test" is read); None reads all.
    """
    root = Path(root)
    issues: list[Issue] = []
    files: list[SourceFile] = []
    samples: dict[str, dict[str, tuple[Sample, ...]]] = {}
    if not root.is_dir():
        raise DataError([Issue(str(root), 0, "-", "data folder not found")], context=str(root))

    jobs: list[tuple[Path, str, str | None]] = []  # (file, split, expected ability)
    for split in splits:
        if split == SYNTHETIC:
            if (root / SYNTHETIC_FILE).is_file():
                jobs.append((root / SYNTHETIC_FILE, SYNTHETIC, None))
            continue
        folder = root / "curated" / split
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            ability = _ability_of(path, split)
            if ability is None:
                issues.append(Issue(_rel(path, root), 0, "-", f"unexpected file name in curated/{split}/; "
                                                             f"expected {{ability}}_{split}.json"))
                continue
            keep_ceval = split == "test" and ability.startswith(CEVAL_PREFIX)
            if abilities is not None and ability not in abilities and not keep_ceval:
                continue
            jobs.append((path, split, ability))
    if not any(s in POOL_SPLITS for _, s, _ in jobs) and any(s in POOL_SPLITS for s in splits):
        issues.append(Issue(str(root), 0, "-", "no curated pool files found; expected curated/full/{ability}_full"
                                               ".json or curated/1000/{ability}_1000.json (the DoIT layout)"))

    for path, split, ability in jobs:
        data = path.read_bytes()
        rel = _rel(path, root)
        purpose = EVAL if split in EVAL_SPLITS else TRAIN
        got, bad = parse_jsonl(data, path=rel, split=split, purpose=purpose,
                               expected_ability=ability)
        issues.extend(bad)
        key = ability if ability is not None else SYNTHETIC
        if key in samples.get(split, {}):
            other = next(f.path for f in files if f.split == split and f.ability == key)
            issues.append(Issue(rel, 0, "-", f"holds {key!r} {split} data, as {other} does; keep one file"))
        samples.setdefault(split, {})[key] = tuple(got)
        files.append(SourceFile(rel, split, key, len(got), hashlib.sha256(data).hexdigest()))
    if issues:
        raise DataError(issues, context=f"data under {root}")
    return DoitData(root, tuple(files), samples)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
