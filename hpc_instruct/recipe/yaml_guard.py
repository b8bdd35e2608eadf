"""Reading YAML text as data only, with limits, before anything is built from it.

A recipe is data, never code, and may come from a colleague. PyYAML's safe loader already refuses to run code,
but it will happily compose a nine-level alias bomb (billions of values once walked), a recursive alias (an
endless walk) or 5,000 nested lists (a RecursionError in its recursive composer). So the event stream is
scanned first, iteratively (the parser is not recursive), and any of these becomes one located problem:
- nesting deeper than MAX_DEPTH levels;
- an alias to a node that is still open (a recursive alias);
- more than MAX_VALUES values once every alias is expanded (an alias bomb);
- an explicit tag other than YAML's plain data types (`!!python/...`, custom `!tags`).
Only then is the node graph composed (now bounded) and scalars constructed with YAML's safe rules.
"""

from __future__ import annotations

import yaml

from hpc_instruct.errors import Location, Problem

MAX_DEPTH = 64  # recipes nest 4-5 levels; 64 leaves room and stays far below Python's recursion limit
MAX_VALUES = 100_000  # a large sweep recipe has a few thousand values

_PLAIN_TAGS = frozenset(
    {None, "!"} | {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}
)


def compose(text: str, shown: str, problems: list[Problem]) -> yaml.Node | None:
    """The YAML document in `text` as a node graph, or None with the reason appended to `problems`.

    `shown` is the file name used in problem locations. The node graph is safe to walk: bounded depth, no cycles,
    a bounded number of values even with aliases expanded, only plain data tags.
    """
    try:
        reason = _scan(text)
        if reason is not None:
            line, message = reason
            problems.append(Problem(Location(shown, line), "", message))
            return None
        loader = yaml.SafeLoader(text)
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problems.append(Problem(Location(shown, mark.line + 1 if mark else 0), "", f"YAML syntax error: {exc.problem or exc}"))
    except yaml.YAMLError as exc:  # ReaderError (a NUL or control character in the file) carries a position only
        line = text.count("\n", 0, getattr(exc, "position", 0) or 0) + 1
        problems.append(Problem(Location(shown, line), "", f"YAML error: {exc}"))
    return None


def construct_scalar(node: yaml.Node) -> object:
    """One scalar with YAML's safe rules (ints, floats, bools, null, strings). Raises ValueError if it cannot."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]}: {exc}") from None
    finally:
        loader.dispose()


def _scan(text: str) -> tuple[int, str] | None:
    """First limit the event stream breaks, as (1-based line, message), or None when it is within limits."""
    loader = yaml.SafeLoader(text)
    try:
        depth = 0
        values = 0  # values so far, aliases counted as the size of what they stand for
        stack: list[tuple[str | None, int]] = []  # (anchor, `values` when it started) of each open collection
        sizes: dict[str, int] = {}  # closed anchor -> number of values it stands for
        while loader.check_event():
            event = loader.get_event()
            line = event.start_mark.line + 1 if event.start_mark else 0
            if isinstance(event, yaml.AliasEvent):
                if any(event.anchor == anchor for anchor, _ in stack):
                    return line, f"recursive alias *{event.anchor}: an anchor cannot contain itself"
                values += sizes.get(event.anchor, 1)
            elif isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
                if event.tag not in _PLAIN_TAGS:
                    return line, f"tag {event.tag} is not allowed: a recipe holds plain data (strings, numbers, lists, mappings)"
                values += 1
                if isinstance(event, yaml.ScalarEvent):
                    if event.anchor is not None:
                        sizes[event.anchor] = 1
                else:
                    depth += 1
                    if depth > MAX_DEPTH:
                        return line, f"nesting deeper than {MAX_DEPTH} levels"
                    stack.append((event.anchor, values - 1))
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
                anchor, start = stack.pop()
                if anchor is not None:
                    sizes[anchor] = values - start
            if values > MAX_VALUES:
                return line, f"more than {MAX_VALUES:,} values once aliases are expanded (an alias bomb?)"
        return None
    finally:
        loader.dispose()
