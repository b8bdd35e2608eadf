"""Recipe test helpers: a small valid recipe and a writer for variants of it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from recipe_base import BASE


@pytest.fixture
def write_recipe(tmp_path: Path):
    """write_recipe(text, name='r.yaml') -> path; `{out}` in text becomes a study root inside tmp_path."""

    def write(text: str = BASE, name: str = "r.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).replace("{out}", str(tmp_path / "studies")).replace("{{", "{").replace("}}", "}"))
        return path

    return write
