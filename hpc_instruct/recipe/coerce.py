"""Turning a located YAML tree into schema dataclasses, collecting every problem on the way.

One generic walker over dataclass fields and their type hints (str, int, float, bool, Literal, X | None,
tuple[X, ...], tuple[X, Y], dict[str, X], nested dataclasses). Unknown keys get the nearest valid key as a
suggestion, or the section where a key of that name does exist ("'lr' belongs under 'training'").
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from typing import Any, Literal, get_args, get_origin

from hpc_instruct.errors import Problem
from hpc_instruct.recipe.source import KeyPath, Tree, format_path

_FLOAT_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class _Invalid:
    """Sentinel for a value that failed validation (its problem is already recorded)."""


INVALID = _Invalid()


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def describe(tp: Any) -> str:
    """A type as a researcher reads it: 'an integer', 'one of linear, cosine', 'a list of integers'."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [describe(a) for a in args if a is not type(None)]
        return " or ".join(parts)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(describe(args[0]))}"
        return f"a list of {len(args)} values"
    if origin is dict:
        return f"a mapping of names to {_plural(describe(args[1]))}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _plural(text: str) -> str:
    for article in ("an ", "a "):
        if text.startswith(article):
            text = text[len(article):]
            return text + ("s" if not text.endswith("s") else "")
    return text


