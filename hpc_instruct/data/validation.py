"""Check every record of a set of data files before anything runs: the stages' parser, in parallel, cached.

The prepare stage reads training pools with `records.parse_jsonl`; the eval stage reads eval sets with the
same parser and then classifies each item (`evaluate.sets.classify`). A bad record found there stops a study
after every trial has trained. `validate_files` runs exactly those checks at planning time, on every record of
every file, and returns every problem (file:line, field, reason) at once, plus a digest of each record's
prompt so contamination between training pools and eval sets can be found (`contaminated_items`).

Speed: files are parsed in worker processes (one file per task, largest first), and each file's result is
cached under `<cache>/records/` keyed by its content hash, how it is read, and the code that checks it, so a
re-validate of unchanged files reads and hashes them but parses nothing. The path is not part of the key: the
same content at another path reuses the entry with the new path.

The eval-format check is passed in (`eval_check`) rather than imported, so this module knows nothing of the
evaluator; it must be a module-level function (worker processes receive it by reference).
Torch-free and pyarrow-free: runs on a login node.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import hpc_instruct
from hpc_instruct.atomic import atomic_path
from hpc_instruct.data.assets import cache_root
from hpc_instruct.data.contamination import PromptSite, find_prompt_collisions, prompt_digest
from hpc_instruct.data.records import EVAL, TRAIN, Issue, Sample, parse_jsonl

log = logging.getLogger(__name__)

EvalCheck = Callable[[Sample], Any]  # raises ValueError with the reason when an eval item cannot be asked
PARALLEL_MIN_BYTES = (
    1 << 20
)  # below this much unparsed data, starting worker processes costs more than it saves
CACHE_FORMAT = 1  # bump when the cache entry layout changes


@dataclass(frozen=True)
class DataFile:
    """One file to check, and how the stages read it."""

    path: Path
    split: str  # "full", "1000", "valid", "test", "dev", "synthetic": recorded in each Sample
    purpose: str  # records.TRAIN or records.EVAL: which role rules apply
    ability: str | None  # the ability the file name promises (`type` must match); None for the synthetic pool
    classify: bool = False  # also run `eval_check` on every item (eval sets the evaluator asks)

    def __post_init__(self) -> None:
        if self.purpose not in (TRAIN, EVAL):
            raise ValueError(f"purpose must be {TRAIN!r} or {EVAL!r}, got {self.purpose!r}")


@dataclass(frozen=True)
class FileCheck:
    """What checking one file found. `cached` tells whether it came from the cache instead of a parse."""

    file: DataFile
    sha256: str
    records: int  # records that parsed and passed every check
    issues: tuple[Issue, ...]
    prompts: tuple[tuple[int, str], ...]  # (line, prompt digest) of every record that parsed
    cached: bool = False

    def sites(self) -> list[PromptSite]:
        return [PromptSite(str(self.file.path), line, digest) for line, digest in self.prompts]


@dataclass(frozen=True)
class ValidationReport:
    """Every file's result, in the order the files were given."""

    files: tuple[FileCheck, ...]

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files)

    @property
    def issues(self) -> tuple[Issue, ...]:
        return tuple(i for f in self.files for i in f.issues)

    @property
    def parsed_files(self) -> int:
        """Files parsed in this call (the rest came from the cache); a re-validate of unchanged files: 0."""
        return sum(1 for f in self.files if not f.cached)

    @property
    def cached_files(self) -> int:
        return sum(1 for f in self.files if f.cached)

    def summary(self) -> str:
        return (
            f"{self.records} records in {len(self.files)} files checked "
            f"({self.parsed_files} parsed, {self.cached_files} from cache)"
        )


def validate_files(
    files: Sequence[DataFile],
    *,
    eval_check: EvalCheck | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    workers: int | None = None,
) -> ValidationReport:
    """Check every record of `files`; never raises for bad data (or an unreadable file): returns every problem.

    Args:
        eval_check: run on each parsed item of a file with `classify=True`; a ValueError is its problem.
        cache_dir: where results are kept; default `<hpc_instruct cache>/records` (`$HPC_INSTRUCT_CACHE`).
        use_cache: False parses everything and writes no cache entry.
        workers: worker processes for the files to parse; default the CPUs this process may use.
    """
    cache = (cache_dir or cache_root() / "records") if use_cache else None
    check_name = f"{eval_check.__module__}.{eval_check.__qualname__}" if eval_check else ""
    results: list[FileCheck | None] = [None] * len(files)
    todo: list[int] = []
    for i, f in enumerate(files):
        if cache is not None:
            try:
                sha = hashlib.sha256(f.path.read_bytes()).hexdigest()
            except OSError:  # unreadable: check_file reports it as the file's problem
                todo.append(i)
                continue
            results[i] = _load_entry(cache / _entry_name(f, sha, check_name), f, sha)
        if results[i] is None:
            todo.append(i)

    todo.sort(key=lambda i: -_size(files[i].path))  # the largest first: the pool finishes together
    for i, check in zip(todo, _run(files, todo, eval_check, workers), strict=True):
        results[i] = check
        if cache is not None and check.sha256:
            # The worker hashed what it parsed; a file changed since the lookup is stored under its new hash.
            _store_entry(cache / _entry_name(files[i], check.sha256, check_name), check)
    return ValidationReport(tuple(r for r in results if r is not None))


