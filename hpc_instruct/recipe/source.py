"""Reading recipe YAML into a plain tree that remembers where every value came from.

A recipe is YAML plus three conveniences:
- `include: [other.yaml, ...]` at the top: those files are read first (paths relative to the including file)
  and the including file overrides them key by key (mappings merge, everything else replaces);
- `${VAR}` / `${VAR:-default}` in string values, for site paths (data roots, model folders, accounts);
- `key.path=value` overrides from the command line (`models.0.tp=2` or `models.llama-7b.tp=2`).

The result is a `Tree`: the merged data and, for every key path, the `Location` (file:line or override) that
set it, so validation can point at the exact line a researcher has to change.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpc_instruct.errors import Location, Problem, RecipeError
from hpc_instruct.recipe import yaml_guard

KeyPath = tuple[str | int, ...]
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def format_path(path: KeyPath) -> str:
    """`('models', 0, 'tp')` -> `models[0].tp`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class Tree:
    """Recipe data as plain dicts/lists/scalars plus the location of every key path."""

    data: dict[str, Any]
    locations: dict[KeyPath, Location] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def where(self, path: KeyPath) -> Location | None:
        """The location of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.locations:
                return self.locations[path]
            path = path[:-1]
        return self.locations.get((), None)


def load_tree(path: str | os.PathLike, overrides: tuple[str, ...] = (), env: Mapping[str, str] | None = None) -> Tree:
    """Read a recipe file with its includes, expand environment variables, apply overrides.

    Raises RecipeError listing every problem found (YAML syntax, missing includes, unset variables, ...).
    """
    env = os.environ if env is None else env
    problems: list[Problem] = []
    tree = _read_with_includes(Path(path), problems, stack=())
    _expand_env(tree, env, problems)
    for i, text in enumerate(overrides, start=1):
        _apply_override(tree, text, i, problems)
    if problems:
        raise RecipeError(problems)
    return tree


def _read_with_includes(path: Path, problems: list[Problem], stack: tuple[Path, ...]) -> Tree:
    shown = _display(path)
    if not path.is_file():
        problems.append(Problem(None, "", f"recipe file {shown} does not exist"))
        return Tree({})
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(Location(shown, 0), "", f"cannot read the recipe: {exc}"))
        return Tree({})
    before = len(problems)
    node = yaml_guard.compose(text, shown, problems)
    if len(problems) > before:
        return Tree({})
    if node is None:
        problems.append(Problem(Location(shown, 1), "", "recipe file is empty"))
        return Tree({})
    locations: dict[KeyPath, Location] = {}
    data = _to_python(node, (), shown, locations, problems)
    if not isinstance(data, dict):
        problems.append(Problem(Location(shown, node.start_mark.line + 1), "", "a recipe must be a mapping of sections"))
        return Tree({})
    includes = data.pop("include", [])
    include_loc = locations.get(("include",), Location(shown, 1))
    if isinstance(includes, str):
        includes = [includes]
    merged = Tree({}, {}, ())
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        problems.append(Problem(include_loc, "include", "expected a file name or a list of file names"))
        includes = []
    for name in includes:
        target = (path.parent / os.path.expandvars(name)).resolve()
        if target in stack or target == path.resolve():
            problems.append(Problem(include_loc, "include", f"include cycle: {name} includes itself"))
            continue
        if not target.is_file():
            problems.append(Problem(include_loc, "include", f"included file {name} does not exist (looked at {target})"))
            continue
        child = _read_with_includes(target, problems, stack + (path.resolve(),))
        _merge(merged, child.data, child.locations, ())
        merged.files += child.files
    _merge(merged, data, {k: v for k, v in locations.items() if k[:1] != ("include",)}, ())
    merged.files += (shown,)
    merged.locations[()] = Location(shown, 1)  # a missing top-level key is reported at the recipe's first line
    return merged


def _display(path: Path) -> str:
    """Paths relative to the working directory when possible, so messages stay short and clickable."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _to_python(node: yaml.Node, path: KeyPath, file: str, locs: dict[KeyPath, Location], problems: list[Problem]) -> Any:
    locs[path] = Location(file, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, file, problems)
            if not isinstance(key, str):
                key = str(key)
            if key in out:
                first = locs[path + (key,)]
                problems.append(Problem(Location(file, key_node.start_mark.line + 1), format_path(path + (key,)),
                                        f"duplicate key (first set at line {first.line})"))
                continue
            out[key] = _to_python(value_node, path + (key,), file, locs, problems)
            locs[path + (key,)] = Location(file, key_node.start_mark.line + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, path + (i,), file, locs, problems) for i, item in enumerate(node.value)]
    return _scalar(node, file, problems)


