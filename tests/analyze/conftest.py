"""Fixtures: simulated studies with planted truth, written once per session (see analyze_studies.py), and
private copies for tests that damage a study."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from analyze_studies import MAIN, PLANTED_TRANSFER, SELECTION, TRANSFER, make_study
from planted_truth import default_truth
from simulated_study import SimulatedStudy

from hpc_instruct.analyze.analysis import Analysis, analyze_study


@pytest.fixture(scope="session")
def main_study(tmp_path_factory) -> SimulatedStudy:
    return make_study(tmp_path_factory.mktemp("main"), MAIN, items=400)


@pytest.fixture(scope="session")
def main_analysis(main_study) -> Analysis:
    return analyze_study(main_study.directory)


@pytest.fixture(scope="session")
def selection_study(tmp_path_factory) -> SimulatedStudy:
    return make_study(tmp_path_factory.mktemp("selection"), SELECTION, items=200)


@pytest.fixture(scope="session")
def transfer_study(tmp_path_factory) -> SimulatedStudy:
    def truth(plan):
        base = default_truth(plan.abilities, plan.out_of_domain)
        return dataclasses.replace(base, transfer=PLANTED_TRANSFER, seed_sd=0.5)

    return make_study(tmp_path_factory.mktemp("transfer"), TRANSFER, items=2000, truth=truth)


@pytest.fixture
def selection_copy(selection_study, tmp_path) -> SimulatedStudy:
    """A private copy of the selection study that a test may damage."""
    target = tmp_path / "copy"
    shutil.copytree(selection_study.directory, target)
    return dataclasses.replace(selection_study, directory=target)
