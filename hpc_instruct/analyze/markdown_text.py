"""Putting untrusted text into Markdown so that it shows as written and never becomes markup.

Labels, model names, problem details and the recipe itself come from a study folder colleagues write. In
report.md such text must not close a code block (a description holding three backticks), start a heading or a
table column, or reach a renderer as raw HTML (`<script>`, `<img onerror=...>`). Three tools, CommonMark rules:
- `text()`: inline text with the characters Markdown acts on backslash-escaped (a heading, list or quote marker
  only at its start), `<` and `&` as entities (so no raw HTML; a `>` elsewhere is plain text, so `a -> b` reads
  as written in the .md file too) and line breaks as spaces;
- `code()`: an inline code span delimited by more backticks than the text holds;
- `fence()`: a fenced block whose fence is longer than any backtick run inside it.
"""

from __future__ import annotations

import re

_ACTIVE = re.compile(r"([\\`*_\[\]|~])")  # markup anywhere in a line
_LINE_START = re.compile(r"^(\s*)([#+\-=>]|\d+(?=[.)]))")  # markup only at a line's start (headings, lists, quotes)
_TICKS = re.compile(r"`+")


def text(value: object, starts_block: bool = True) -> str:
    """`value` as inline Markdown text that renders literally. `starts_block`: it opens a paragraph, heading or
    list item, where `#`, `-`, `1.` would be markup (not so in a table cell, where `-0.5` stays as it is)."""
    out = str(value).replace("&", "&amp;").replace("<", "&lt;")
    out = _ACTIVE.sub(r"\\\1", " ".join(out.splitlines()))
    if not starts_block:
        return out
    return _LINE_START.sub(lambda m: m.group(1) + (m.group(2) + "\\" if m.group(2)[0].isdigit() else "\\" + m.group(2)), out)


def code(value: object) -> str:
    """`value` as an inline code span (inside which nothing is markup); line breaks become spaces."""
    body = " ".join(str(value).splitlines())
    ticks = "`" * (1 + max((len(m) for m in _TICKS.findall(body)), default=0))
    pad = " " if body.startswith("`") or body.endswith("`") or not body.strip() else ""
    return f"{ticks}{pad}{body}{pad}{ticks}"


def fence(value: object, info: str = "") -> list[str]:
    """`value` as the lines of a fenced code block that no line inside can close."""
    body = str(value).rstrip("\n")
    ticks = "`" * max(3, 1 + max((len(m) for m in _TICKS.findall(body)), default=0))
    return [ticks + info, *body.splitlines(), ticks]