def _scalar(node: yaml.Node, file: str = "", problems: list[Problem] | None = None) -> Any:
    """Construct one scalar with YAML's safe rules (ints, floats, bools, null, strings).

    A scalar that cannot be read (`!!int abc`) is recorded as a problem and read as its text.
    """
    if not isinstance(node, yaml.ScalarNode):
        if problems is not None:
            problems.append(Problem(Location(file, node.start_mark.line + 1), "", "a key must be a plain value, not a list or mapping"))
        return "<invalid key>"
    try:
        return yaml_guard.construct_scalar(node)
    except ValueError as exc:
        if problems is not None:
            problems.append(Problem(Location(file, node.start_mark.line + 1), "", str(exc)))
        return node.value


def _merge(tree: Tree, data: Any, locations: dict[KeyPath, Location], path: KeyPath) -> None:
    """Merge `data` (with its locations) into `tree` at `path`: mappings merge, other values replace."""
    if path == ():
        target = tree.data
    else:
        parent = _get(tree.data, path[:-1])
        target = parent.get(path[-1]) if isinstance(parent, dict) else None
    if isinstance(data, dict) and isinstance(target, dict):
        for key, value in data.items():
            sub = path + (key,)
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                _merge(tree, value, locations, sub)
                if sub in locations:
                    tree.locations[sub] = locations[sub]
            else:
                _drop_locations(tree, sub)
                target[key] = value
                tree.locations.update({k: v for k, v in locations.items() if k[: len(sub)] == sub})
        return
    raise AssertionError("merge target must be a mapping")  # only reached through the branches above


def _drop_locations(tree: Tree, prefix: KeyPath) -> None:
    for key in [k for k in tree.locations if k[: len(prefix)] == prefix]:
        del tree.locations[key]


def _get(data: Any, path: KeyPath) -> Any:
    for part in path:
        data = data[part]
    return data


def _expand_env(tree: Tree, env: Mapping[str, str], problems: list[Problem]) -> None:
    def walk(value: Any, path: KeyPath) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, path + (i,)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            def sub(match: re.Match[str]) -> str:
                name, default = match.group(1), match.group(2)
                if name in env and env[name] != "":
                    return env[name]
                if default is not None:
                    return default
                problems.append(Problem(tree.where(path), format_path(path),
                                        f"environment variable {name} is not set",
                                        f"export {name}=... or write ${{{name}:-default}}"))
                return match.group(0)
            return _ENV.sub(sub, value)
        return value

    tree.data = walk(tree.data, ())


def _apply_override(tree: Tree, text: str, index: int, problems: list[Problem]) -> None:
    loc = Location(f"<override {index}: {text}>")
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        problems.append(Problem(loc, "", "an override must look like key.path=value", "e.g. training.lr=2e-5"))
        return
    value: Any = ""
    if raw.strip():
        found: list[Problem] = []
        parsed = yaml_guard.compose(raw, loc.file, found)
        value = raw if parsed is None else _to_python(parsed, (), loc.file, {}, found)
        if any(parsed is not None or not p.message.startswith("YAML syntax error") for p in found):
            problems.extend(found)  # hostile or unreadable; plain text that is not YAML stays a string
            return
    parts = [p for p in key.strip().replace("[", ".").replace("]", "").split(".") if p]
    node: Any = tree.data
    path: KeyPath = ()
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        step: str | int = part
        if isinstance(node, list):
            step = _list_index(node, part)
            if step is None:
                problems.append(Problem(loc, format_path(path), f"no list item {part!r} (use an index 0..{len(node) - 1} or an item's name)"))
                return
        elif not isinstance(node, dict):
            problems.append(Problem(loc, format_path(path), "cannot set a key inside a value that is not a mapping"))
            return
        path += (step,)
        if last:
            node[step] = value
            _drop_locations(tree, path)
            tree.locations[path] = loc
        else:
            if isinstance(node, dict) and step not in node:
                node[step] = {}
                tree.locations[path] = loc
            node = node[step]


def _list_index(items: list[Any], part: str) -> int | None:
    if part.lstrip("-").isdigit():
        i = int(part)
        return i if -len(items) <= i < len(items) else None
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == part:
            return i
    return None
