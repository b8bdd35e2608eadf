"""Content hashes: the identity of trials, eval tasks and mixtures.

An id is a sha256 over a canonical JSON form (sorted keys, no whitespace) of everything that determines a
result, so it is stable across runs, processes and key order, and changes when, and only when, something that
matters changes. Fields marked `identity=False` in the schema (how a run is laid out, not what it computes)
are left out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

# Bump when a stage's code changes what it produces (not for refactors): every affected id changes with it.
TRAIN_CODE_VERSION = "train-1"
EVAL_CODE_VERSION = "eval-1"


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def _default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return identity(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot hash {type(obj).__name__}")


def digest(obj: Any, length: int = 16) -> str:
    """Hex sha256 of the canonical form, shortened (16 hex = 64 bits: collisions need ~4e9 ids)."""
    return hashlib.sha256(canonical(obj).encode()).hexdigest()[:length]


def identity(obj: Any) -> Any:
    """A dataclass as a plain dict of its result-determining fields (recursively)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: identity(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.metadata.get("identity", True)}
    if isinstance(obj, (list, tuple)):
        return [identity(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): identity(v) for k, v in obj.items()}
    return obj
