"""Fixtures of the evaluation tests: one generated demo data set per session (read-only for tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpc_instruct.data.demo import write_demo_study


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A small generated DoIT-layout data set (valid/test: 100 items per ability, 3 C-Eval-like sets)."""
    root = tmp_path_factory.mktemp("demo-data")
    write_demo_study(root, seed=0, pool_size=20, synthetic_size=20)
    return root


@pytest.fixture(scope="session")
def evaluated_study(tmp_path_factory):
    """A tiny study (random-init Llama, study tokenizer, generated data) with every eval task run in process:
    base model, two exported epochs on valid, test on the selected epoch, one out-of-domain set. Read-only:
    tests that change files work on a copy (`study_copy`)."""
    import torch
    from eval_builders import TINY_RECIPE, export_checkpoints, make_study

    from hpc_instruct.launch.entry import run_tasks
    from hpc_instruct.launch.tasks import build_tasks

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evaluated")
    study = make_study(root, TINY_RECIPE.format(out=root / "studies", items_per_shard=60))
    export_checkpoints(study)
    tasks = [t for t in build_tasks(study, study.expand()) if t.stage == "eval"]
    ran = run_tasks(str(study.directory), "eval", [t.id for t in tasks])
    torch.set_num_threads(threads)
    assert len(ran) == len(tasks)
    return study


@pytest.fixture
def study_copy(evaluated_study, tmp_path) -> Path:
    """A private copy of the evaluated study directory (the eval stage uses the folder it is given)."""
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(evaluated_study.directory, target)
    return target