def contaminated_items(training: Iterable[FileCheck], held_out: Iterable[FileCheck]) -> tuple[Issue, ...]:
    """One Issue per held-out record whose prompt also occurs in a training file, naming both places."""
    held_out = list(held_out)
    split_of = {str(c.file.path): c.file.split for c in held_out}
    found = find_prompt_collisions(
        (s for c in training for s in c.sites()), (s for c in held_out for s in c.sites())
    )
    return tuple(
        Issue(
            c.held_out.path,
            c.held_out.line,
            "messages",
            f"{split_of[c.held_out.path]} item has the same prompt as training data at {c.where()}",
        )
        for c in found
    )


# -- parsing (runs in worker processes) ----------------------------------------------------------------------
def check_file(file: DataFile, eval_check: EvalCheck | None = None) -> FileCheck:
    """Parse one file with the stages' parser and, for eval sets, their format check."""
    path = str(file.path)
    try:
        data = file.path.read_bytes()
    except OSError as e:
        return FileCheck(file, "", 0, (Issue(path, 0, "-", f"cannot read the file: {e.strerror or e}"),), ())
    samples, issues = parse_jsonl(
        data, path=path, split=file.split, purpose=file.purpose, expected_ability=file.ability
    )
    good = len(samples)
    if file.classify and eval_check is not None:
        for s in samples:
            try:
                eval_check(s)
            except ValueError as e:
                issues.append(Issue(path, s.line, "messages", str(e)))
                good -= 1
    issues.sort(key=lambda i: i.line)
    prompts = tuple((s.line, prompt_digest(s.prompt_key)) for s in samples)
    return FileCheck(file, hashlib.sha256(data).hexdigest(), good, tuple(issues), prompts)


def _run(
    files: Sequence[DataFile], todo: list[int], eval_check: EvalCheck | None, workers: int | None
) -> Iterable[FileCheck]:
    workers = min(workers or _cpus(), len(todo))
    size = sum(_size(files[i].path) for i in todo)
    if workers <= 1 or size < PARALLEL_MIN_BYTES:
        return [check_file(files[i], eval_check) for i in todo]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(check_file, [files[i] for i in todo], [eval_check] * len(todo)))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# -- the cache -----------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over the package's Python sources: a cache entry is valid only for the code that wrote it.

    The parser, the eval-format check and what they call (ability registry, answer parsers) live in several
    modules; hashing them all (a few milliseconds) is simpler and safer than listing them.
    """
    package = Path(hpc_instruct.__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(package.rglob("*.py")):
        h.update(p.relative_to(package).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _entry_name(f: DataFile, sha256: str, check_name: str) -> str:
    how = [
        CACHE_FORMAT,
        code_fingerprint(),
        sha256,
        f.split,
        f.purpose,
        f.ability,
        check_name if f.classify else "",
    ]
    key = hashlib.sha256(json.dumps(how).encode()).hexdigest()
    return f"{key[:2]}/{key}.json"


def _load_entry(path: Path, f: DataFile, sha256: str) -> FileCheck | None:
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        issues = tuple(Issue(str(f.path), line, field, problem) for line, field, problem in entry["issues"])
        prompts = tuple((line, digest) for line, digest in entry["prompts"])
        return FileCheck(f, sha256, entry["records"], issues, prompts, cached=True)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:  # a torn or foreign entry: parse the file again
        log.warning("ignoring unreadable validation cache entry %s: %s", path, e)
        return None


def _store_entry(path: Path, check: FileCheck) -> None:
    entry = {
        "records": check.records,
        "issues": [[i.line, i.field, i.problem] for i in check.issues],
        "prompts": [list(p) for p in check.prompts],
    }
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(entry, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    except OSError as e:  # a read-only or full cache slows the next validate; it never fails this one
        log.warning("cannot write the validation cache entry %s: %s", path, e)
