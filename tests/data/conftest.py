"""Fixtures for the data tests: a small generated study, read once per session, and a layout builder."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_builders import DEMO_ARGS

from hpc_instruct.data.demo import write_demo_study
from hpc_instruct.data.doit_reader import read_doit


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    return write_demo_study(tmp_path_factory.mktemp("demo") / "study", **DEMO_ARGS)


@pytest.fixture(scope="session")
def demo_data(demo_root):
    return read_doit(demo_root)


@pytest.fixture
def layout(tmp_path):
    """Write a DoIT layout from {relative path: list of lines (str) or raw bytes}; returns its root."""

    def build(files: dict[str, list[str] | bytes]) -> Path:
        for rel, content in files.items():
            path = tmp_path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content if isinstance(content, bytes) else ("\n".join(content) + "\n").encode())
        return tmp_path

    return build
