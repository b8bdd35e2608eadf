"""The layers of DESIGN.md, read from the code's own imports (ast), and one owner for the study's file names.

    cli -> launch -> stages -> recipe -> libraries (data, train, evaluate, analyze) -> bottom contracts

An import may only go down. Imports inside functions count too: a lazy import that runs back up is still a
tie back up. No module but `study_dir.py` spells a file name of a study directory.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hpc_instruct"
BOTTOM = {"study_dir", "expansion", "provenance", "hashing", "atomic", "errors", "config_fields"}
LIBRARIES = {"data", "train", "evaluate", "analyze"}
# What each part may not import (by top-level name under hpc_instruct).
FORBIDDEN = {
    **{lib: {"recipe", "launch", "stages", "cli"} for lib in LIBRARIES},
    "recipe": {"launch", "stages", "cli"},
    "stages": {"launch", "cli"},
    "launch": {"cli"},
    **{b: {"recipe", "launch", "stages", "cli", *LIBRARIES} for b in BOTTOM},
}
STUDY_FILES = re.compile(
    r"(?<![\w.])(study\.yaml|plan\.json|trial\.json|prepared\.json|log\.parquet|scores\.parquet|selection\.parquet"
    r"|completeness\.json|report\.html|report\.md|submissions\.jsonl|launch\.lock)(?![\w])"
)


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        part = rel.parts[0].removesuffix(".py")
        out.append((part, path))
    return out


def _imported(tree: ast.AST) -> set[str]:
    """Top-level parts of hpc_instruct a module imports (`hpc_instruct.launch.tasks` -> `launch`)."""
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "hpc_instruct" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_imports_only_go_down():
    wrong = []
    for part, path in _modules():
        for target in _imported(ast.parse(path.read_text())) & FORBIDDEN.get(part, set()):
            wrong.append(f"{path.relative_to(PACKAGE.parent)} imports hpc_instruct.{target}")
    assert not wrong, "imports that run back up the layers:\n" + "\n".join(wrong)


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _help_texts(tree: ast.AST) -> set[int]:
    """Strings a person reads (argparse help/description, messages): they may name a file; they build no path."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("help", "description", "epilog"):
            ids.update(id(n) for n in ast.walk(node.value))
        if isinstance(node, ast.Raise) or (isinstance(node, ast.Call) and getattr(node.func, "attr", "") in (
                "info", "warning", "error", "exception", "debug")):
            ids.update(id(n) for n in ast.walk(node))
    return ids


def study_file_names_outside_study_dir() -> list[str]:
    found = []
    for _, path in _modules():
        if path.name == "study_dir.py":
            continue
        tree = ast.parse(path.read_text())
        skip = _docstrings(tree) | _help_texts(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
            if STUDY_FILES.search(text) and not re.search(r"\s", text):  # a path or a name, not a sentence
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.JoinedStr):
                head = node.values[0] if node.values else None
                if isinstance(head, ast.Constant) and str(head.value).startswith(("epoch-", "part-")):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: f-string {head.value!r}...")
    return found


def test_only_study_dir_spells_study_file_names():
    found = study_file_names_outside_study_dir()
    assert not found, "study file names built outside hpc_instruct/study_dir.py:\n" + "\n".join(found)


def test_the_checks_see_what_they_look_for(tmp_path):
    """The two scans are not vacuous: a planted back-import and a planted file name are found."""
    tree = ast.parse("def f():\n    from hpc_instruct.launch.tasks import Task\n    return 'results/scores.parquet'\n")
    assert _imported(tree) == {"launch"}
    assert STUDY_FILES.search("results/scores.parquet") and not STUDY_FILES.search("my_scores.parquet.bak")


def test_every_module_with_logic_is_named_by_a_test():
    """Each module of 40 lines or more is imported or named (dotted, e.g. in a test's `Covers:` line) by a test."""
    tests = "\n".join(p.read_text() for p in Path(__file__).resolve().parent.rglob("*.py"))
    unnamed = []
    for _, path in _modules():
        rel = path.relative_to(PACKAGE.parent)
        if path.name == "__init__.py" or len(path.read_text().splitlines()) < 40:
            continue
        dotted = ".".join(rel.with_suffix("").parts)
        parent, _, name = dotted.rpartition(".")
        if not re.search(rf"{re.escape(dotted)}\b|from {re.escape(parent)} import [^\n]*\b{name}\b", tests):
            unnamed.append(str(rel))
    assert not unnamed, "modules no test names (add a test, or name it in the `Covers:` line of the test that runs it):\n" + "\n".join(unnamed)
