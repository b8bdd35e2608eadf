"""Provenance: which code and which libraries produced a file. One format for every writer (trial.json, result
rows, the report), so any number can be traced to the exact run.

    code_version()      `<package version>+git.<12-hex revision>[.dirty].code.<package hash>` from a checkout, or
                        `<package version>+code.<package hash>` from a code snapshot or an installed copy
    package_hash()      sha256 (16 hex) over the package's files: the name of a code snapshot
    library_versions()  {python, torch, transformers, tokenizers, accelerate, megatron-core, deepspeed, pyarrow,
                        numpy: version} for the libraries installed (absent ones omitted)
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import hpc_instruct

PACKAGE = Path(hpc_instruct.__file__).resolve().parent
LIBRARIES = ("torch", "transformers", "tokenizers", "accelerate", "megatron-core", "deepspeed", "vllm", "pyarrow",
             "numpy")


def package_digest(package, every_file):  # noqa: ANN001, ANN201 - also runs standalone in jobs (launch.snapshot)
    """sha256 (16 hex) over relative path and bytes of the package's files; compiled caches and links too when
    `every_file` (what a code snapshot must hold exactly)."""
    import hashlib
    from pathlib import Path

    package = Path(package)
    h = hashlib.sha256()
    for p in sorted(package.rglob("*")):
        rel = p.relative_to(package)
        if every_file and p.is_symlink():  # in a snapshot nothing is a link (copytree copies their content)
            content = b"symlink:" + str(p.readlink()).encode()
        elif not p.is_file() or not every_file and ("__pycache__" in rel.parts or p.suffix in (".pyc", ".pyo")):
            continue
        else:
            content = p.read_bytes()
        h.update(str(rel).encode() + b"\0" + content + b"\0")
    return h.hexdigest()[:16]


def package_hash(package: Path = PACKAGE) -> str:
    """The hash of the package's source files: the name of a code snapshot and part of `code_version()`."""
    return package_digest(package, every_file=False)


@functools.cache
def code_version() -> str:
    """See the module docstring; the git part only when the package runs from a tracked checkout."""
    revision = _git_revision(PACKAGE)
    code = package_hash(PACKAGE)
    if revision is None:
        return f"{hpc_instruct.__version__}+code.{code}"
    rev, dirty = revision
    return f"{hpc_instruct.__version__}+git.{rev}{'.dirty' if dirty else ''}.code.{code}"


@functools.cache
def library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def library_versions_json() -> str:
    """`library_versions()` as the canonical JSON string result rows carry."""
    return json.dumps(library_versions(), sort_keys=True)


def provenance() -> dict[str, object]:
    """What trial.json and the report record: code version and library versions."""
    return {"code_version": code_version(), "libraries": library_versions()}


def _git_revision(package: Path) -> tuple[str, bool] | None:
    """(12-hex revision, dirty) when `package` is tracked in a git checkout; None otherwise (a snapshot)."""
    def git(*args: str, timeout: float = 10) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=package, capture_output=True, text=True, timeout=timeout)

    try:
        rev = git("rev-parse", "--short=12", "HEAD")
        if rev.returncode != 0 or not rev.stdout.strip():
            return None
        if git("ls-files", "--error-unmatch", "__init__.py").returncode != 0:
            return None  # a copy inside some other repository (e.g. a study folder under git)
        dirty = git("diff", "--quiet", "HEAD", "--", ".", timeout=30).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return None
    return rev.stdout.strip(), dirty
