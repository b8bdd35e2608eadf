"""Exceptions a researcher can act on. The CLI turns them into clear lines and exit code 2, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass


class UserError(Exception):
    """A mistake in what the user gave us (recipe, data, arguments). Shown without a traceback."""

    exit_code = 2


@dataclass(frozen=True)
class Location:
    """Where a value came from: a file and 1-based line, or a command-line override."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Problem:
    """One problem in a recipe: where, which key, what was expected, and a suggestion if we have one."""

    location: Location | None
    key: str
    message: str
    suggestion: str = ""

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        key = f"{self.key}: " if self.key else ""
        hint = f" ({self.suggestion})" if self.suggestion else ""
        return f"{where}{key}{self.message}{hint}"


class RecipeError(UserError):
    """Every problem found in a recipe, reported together (one line each)."""

    def __init__(self, problems: list[Problem], what: str = "recipe"):
        self.problems = list(problems)
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in {what}"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))