class Builder:
    """Builds one dataclass instance from a Tree, recording problems instead of raising on the first."""

    def __init__(self, tree: Tree, root_cls: type):
        self.tree = tree
        self.root_cls = root_cls
        self.problems: list[Problem] = []

    def problem(self, path: KeyPath, message: str, suggestion: str = "") -> None:
        self.problems.append(Problem(self.tree.where(path), format_path(path), message, suggestion))

    def build(self) -> Any:
        return self.value(self.root_cls, self.tree.data, ())

    # -- dispatch -------------------------------------------------------------------------------------------
    def value(self, tp: Any, raw: Any, path: KeyPath) -> Any:
        origin, args = get_origin(tp), get_args(tp)
        if origin in (typing.Union, types.UnionType):
            return self._union(args, raw, path)
        if dataclasses.is_dataclass(tp):
            return self._dataclass(tp, raw, path)
        if origin is tuple:
            return self._tuple(args, raw, path)
        if origin is dict:
            return self._dict(args, raw, path)
        if origin is Literal:
            if raw in args and not (isinstance(raw, bool) and True not in args and False not in args):
                return raw
            close = difflib.get_close_matches(str(raw), [str(a) for a in args], n=1)
            self.problem(path, f"expected {describe(tp)}, got {raw!r}", f"did you mean {close[0]!r}?" if close else "")
            return INVALID
        return self._scalar(tp, raw, path)

    def _scalar(self, tp: type, raw: Any, path: KeyPath) -> Any:
        if isinstance(raw, float) and not math.isfinite(raw) and tp in (int, float):
            self.problem(path, f"expected {describe(tp)}, got {raw!r}", "NaN and infinities are not numbers a recipe can use")
            return INVALID
        if isinstance(raw, str) and "\x00" in raw:
            self.problem(path, f"expected {describe(tp)}, got text with a NUL character", "remove the \\0")
            return INVALID
        if tp is bool and isinstance(raw, bool):
            return raw
        if tp is int and isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if tp is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        if tp is float and isinstance(raw, str) and _FLOAT_TEXT.match(raw.strip()):
            return float(raw)  # YAML 1.1 reads `1e-5` (no dot) as a string; accept what a person meant
        if tp is str and isinstance(raw, str):
            return raw
        if tp is str and isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return str(raw)  # e.g. `revision: 20231030`
        self.problem(path, f"expected {describe(tp)}, got {_show(raw)}")
        return INVALID

    def _union(self, args: tuple[Any, ...], raw: Any, path: KeyPath) -> Any:
        if raw is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return self.value(options[0], raw, path)
        for option in options:  # first option that accepts the value without complaint
            probe = Builder(self.tree, self.root_cls)
            result = probe.value(option, raw, path)
            if not probe.problems:
                return result
        self.problem(path, f"expected {' or '.join(describe(o) for o in options)}, got {_show(raw)}")
        return INVALID

    def _tuple(self, args: tuple[Any, ...], raw: Any, path: KeyPath) -> Any:
        if not isinstance(raw, list):
            if len(args) == 2 and args[1] is Ellipsis and raw is not None and not isinstance(raw, dict):
                raw = [raw]  # a single value where a list is expected: `seeds: 0` means `seeds: [0]`
            else:
                self.problem(path, f"expected {describe(tuple[args])}, got {_show(raw)}")
                return INVALID
        if len(args) == 2 and args[1] is Ellipsis:
            items = tuple(self.value(args[0], item, path + (i,)) for i, item in enumerate(raw))
        else:
            if len(raw) != len(args):
                self.problem(path, f"expected a list of {len(args)} values, got {len(raw)}")
                return INVALID
            items = tuple(self.value(t, item, path + (i,)) for i, (t, item) in enumerate(zip(args, raw, strict=True)))
        return INVALID if any(i is INVALID for i in items) else items

    def _dict(self, args: tuple[Any, ...], raw: Any, path: KeyPath) -> Any:
        if not isinstance(raw, dict):
            self.problem(path, f"expected {describe(dict[args])}, got {_show(raw)}")
            return INVALID
        out = {str(k): self.value(args[1], v, path + (str(k),)) for k, v in raw.items()}
        return INVALID if any(v is INVALID for v in out.values()) else out

    def _dataclass(self, cls: type, raw: Any, path: KeyPath) -> Any:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.problem(path, f"expected a mapping with keys {', '.join(f.name for f in dataclasses.fields(cls))}, got {_show(raw)}")
            return INVALID
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in raw:
            if key not in fields:
                self.problem(path + (key,), "unknown key", self.suggest(key, list(fields), path))
        kwargs: dict[str, Any] = {}
        bad = False
        for name, fld in fields.items():
            if name not in raw:
                if fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
                    self.problem(path + (name,), f"missing required key ({describe(hints(cls)[name])})")
                    bad = True
                continue
            value = self.value(hints(cls)[name], raw[name], path + (name,))
            if value is INVALID:
                bad = True
                continue
            self._bounds(fld, value, path + (name,))
            kwargs[name] = value
        return INVALID if bad else cls(**kwargs)

    def _bounds(self, fld: dataclasses.Field, value: Any, path: KeyPath) -> None:
        lo, hi, gt = fld.metadata.get("lo"), fld.metadata.get("hi"), fld.metadata.get("gt")
        values = value if isinstance(value, tuple) else (value,)
        for i, v in enumerate(values):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            at = path + (i,) if isinstance(value, tuple) else path
            if lo is not None and v < lo:
                self.problem(at, f"expected a value >= {lo:g}, got {v:g}")
            elif gt is not None and v <= gt:
                self.problem(at, f"expected a value > {gt:g}, got {v:g}")
            elif hi is not None and v > hi:
                self.problem(at, f"expected a value <= {hi:g}, got {v:g}")

    # -- suggestions ---------------------------------------------------------------------------------------
    def suggest(self, key: str, valid: list[str], path: KeyPath) -> str:
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        if close:
            return f"did you mean {close[0]!r}?"
        homes = [s for s in _key_homes(self.root_cls).get(key, ()) if s != format_path(path)]
        homes.sort(key=lambda s: s.count("."))  # the shallowest section first: 'training', not 'models.pretrain'
        if homes:
            return f"{key!r} belongs under {homes[0]!r}"
        return "valid keys: " + ", ".join(valid)


@functools.cache
def _key_homes(root: type) -> dict[str, tuple[str, ...]]:
    """Every key name in the schema -> the sections where it is valid (for 'belongs under' hints)."""
    homes: dict[str, list[str]] = {}

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            homes.setdefault(f.name, []).append(prefix or "(top level)")
            for inner in _dataclasses_in(hints(cls)[f.name]):
                walk(inner, f"{prefix}.{f.name}" if prefix else f.name)

    walk(root, "")
    return {k: tuple(v) for k, v in homes.items()}


def _dataclasses_in(tp: Any) -> list[type]:
    if dataclasses.is_dataclass(tp):
        return [tp]
    return [c for a in get_args(tp) for c in _dataclasses_in(a)]


def _show(raw: Any) -> str:
    if isinstance(raw, dict):
        return "a mapping"
    if isinstance(raw, list):
        return "a list"
    if raw is None:
        return "nothing (null)"
    return repr(raw)
