"""Atomic files and completion markers: a killed job never leaves a half-written file that anyone reads.

Every file others read is written to a temporary name in the same directory and renamed into place (rename is
atomic on POSIX filesystems, including Lustre/GPFS within one directory). A *marker* next to an output records
the content hash of the task that produced it; readers trust an output only when its marker matches the id they
expect, so stale outputs from an older recipe are redone, never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MARKER_SUFFIX = ".done"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private files (0600/0700); study files live on a shared filesystem and must be
# readable by the group as any normally created file would be.
FILE_MODE = 0o666 & ~_umask()
DIR_MODE = 0o777 & ~_umask()


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success rename it into place, on failure remove it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, FILE_MODE)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to `target`; on success it replaces `target` as a whole."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, DIR_MODE)
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old)  # a name of our own: another writer's `old` is never ours to replace
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, data: Any) -> None:
    write_text(target, json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def marker_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + MARKER_SUFFIX)


def write_marker(output: str | os.PathLike, task_id: str, **facts: Any) -> None:
    """Declare `output` complete for `task_id` (written after the output itself is in place)."""
    write_json(marker_path(output), {"id": task_id, **facts})


def read_marker(output: str | os.PathLike) -> dict[str, Any] | None:
    try:
        return json.loads(marker_path(output).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_done(output: str | os.PathLike, task_id: str) -> bool:
    """True when `output` exists, its marker names `task_id` (a stale or partial output is not done) and, when
    the marker records the output's sha256, the file still has that content (a damaged file is not done)."""
    marker = read_marker(output)
    return (marker is not None and marker.get("id") == task_id and Path(output).exists()
            and content_problem(output, marker) is None)


def content_problem(output: str | os.PathLike, marker: dict[str, Any] | None = None) -> str | None:
    """Why `output` does not match the sha256 its marker records, or None (also when none is recorded).

    A flipped bit in a Parquet shard can decode without error and silently change scores; the hash catches it.
    """
    marker = read_marker(output) if marker is None else marker
    expected = (marker or {}).get("sha256")
    if not expected or not Path(output).is_file():
        return None
    actual = file_sha256(output)
    if actual != expected:
        return f"content does not match its marker's sha256 ({actual[:12]}... != {str(expected)[:12]}...)"
    return None


_HASHES: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, remembered per (path, inode, size, mtime) so repeated status checks read it once."""
    st = os.stat(path)
    key = (os.fspath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]
